"""`ingestflow status` against the real services, run as an operator runs it: with a worker and a gateway
up it shows every input partition owned by the worker, the spool, the archive backlog and transfer_logs,
and exits 0; with the worker gone, an upload left pending and a failed batch it names each and exits 1;
with PostgreSQL or the gateway unreachable it says so and still shows the rest."""
from __future__ import annotations

import asyncio
import json
import os
import socket
import sys
from collections.abc import Callable
from typing import Any

import aiohttp
import asyncpg

from ingestflow.app.clients.kafka import ensure_topics
from ingestflow.schemas import topics

from . import analytics_data
from .conftest import WORKER_INPUTS, eventually, wait_http

GATEWAY, WORKER, CLOSED, KAFKA = 18760, 18761, 18762, 18772  # Kafka: 18772-18773


async def status(env: dict[str, str], *args: str) -> tuple[int, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "ingestflow.app.cli", "status", *args,
        env={**{k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG")}, **env},
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), 120)
    assert proc.returncode is not None
    return proc.returncode, out.decode() + err.decode()


async def status_json(env: dict[str, str], *args: str) -> tuple[int, dict[str, Any]]:
    code, out = await status(env, "--json", *args)
    return code, json.loads(out.strip().splitlines()[-1])


async def test_status_shows_owners_spool_backlog_and_transfers_and_what_needs_attention(
        spawn: Callable[..., Any], env_factory: Callable[..., dict[str, str]], own_database: str,
        private_service: Callable[..., Any], unique: str) -> None:
    # Its own broker and database: every figure shown is this test's alone, whatever other tests do.
    kafka = private_service("kafka", KAFKA)
    await ensure_topics(kafka.connection, topics.ALL)
    group = f"status-{unique}"
    env = env_factory(DATABASE_URL=own_database, PORT=str(GATEWAY), WORKER_PORT=str(WORKER), WORKER_APP_ID=group,
                      BUFFER_SIZE="100", ARCHIVE_MAX_AGE_S="86400", SPOOL_MAX_BYTES="50000000",
                      KAFKA_BOOTSTRAP_SERVERS=kafka.address)
    worker = spawn(["worker"], env)
    gateway = spawn(["gateway"], env)
    owner = f"{group}@{socket.gethostname()}:{WORKER}"
    try:
        await wait_http(f"http://127.0.0.1:{GATEWAY}/health/live")
        await wait_http(f"http://127.0.0.1:{WORKER}/health/live", timeout=120)
        user = int(unique[:6], 16)
        async with aiohttp.ClientSession() as http:
            async with http.post(f"http://127.0.0.1:{GATEWAY}/ingest/records", headers={
                    "x-app-token": env["INGEST_APP_TOKEN"]}, json={"user_id": user, "records": [
                        {"wuid": f"w{i}-{unique}", "cleaned": {"i": i}, "context": "c"} for i in range(3)]}) as r:
                assert r.status == 202, await r.text()

        async def healthy() -> dict[str, Any]:
            code, body = await status_json(env)
            assert body["attention"] == [] and code == 0, body["attention"]
            assert body["state"] == "Stable"
            assert {(p["topic"], p["partition"]): p["owner"] for p in body["partitions"]} == {
                (t, p): owner for t in WORKER_INPUTS for p in range(topics.EVENTS.partitions)}
            assert body["archive"]["records"] == 3, body["archive"]
            return body
        body = await eventually(healthy, timeout=120, interval=2, what="status: all well, records buffered")
    except AssertionError:
        print(worker.tail(30), gateway.tail(20))
        raise
    assert [m["clientId"] for m in body["members"]] == [owner]
    assert body["members"][0]["partitions"] >= len(WORKER_INPUTS) * topics.EVENTS.partitions
    assert all(p["end"] - (p["committed"] or 0) >= p["lag"] >= 0 for p in body["partitions"])
    assert {d["name"]: d["status"] for d in body["dependencies"]} == {
        "kafka": "up", "postgres": "up", "redis": "up", "archive": "up", "gateway": "up"}
    assert body["spool"]["pending"] == 0 and body["spool"]["spoolMaxBytes"] == 50_000_000
    assert body["archive"]["users"] == 1 and body["archive"]["oldestAgeSeconds"] >= 0
    assert body["transferLogs"] == {"pending": 0, "oldestPendingSeconds": None, "failedBatches": 0,
                                    "failedLastHour": 0}
    code, text = await status(env)
    assert code == 0 and "nothing needs attention" in text and "events[0]" in text and owner in text

    # The worker goes away with records waiting; one upload was left pending 20 minutes ago, one batch failed.
    worker.stop()
    await analytics_data.produce(kafka.address, topics.RECORDS.name, [
        (str(user), {"user_id": user, "records": [{"wuid": f"late-{unique}", "cleaned": {}, "context": "c"}]}, 1.8e9)])
    pg = await asyncpg.connect(own_database)
    try:
        await pg.execute("INSERT INTO transfer_logs (user_id, batch_id, status, transferred_at) VALUES"
                         " ($1, 'stuck-batch', 'pending', NOW() - INTERVAL '20 minutes'),"
                         " ($1, 'failing-batch', 'failed', NOW() - INTERVAL '2 minutes')", user)
    finally:
        await pg.close()

    async def attention() -> list[str]:
        code, body = await status_json(env)
        notes: list[str] = body["attention"]
        assert code == 1 and any("no members" in n for n in notes), notes
        return notes
    notes = await eventually(attention, timeout=90, interval=2, what="status: the worker missing")
    assert any("transfer_logs: 1 upload(s) pending" in n for n in notes), notes
    assert any("1 batch(es) failed" in n for n in notes), notes
    code, text = await status(env)
    assert code == 1 and "attention:" in text and "no worker is running" in text

    # PostgreSQL and the gateway unreachable: named, and the Kafka figures still shown.
    broken = {**env, "DATABASE_URL": f"postgresql://ingestflow:not-the-password@127.0.0.1:{CLOSED}/nowhere"}
    code, body = await status_json(broken, "--gateway", f"http://127.0.0.1:{CLOSED}")
    assert code == 1
    states = {d["name"]: d["status"] for d in body["dependencies"]}
    assert states["postgres"] == "down" and states["gateway"] == "down" and states["kafka"] == "up"
    assert body["archive"] is None and body["transferLogs"] is None and body["spool"] is None
    assert len(body["partitions"]) == len(WORKER_INPUTS) * topics.EVENTS.partitions
    assert any(n.startswith("postgres is down") for n in body["attention"]), body["attention"]
    assert "ingestflow" not in json.dumps(body["dependencies"])  # no credentials of the DSN in the output
