"""`ingestflow import` as an operator runs it: report, rejected lines, dry run, backup, the real topics, and
a worker that archives an import run twice only once."""
from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
from aiokafka import AIOKafkaConsumer

from ingestflow.app.archive.local import LocalBackend
from ingestflow.app.core import serde

from ..conftest import BASE_ENV
from .analytics_data import recent_day
from .archive_support import archived_uids, success_rows, unique_user_ids
from .conftest import DSN, eventually, start_group_at_end


def _run(args: list[str], env: dict[str, str], cwd: Path) -> tuple[int, dict[str, Any], str]:
    proc = subprocess.run([sys.executable, "-m", "ingestflow.app.cli", "import", *args], cwd=cwd,
                          env={**os.environ, **env}, capture_output=True, text=True, timeout=120)
    report = serde.loads(proc.stdout.strip().splitlines()[-1]) if proc.stdout.strip() else {}
    return proc.returncode, report, proc.stderr


async def _values(topic: str, match: bytes) -> list[dict[str, Any]]:
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=BASE_ENV["KAFKA_BOOTSTRAP_SERVERS"],
                                auto_offset_reset="earliest", group_id=None)
    await consumer.start()
    found: list[dict[str, Any]] = []
    try:
        while True:
            batch = await consumer.getmany(timeout_ms=2000, max_records=5000)
            if not batch:
                break
            found += [serde.loads(m.value) for msgs in batch.values() for m in msgs if match in m.value]
    finally:
        await consumer.stop()
    return found


async def test_import_events_reports_rejects_and_produces_the_rest(
        services: None, unique: str, tmp_path: Path, env_factory: Callable[..., dict[str, str]]) -> None:
    rule = f"imp-{unique}"
    path = tmp_path / "events.ndjson"
    path.write_text("\n".join([
        serde.dumps({"type": "VIEW", "ruleId": rule, "ts": recent_day(5).strftime("%Y-%m-%dT10:00:00Z"),
                     "ip": "1.1.1.1"}).decode(),
        serde.dumps({"type": "COPY", "ruleId": rule, "idempotencyKey": f"k-{unique}"}).decode(),
        serde.dumps({"type": "LIKE", "ruleId": rule}).decode(),
        "{not json",
        serde.dumps({"type": "SAVE", "ruleId": rule}).decode(),
    ]) + "\n")
    env = env_factory()

    code, dry, _ = _run(["events", str(path), "--dry-run"], env, tmp_path)
    assert code == 1  # rejected lines make the exit status non-zero
    assert dry["dryRun"] is True and dry["produced"] == 3
    assert await _values("events", rule.encode()) == []

    code, report, stderr = _run(["events", str(path)], env, tmp_path)
    assert code == 1, stderr
    assert report["produced"] == 3 and report["read"] == 4
    assert [(r["line"], r["reason"].split(":")[0]) for r in report["rejected"]] == [
        (3, "event.type"), (4, "not valid JSON")]
    assert Path(report["backup"]).read_bytes() == path.read_bytes()
    produced = await _values("events", rule.encode())
    assert sorted(v["type"] for v in produced) == ["COPY", "SAVE", "VIEW"]
    assert {v["id"] for v in produced if v["type"] == "COPY"} == {f"k-{unique}"}


async def test_import_user_data_buffer_from_postgres(
        pg: asyncpg.Connection, unique: str, tmp_path: Path, env_factory: Callable[..., dict[str, str]]) -> None:
    await pg.execute("CREATE TABLE IF NOT EXISTS user_data_buffer (id BIGSERIAL PRIMARY KEY, user_id BIGINT NOT NULL,"
                     " record_json JSONB NOT NULL, created_at TIMESTAMPTZ DEFAULT NOW())")
    user = int(unique[:8], 16)
    entries = [{"wuid": f"w{i}-{unique}", "cleaned": {"title": f"T{i}"}, "context": "ctx"} for i in range(3)]
    await pg.execute("INSERT INTO user_data_buffer (user_id, record_json) VALUES ($1, $2::jsonb)",
                     user, serde.dumps(entries).decode())
    code, report, stderr = _run(["records", DSN, "--from-postgres"], env_factory(), tmp_path)
    assert code == 0, stderr
    assert report["produced"] >= 3
    produced = await _values("website-records", unique.encode())
    assert sorted(v["wuid"] for v in produced) == sorted(e["wuid"] for e in entries)
    assert {v["user_id"] for v in produced} == {user}


async def test_importing_records_twice_archives_each_record_once(
        pg: asyncpg.Connection, spawn: Callable[..., Any], unique: str, tmp_path: Path,
        env_factory: Callable[..., dict[str, str]]) -> None:
    users = unique_user_ids(2)
    env = env_factory(WORKER_PORT="16481", WORKER_APP_ID=f"import-archive-{unique}", ARCHIVE_MAX_AGE_S="2")
    archive = LocalBackend(Path(env["ARCHIVE_URL"][len("local://"):]))
    lines = [{"user_id": u, "wuid": f"w{i}-{u}", "cleaned": {"title": f"T{i}"}, "context": "ctx"}
             for u in users for i in range(3)]
    path = tmp_path / "records.ndjson"
    path.write_text("".join(serde.dumps(line).decode() + "\n" for line in lines))
    await start_group_at_end(env["WORKER_APP_ID"])
    worker = spawn(["worker"], env)
    try:
        code, report, stderr = _run(["records", str(path)], env, tmp_path)
        assert code == 0 and report["produced"] == 6, stderr

        async def archived(n: int) -> Any:
            rows = await success_rows(pg, users, archive)
            uids = await archived_uids(archive, rows)
            return uids if sum(uids.values()) >= n else None
        await eventually(lambda: archived(6), timeout=90, what="the first import archived")
        # The same file again, with one record changed and one new: only those two are archived again.
        lines[0]["cleaned"] = {"title": "T0, edited"}
        path.write_text("".join(serde.dumps(line).decode() + "\n" for line in lines)
                        + serde.dumps({"user_id": users[1], "wuid": "late", "cleaned": {}, "context": ""}).decode())
        code, report, stderr = _run(["records", str(path)], env, tmp_path)
        assert code == 0 and report["produced"] == 7, stderr
        uids = await eventually(lambda: archived(8), timeout=90, what="the changed and the new record archived")
        await asyncio.sleep(4)  # past ARCHIVE_MAX_AGE_S: a duplicate that would be archived is archived by now
        uids = await archived(0)
        assert uids == Counter({**{line["wuid"]: 1 for line in lines}, lines[0]["wuid"]: 2, "late": 1})
        async with aiohttp.ClientSession() as http, http.get("http://127.0.0.1:16481/metrics") as resp:
            text = await resp.text()
        assert 'ingestflow_processed_total{agent="archive",outcome="duplicate"} 5.0' in text
    except AssertionError:
        print(worker.tail(60))
        raise
