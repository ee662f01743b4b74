"""The spool: append, seal, replay after a restart, bounded, one owner."""

from __future__ import annotations

from pathlib import Path

import pytest

from logstore.errors import SpoolFull, StoreConfigError
from logstore.spool import Spool


def test_spool_appends_seals_replays_and_is_bounded(tmp_path: Path) -> None:
    spool = Spool(tmp_path, max_bytes=200)
    spool.append({"n": 1})
    with pytest.raises(StoreConfigError, match="in use"):
        Spool(tmp_path, max_bytes=200)
    segments = spool.seal()
    assert [list(Spool.read(s)) for s in segments] == [[{"n": 1}]]
    spool.append({"n": 2})
    with pytest.raises(SpoolFull):
        spool.append({"n": "x" * 300})
    spool.close()
    with (tmp_path / segments[-1].name).open("a") as torn:
        torn.write('{"n": 3, "cut')
    again = Spool(tmp_path, max_bytes=200)
    replay = [record for segment in again.seal() for record in Spool.read(segment)]
    assert replay == [{"n": 1}, {"n": 2}]
    for segment in again.seal():
        again.discard(segment)
    assert again.size == 0
    again.close()
