"""What every command of ours does with bad input: one line on stderr naming the field, exit status 2."""

from __future__ import annotations

import sys
from collections.abc import Callable

from pydantic import ValidationError

BAD_INPUT = 2


def fail(message: str) -> int:
    """Say `error: <message>` on stderr; the exit status for bad input."""
    print(f"error: {message}", file=sys.stderr)
    return BAD_INPUT


def problems(
    exc: ValidationError,
    *,
    spell: Callable[[str], str] = str,
    whole: str = "(top level)",
    every: bool = False,
) -> str:
    """`<field>: <problem>` for the first problem pydantic found (or every one, joined by `; `).

    `spell` writes a field as the user gives it (`--min-rows`, `UI_PORT`); `whole` names the input itself.
    """
    found = exc.errors() if every else exc.errors()[:1]
    return "; ".join(
        f"{spell('.'.join(str(part) for part in error['loc'])) if error['loc'] else whole}: {error['msg']}"
        for error in found
    )
