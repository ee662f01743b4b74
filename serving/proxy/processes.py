"""Child processes that never outlive their parent."""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal


def die_with_parent() -> None:
    """Linux: this process gets SIGTERM when its parent dies, even by SIGKILL."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def nice_child(niceness: int) -> None:
    """A backend's process: `niceness` lower in priority (its workers inherit it), gone with the proxy."""
    if niceness:
        os.nice(niceness)
    die_with_parent()


def background_worker() -> None:
    """A worker process of the proxy: lower priority than the request path, and gone with the proxy."""
    os.nice(10)
    die_with_parent()
