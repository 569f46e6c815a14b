"""The archive end to end through the real gateway and worker processes: records produced to the topic,
batches cut by size and on demand, transfer logs, cron state, decrypted reads, and clear errors."""
from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
from aiokafka.partitioner import murmur2

from ingestflow.app.archive.local import LocalBackend
from ingestflow.schemas.topics import RECORDS

from .archive_support import archived_uids, produce_records, success_rows, unique_user_ids
from .conftest import eventually, start_group_at_end, wait_http

BASE = "http://127.0.0.1:18221"


async def test_archive_flow_through_gateway_and_worker(
        spawn: Callable[..., Any], env_factory: Callable[..., dict[str, str]], pg: asyncpg.Connection,
        unique: str, tmp_path: Path) -> None:
    env = env_factory(PORT="18221", WORKER_PORT="18222", WORKER_APP_ID=f"archive-http-{unique}", BUFFER_SIZE="4",
                      ARCHIVE_MAX_AGE_S="3600", CRON_SCHEDULE="0 0 1 1 *")
    await start_group_at_end(env["WORKER_APP_ID"])
    worker = spawn(["worker"], env)
    gateway = spawn(["gateway"], env)
    secret = {"x-cron-secret": env["CRON_SECRET"]}
    [user, other] = unique_user_ids(2)
    await wait_http(f"{BASE}/health")
    archive = LocalBackend(Path(env["ARCHIVE_URL"][len("local://"):]))
    try:
        async with aiohttp.ClientSession() as http:
            sent = await produce_records([user], 6, f"h{unique}")  # one batch of 4 by size, 2 left pending
            await eventually(lambda: _n_success(pg, [user], 1, archive), timeout=90, what="size-triggered batch")

            # Buffer figures come from the workers through PostgreSQL. A new app id reads the topic from the
            # start, so other tests' leftovers may be pending too: at least our 2 records on our partition.
            partition = (murmur2(str(user).encode()) & 0x7FFFFFFF) % RECORDS.partitions

            async def pending_two() -> bool:
                async with http.get(f"{BASE}/buffer/stats", headers=secret) as r:
                    body = await r.json()
                mine = [p for p in body.get("partitions", []) if p["partition"] == partition]
                return (r.status == 200 and body["records"] >= 2 and body["users"] >= 1 and len(mine) == 1
                        and mine[0]["records"] >= 2 and body["bufferSize"] == 4)
            await eventually(pending_two, timeout=30, what="buffer stats showing 2 pending records")

            async with http.post(f"{BASE}/buffer/process/{user}", headers=secret) as r:
                assert r.status == 202, await r.text()
            await eventually(lambda: _n_success(pg, [user], 2, archive), timeout=60, what="on-demand batch")

            rows = await success_rows(pg, [user], archive)
            seen = await archived_uids(archive, rows)
            assert sorted(seen) == sorted(sent) and set(seen.values()) == {1}
            assert [r["entries_transferred"] for r in rows] == [4, 2]

            # cron/trigger flushes every user on every partition.
            await produce_records([other], 1, f"o{unique}")
            async with http.post(f"{BASE}/cron/trigger", headers=secret) as r:
                assert r.status == 202
            await eventually(lambda: _n_success(pg, [other], 1, archive), timeout=60, what="cron-triggered batch")

            async with http.get(f"{BASE}/transfer/logs", params={"user_id": str(user), "status": "success"},
                                headers=secret) as r:
                logs = (await r.json())["logs"]
            assert {row["lighthouse_hash"] for row in rows} <= {entry["lighthouse_hash"] for entry in logs}
            assert {entry["status"] for entry in logs} == {"success"}

            cid = rows[0]["lighthouse_hash"]
            async with http.get(f"{BASE}/lighthouse/{cid}", headers=secret) as r:
                body = await r.json()
            assert r.status == 200 and body["userId"] == user and body["records"] == 4
            assert body["content"][0]["user_id"] == user and len(body["content"][0]["data"]) == 4
            first_uid = body["content"][0]["data"][0]["website_uid"]
            async with http.get(f"{BASE}/lighthouse/{cid}", params={"website_uid": first_uid}, headers=secret) as r:
                assert [d["website_uid"] for d in (await r.json())["content"][0]["data"]] == [first_uid]
            async with http.get(f"{BASE}/lighthouse/{cid}", params={"user_id": str(other)}, headers=secret) as r:
                assert (await r.json())["content"] == []
            async with http.get(f"{BASE}/lighthouse/{cid}/website-uids", headers=secret) as r:
                assert (await r.json())["count"] == 4
            async with http.get(f"{BASE}/lighthouse/{cid}/info", headers=secret) as r:
                info = await r.json()
            assert info["batchId"] == rows[0]["batch_id"] and info["transfers"][0]["status"] == "success"
            async with http.get(f"{BASE}/lighthouse/{cid}/validate", headers=secret) as r:
                assert (await r.json())["valid"] is True

            # Errors: each with a status and a reason.
            async with http.get(f"{BASE}/lighthouse/not-a-cid", headers=secret) as r:
                assert r.status == 400 and (await r.json())["field"] == "cid"
            unknown = "bafkreicysg23kiwv34eg2d7qweipxwosdo2py4ldv42nbauguluen5v6am"
            async with http.get(f"{BASE}/lighthouse/{unknown}", headers=secret) as r:
                assert r.status == 404 and "no archived object" in (await r.json())["message"]
            async with http.get(f"{BASE}/lighthouse/{cid}") as r:
                assert r.status == 401
            async with http.post(f"{BASE}/cron/stop", headers={"x-cron-secret": "wrong-secret-0123456789"}) as r:
                assert r.status == 401
            async with http.get(f"{BASE}/transfer/logs", params={"status": "done"}, headers=secret) as r:
                assert r.status == 400 and (await r.json())["field"] == "status"
            async with http.post(f"{BASE}/buffer/process/abc", headers=secret) as r:
                assert r.status == 400 and (await r.json())["field"] == "user_id"
    except AssertionError:
        print(worker.tail(60), gateway.tail(30))
        raise


