"""Following one event end to end: a traced request's id is in the gateway's log, in the `trace-id` header of the
records it produced (through the disk spool too), in the worker's log lines about them, on the crawl_items row
and the archive's transfer_logs row they ended in, and on the dead letter of the one the store refused."""
from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg

from ingestflow.app.archive.local import LocalBackend
from ingestflow.app.core import serde
from ingestflow.app.ops.dlq import Selection, scan
from ingestflow.schemas.topics import CRAWL, RECORDS

from ..conftest import BASE_ENV, plaintext_kafka
from .archive_support import archived_uids, unique_user_ids
from .conftest import Process, eventually, start_group_at_end, wait_http
from .gateway_kit import consume, end_offsets, post

KAFKA = BASE_ENV["KAFKA_BOOTSTRAP_SERVERS"]
CONNECTION = plaintext_kafka(KAFKA)
TRACE = "4bf92f3577b34da6a3ce929d0e0e{}"


def log_lines(process: Process) -> list[dict[str, Any]]:
    """The JSON lines of a process's log (anything else it printed is skipped)."""
    lines = []
    for line in process.log.read_text(errors="replace").splitlines():
        try:
            entry = serde.loads(line)
        except serde.DecodeError:
            continue
        if isinstance(entry, dict):
            lines.append(entry)
    return lines


def naming(lines: list[dict[str, Any]], trace: str) -> list[str]:
    """The messages of the lines that carry `trace` (as the request id, or a record's or batch's trace id)."""
    return [line["msg"] for line in lines
            if trace in (line.get("request_id"), line.get("trace_id")) or trace in line.get("trace_ids", ())]


async def test_a_traced_request_is_followed_to_its_rows_archive_object_and_dead_letter(
        spawn: Callable[..., Any], env_factory: Callable[..., dict[str, str]], own_database: str,
        unique: str) -> None:
    env = env_factory(PORT="18804", WORKER_PORT="18805", WORKER_APP_ID=f"trace-{unique}", DATABASE_URL=own_database,
                      BUFFER_SIZE="2")
    base, group = "http://127.0.0.1:18804", env["WORKER_APP_ID"]
    db = await asyncpg.connect(own_database)
    await db.execute(f"ALTER TABLE crawl_items ADD CONSTRAINT refuse_{unique} CHECK (title NOT LIKE 'refused%')")
    await start_group_at_end(group)
    since = datetime.now(timezone.utc)
    crawl_start, records_start = await end_offsets(KAFKA, CRAWL.name), await end_offsets(KAFKA, RECORDS.name)
    worker, gateway = spawn(["worker"], env), spawn(["gateway"], env)
    await wait_http(f"{base}/health")
    crawl_trace, events_trace, records_trace = TRACE.format("0001"), TRACE.format("0003"), f"req-{unique}"
    src, [user] = f"trace-{unique}", unique_user_ids(1)

    def traceparent(trace: str) -> dict[str, str]:
        return {"traceparent": f"00-{trace}-00f067aa0ba902b7-01"}
    async with aiohttp.ClientSession() as http:
        crawled = await post(http, f"{base}/ingest/crawl", {"sourceId": src, "items": [
            {"externalId": "ok", "url": "https://e.org/1", "title": "a title"},
            {"externalId": "no", "url": "https://e.org/2", "title": "refused by the store"}]},
            headers=traceparent(crawl_trace))
        # Through the disk spool: fire-and-forget requests are spooled first, then replayed to Kafka.
        spooled = await post(http, f"{base}/ingest/records", {"user_id": user, "bufferMs": 0, "records": [
            {"wuid": f"w1-{unique}", "cleaned": {"a": 1}}, {"wuid": f"w2-{unique}", "cleaned": {"a": 2}}]},
            headers={"x-request-id": records_trace})
        counted = await post(http, f"{base}/ingest/events", {"events": [
            {"type": "COPY", "ruleId": f"rule-{unique}", "ts": since.isoformat()}]}, headers=traceparent(events_trace))
    assert (crawled.status, spooled.status, counted.status) == (202, 202, 202), (crawled, spooled, counted)
    assert spooled.body["stored"] == "spool"
    answered = [{k.lower(): v for k, v in r.headers.items()}.get("x-request-id") for r in (crawled, spooled, counted)]
    assert answered == [crawl_trace, records_trace, events_trace]
    archive = LocalBackend(Path(env["ARCHIVE_URL"][len("local://"):]))

    async def followed() -> bool:
        row = await db.fetchrow("SELECT trace_id FROM crawl_items WHERE source_id = $1 AND external_id = 'ok'", src)
        assert row is not None and row["trace_id"] == crawl_trace, f"crawl_items row: {row}"
        transfers = await db.fetch("SELECT lighthouse_hash, user_id, entries_transferred, batch_id, trace_ids"
                                   " FROM transfer_logs WHERE status = 'success' AND trace_ids @> $1::text[]",
                                   [records_trace])
        assert [r["user_id"] for r in transfers] == [user], f"transfer_logs rows: {transfers}"
        assert await archived_uids(archive, transfers) == {f"w1-{unique}": 1, f"w2-{unique}": 1}
        assert await db.fetchval("SELECT copies FROM rule_metric_daily WHERE rule_id = $1", f"rule-{unique}") == 1
        [letter] = (await scan(CONNECTION, Selection(workers=frozenset({group}), since=since))).letters
        assert (letter.source.key, dict(letter.source.headers)) == (f"{src}:no".encode(),
                                                                   {"trace-id": crawl_trace.encode()})
        return True
    try:
        await eventually(followed, 180, interval=1.0, what="the rows, the archive object and the dead letter")
        gateway_log, worker_log = log_lines(gateway), log_lines(worker)
        for trace in (crawl_trace, records_trace, events_trace):
            assert naming(gateway_log, trace), f"{trace} in the gateway's log"
        assert any(m.startswith("crawl items written") for m in naming(worker_log, crawl_trace))
        assert any(m.startswith(f"dead-lettered {CRAWL.name}:") for m in naming(worker_log, crawl_trace))
        assert any("archived as" in m for m in naming(worker_log, records_trace))
        assert any(m.startswith("rule metrics written") for m in naming(worker_log, events_trace))
    except AssertionError:
        print(gateway.tail(20), worker.tail(60))
        raise
    finally:
        await db.close()
    for topic, start, key, trace in ((CRAWL.name, crawl_start, f"{src}:ok".encode(), crawl_trace),
                                     (RECORDS.name, records_start, str(user).encode(), records_trace)):
        [record, *_] = await consume(KAFKA, topic, lambda got: len(got) >= 1, start=start, timeout=60,
                                     keep=lambda r, key=key: r.key == key)
        assert ("trace-id", trace.encode()) in list(record.headers), (topic, record.headers)
