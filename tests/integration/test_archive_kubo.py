"""The IPFS backend against a real kubo node (private, offline, loopback only), and the archive worker
riding out a kubo outage: failed attempts are logged, then the success, and every record is archived once."""
from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from ingestflow.app.archive import cid as cids
from ingestflow.app.archive.ipfs import kubo as kubo_backend
from ingestflow.app.core.errors import ArchiveError, NotFound

from .archive_support import Kubo, archived_uids, produce_records, success_rows, unique_user_ids
from .conftest import eventually, start_group_at_end


@pytest.fixture
def kubo(tmp_path: Path) -> Iterator[Kubo]:
    node = Kubo(15011, tmp_path / "kubo")
    node.start()
    yield node
    node.stop()


async def test_kubo_add_returns_the_locally_computed_cid_and_cat_reads_it_back(kubo: Kubo) -> None:
    backend = kubo_backend(f"http://127.0.0.1:{kubo.api_port}")
    await backend.start()
    try:
        data = b"encrypted batch bytes " * 100
        got = await backend.put(data)
        assert got == cids.raw_cid(data)
        assert await backend.get(got) == data
        big = bytes(range(256)) * 2000  # 512 KB: several blocks, a dag-pb root
        big_cid = await backend.put(big)
        assert cids.parse_cid(big_cid).codec == cids.DAG_PB
        assert await backend.get(big_cid) == big
        with pytest.raises(NotFound):
            await backend.get(cids.raw_cid(b"never added"))
    finally:
        await backend.stop()


async def test_kubo_down_is_a_retriable_archive_error(kubo: Kubo) -> None:
    backend = kubo_backend(f"http://127.0.0.1:{kubo.api_port}")
    kubo.stop()
    try:
        with pytest.raises(ArchiveError) as info:
            await backend.put(b"x")
        assert info.value.retriable
    finally:
        await backend.stop()
        kubo.start()


async def test_worker_survives_kubo_outage_and_archives_every_record_once(
        kubo: Kubo, spawn: Callable[..., Any], env_factory: Callable[..., dict[str, str]],
        pg: asyncpg.Connection, unique: str) -> None:
    users = unique_user_ids(2)
    env = env_factory(ARCHIVE_URL=kubo.url, BUFFER_SIZE="5", WORKER_PORT="18211",
                      WORKER_APP_ID=f"archive-kubo-{unique}")
    await start_group_at_end(env["WORKER_APP_ID"])
    worker = spawn(["worker"], env)
    backend = kubo_backend(f"http://127.0.0.1:{kubo.api_port}")
    await backend.start()
    try:
        sent = await produce_records(users, 5, f"k1{unique}")
        await eventually(lambda: _count(pg, users, 2, backend), timeout=90, what="first two batches")
        kubo.stop()
        sent += await produce_records(users, 5, f"k2{unique}")
        await eventually(lambda: pg.fetchval(
            "SELECT count(*) FROM transfer_logs WHERE user_id = ANY($1::bigint[]) AND status = 'failed'",
            users), timeout=60, what="failed attempts logged while kubo is down")
        kubo.start()
        await eventually(lambda: _count(pg, users, 4, backend), timeout=90, what="batches after kubo is back")
        rows = await success_rows(pg, users, backend)
        seen = await archived_uids(backend, rows)
        assert sorted(seen) == sorted(sent)
        assert set(seen.values()) == {1}
        failed = await pg.fetch("SELECT error_message FROM transfer_logs WHERE user_id = ANY($1::bigint[])"
                                " AND status = 'failed'", users)
        assert all("ipfs upload failed" in r["error_message"] for r in failed)
    except AssertionError:
        print(worker.tail(60))
        raise
    finally:
        await backend.stop()


async def _count(pg: asyncpg.Connection, users: list[int], n: int, backend: Any) -> bool:
    return len(await success_rows(pg, users, backend)) >= n