async def test_cron_endpoints_keep_state_in_postgres(
        spawn: Callable[..., Any], env_factory: Callable[..., dict[str, str]], pg: asyncpg.Connection,
        unique: str) -> None:
    env = env_factory(PORT="18223", WORKER_APP_ID=f"archive-cron-{unique}", CRON_SCHEDULE="*/5 * * * *")
    gateway = spawn(["gateway"], env)
    base = "http://127.0.0.1:18223"
    secret = {"x-cron-secret": env["CRON_SECRET"]}
    await wait_http(f"{base}/health")
    try:
        async with aiohttp.ClientSession() as http:
            async with http.get(f"{base}/cron/status", headers=secret) as r:
                status = await r.json()
            assert status["running"] is True and status["schedule"] == "*/5 * * * *" and status["nextRun"]
            async with http.post(f"{base}/cron/stop", headers=secret) as r:
                assert (await r.json())["running"] is False
            async with http.put(f"{base}/cron/schedule", json={"schedule": "0 */2 * * *"}, headers=secret) as r:
                assert r.status == 200 and (await r.json())["schedule"] == "0 */2 * * *"
            async with http.put(f"{base}/cron/schedule", json={"schedule": "every tuesday"}, headers=secret) as r:
                body = await r.json()
            assert r.status == 400 and body["field"] == "schedule" and "not a valid cron" in body["reason"]
            async with http.put(f"{base}/cron/schedule", data=b"{", headers={**secret,
                                "content-type": "application/json"}) as r:
                assert r.status == 400
            async with http.post(f"{base}/cron/start", headers=secret) as r:
                assert (await r.json())["running"] is True
        row = await pg.fetchrow("SELECT running, schedule FROM archive_cron WHERE app_id = $1", env["WORKER_APP_ID"])
        assert row is not None and tuple(row) == (True, "0 */2 * * *")
    except AssertionError:
        print(gateway.tail(30))
        raise


async def _n_success(pg: asyncpg.Connection, users: list[int], n: int, archive: LocalBackend) -> bool:
    return len(await success_rows(pg, users, archive)) >= n


async def test_old_records_and_cron_ticks_flush_without_any_request(
        spawn: Callable[..., Any], env_factory: Callable[..., dict[str, str]], pg: asyncpg.Connection,
        unique: str) -> None:
    """A lone record is archived once its age passes ARCHIVE_MAX_AGE_S; with a schedule set through the
    gateway (cron with seconds), the worker's timer flushes every user on the tick."""
    base = "http://127.0.0.1:18225"
    env = env_factory(PORT="18225", WORKER_PORT="18226", WORKER_APP_ID=f"archive-timer-{unique}", BUFFER_SIZE="50",
                      ARCHIVE_MAX_AGE_S="2", CRON_SCHEDULE="0 0 1 1 *")
    archive = LocalBackend(Path(env["ARCHIVE_URL"][len("local://"):]))
    secret = {"x-cron-secret": env["CRON_SECRET"]}
    await start_group_at_end(env["WORKER_APP_ID"])
    worker = spawn(["worker"], env)
    gateway = spawn(["gateway"], env)
    [aged] = unique_user_ids(1)
    try:
        await produce_records([aged], 1, f"age{unique}")
        await eventually(lambda: _n_success(pg, [aged], 1, archive), timeout=60, what="age-triggered batch")
        worker.stop()

        # Same app, age limit far away: only the cron schedule (every 2 s, set over HTTP) can flush now.
        env["ARCHIVE_MAX_AGE_S"] = "3600"
        worker = spawn(["worker"], env)
        await wait_http(f"{base}/health")
        [ticked] = unique_user_ids(1)
        await produce_records([ticked], 1, f"cron{unique}")
        await asyncio.sleep(4)
        assert not await _n_success(pg, [ticked], 1, archive), "flushed before any trigger"
        async with aiohttp.ClientSession() as http:
            async with http.put(f"{base}/cron/schedule", json={"schedule": "* * * * * */2"}, headers=secret) as r:
                assert r.status == 200, await r.text()
            await eventually(lambda: _n_success(pg, [ticked], 1, archive), timeout=60, what="cron-triggered batch")
            async with http.post(f"{base}/cron/stop", headers=secret) as r:
                assert r.status == 200
    except AssertionError:
        print(worker.tail(60), gateway.tail(20))
        raise
