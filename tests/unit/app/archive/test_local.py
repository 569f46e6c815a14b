"""The local backend: content addressed, idempotent, NotFound for what it does not have."""
from __future__ import annotations

from pathlib import Path

import pytest

from ingestflow.app.archive import cid
from ingestflow.app.archive.local import LocalBackend
from ingestflow.app.core.errors import NotFound


async def test_put_returns_the_raw_cid_and_get_returns_the_bytes(tmp_path: Path) -> None:
    backend = LocalBackend(tmp_path / "archive")
    await backend.start()
    got = await backend.put(b"payload")
    assert got == cid.raw_cid(b"payload")
    assert await backend.get(got) == b"payload"
    assert await backend.put(b"payload") == got
    assert [p.name for p in (tmp_path / "archive").iterdir()] == [got]
    await backend.stop()
    await backend.stop()


async def test_unknown_cid_is_not_found(tmp_path: Path) -> None:
    backend = LocalBackend(tmp_path)
    with pytest.raises(NotFound):
        await backend.get(cid.raw_cid(b"never stored"))
