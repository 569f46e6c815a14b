"""Nothing acknowledged is lost and nothing is archived twice: the worker killed with SIGKILL mid-run, and
PostgreSQL (a private instance) stopped mid-run, each followed by recovery."""
from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any

import asyncpg

from ingestflow.app.archive.local import LocalBackend
from ingestflow.app.clients.db import migrate

from .archive_support import archived_uids, produce_records, success_rows, unique_user_ids
from .conftest import eventually, start_group_at_end


async def _n_success(pg: asyncpg.Connection, users: list[int], n: int, archive: LocalBackend) -> bool:
    return len(await success_rows(pg, users, archive)) >= n


async def test_worker_killed_mid_run_archives_every_record_exactly_once(
        spawn: Callable[..., Any], env_factory: Callable[..., dict[str, str]], pg: asyncpg.Connection,
        unique: str) -> None:
    users = unique_user_ids(4)
    env = env_factory(WORKER_PORT="18241", WORKER_APP_ID=f"archive-kill-{unique}", BUFFER_SIZE="3")
    archive = LocalBackend(Path(env["ARCHIVE_URL"][len("local://"):]))
    await start_group_at_end(env["WORKER_APP_ID"])
    worker = spawn(["worker"], env)
    try:
        sent = await produce_records(users, 6, f"a{unique}")
        await eventually(lambda: _n_success(pg, users, 2, archive), timeout=90, what="first batches")
        worker.kill()  # SIGKILL: no shutdown, uploads and commits cut wherever they were
        sent += await produce_records(users, 3, f"b{unique}")
        worker = spawn(["worker"], env)
        await eventually(lambda: _n_success(pg, users, 12, archive), timeout=120, what="all 12 batches")
        await asyncio.sleep(3)  # let any duplicate that would appear appear
        rows = await success_rows(pg, users, archive)
        seen = await archived_uids(archive, rows)
        assert sorted(seen) == sorted(sent), "every acknowledged record is archived"
        assert set(seen.values()) == {1}, "no record is in two successful batches"
        assert len(rows) == 12 and len({r["batch_id"] for r in rows}) == 12
    except AssertionError:
        print(worker.tail(60))
        raise


async def test_postgres_outage_pauses_archiving_then_resumes_without_loss(
        spawn: Callable[..., Any], env_factory: Callable[..., dict[str, str]],
        private_service: Callable[..., Any], unique: str) -> None:
    svc = private_service("postgres", 15441)
    dsn = svc.url("ingestflow_test")
    await migrate(dsn)
    users = unique_user_ids(2)
    env = env_factory(WORKER_PORT="18242", WORKER_APP_ID=f"archive-pgdown-{unique}", BUFFER_SIZE="2",
                      DATABASE_URL=dsn)
    archive = LocalBackend(Path(env["ARCHIVE_URL"][len("local://"):]))
    await start_group_at_end(env["WORKER_APP_ID"])
    worker = spawn(["worker"], env)
    pg = await asyncpg.connect(dsn)
    try:
        sent = await produce_records(users, 2, f"p{unique}")
        await eventually(lambda: _n_success(pg, users, 2, archive), timeout=90, what="batches before the outage")
        await pg.close()
        svc.stop()
        sent += await produce_records(users, 2, f"q{unique}")  # acknowledged by Kafka while PostgreSQL is down
        await eventually(lambda: "archive batch" in worker.tail(200) and "failed (attempt" in worker.tail(200),
                         timeout=60, what="failed attempts in the worker log")
        svc.start()
        pg = await asyncpg.connect(dsn)
        await eventually(lambda: _n_success(pg, users, 4, archive), timeout=120, what="batches after recovery")
        rows = await success_rows(pg, users, archive)
        seen = await archived_uids(archive, rows)
        assert sorted(seen) == sorted(sent) and set(seen.values()) == {1}
        assert len(rows) == 4
        # transfer_logs tells the outage's story: attempts that failed while PostgreSQL was down, recorded
        # once it was back, then the success of the same batch.
        log_rows = await pg.fetch("SELECT id, batch_id, status, error_message FROM transfer_logs"
                                  " WHERE user_id = ANY($1::bigint[]) ORDER BY id", users)
        failed = [r for r in log_rows if r["status"] == "failed"]
        assert failed and all("could not reach PostgreSQL" in r["error_message"] for r in failed)
        success_id = {r["batch_id"]: r["id"] for r in log_rows if r["status"] == "success"}
        assert all(r["id"] < success_id[r["batch_id"]] for r in failed)
        assert not [r for r in log_rows if r["status"] == "pending"]
    except AssertionError:
        print(worker.tail(80))
        raise
    finally:
        await pg.close()
