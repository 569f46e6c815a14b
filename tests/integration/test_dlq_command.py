"""`ingestflow dlq list|show|redrive` against the real Kafka and PostgreSQL: a real worker dead-letters the
records its store refuses, the operator fixes the store and re-drives them, the worker then processes them;
a second run sends nothing; and a run stopped between its send and its record does not send twice."""
from __future__ import annotations

import asyncio
import sys
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

import asyncpg
import pytest
from aiokafka.partitioner import murmur2

from ingestflow.app.clients.db import Database
from ingestflow.app.clients.kafka import OutgoingMessage, Producer, ensure_topics
from ingestflow.app.core import serde
from ingestflow.app.core.errors import Unavailable
from ingestflow.app.ops.dlq import Selection
from ingestflow.app.ops.redrive import redrive
from ingestflow.app.stores.redrive_store import Redrive, RedriveStore
from ingestflow.schemas.dead_letters import Failure, Source, envelopes
from ingestflow.schemas.topics import CRAWL, DEAD_LETTERS, TopicSpec

from ..conftest import BASE_ENV, plaintext_kafka
from .analytics_data import recent_day
from .conftest import committed_lag, delete_topics, eventually, start_group_at_end
from .gateway_kit import consume, end_offsets

KAFKA = BASE_ENV["KAFKA_BOOTSTRAP_SERVERS"]
CONNECTION = plaintext_kafka(KAFKA)
DAY = recent_day(2)
AT_MS = int(DAY.timestamp()) * 1000 + 36_000_000  # 10:00 that day, in epoch ms: the records' timestamps


@dataclass
class Run:
    code: int
    out: bytes
    err: str

    def json(self) -> Any:
        return serde.loads(self.out)


async def cli(env: dict[str, str], *args: str) -> Run:
    """`ingestflow ...` as an operator runs it, in its own process."""
    proc = await asyncio.create_subprocess_exec(sys.executable, "-m", "ingestflow.app.cli", *args, env=env,
                                                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), 300)
    assert proc.returncode is not None
    return Run(proc.returncode, out, err.decode(errors="replace"))


async def produce(messages: list[OutgoingMessage]) -> list[int]:
    """Acknowledged by Kafka, in order; their offsets."""
    producer = Producer(CONNECTION, send_timeout=30.0)
    try:
        return [offset for _, offset in await producer.send_many(messages)]
    finally:
        await producer.stop()


def crawl(source: str, ext: str, title: str, raw: Any = None) -> bytes:
    return serde.dumps({"sourceId": source, "externalId": ext, "url": "https://e.org/x", "title": title,
                        "raw": raw, "receivedAt": DAY.strftime("%Y-%m-%dT10:00:00Z")})


def same_record(got: Any, sent: OutgoingMessage) -> str | None:
    """What differs between a record read from Kafka and the one first produced (None: nothing)."""
    problems = [name for name, a, b in (("key", got.key, sent.key), ("value", got.value, sent.value),
                                         ("headers", list(got.headers), list(sent.headers)),
                                         ("timestamp", got.timestamp, sent.timestamp_ms)) if a != b]
    return ", ".join(problems) or None


async def test_refused_records_are_listed_shown_and_redriven_once_the_store_is_fixed(
        spawn: Callable[..., Any], env_factory: Callable[..., dict[str, str]], own_database: str,
        unique: str) -> None:
    env = env_factory(WORKER_PORT="18801", WORKER_APP_ID=f"dlq-cmd-{unique}", DATABASE_URL=own_database)
    group, src = env["WORKER_APP_ID"], f"redrive-{unique}"
    db = await asyncpg.connect(own_database)
    scratch = f"dlq-scratch-{unique}"
    # The store refuses these titles (a constraint an operator will drop): the worker dead-letters them.
    await db.execute(f"ALTER TABLE crawl_items ADD CONSTRAINT refuse_{unique} CHECK (title NOT LIKE 'refused%')")
    await start_group_at_end(group)
    since = datetime.now(timezone.utc).isoformat()
    worker = spawn(["worker"], env)
    traced = (("trace-id", f"trace-{unique}".encode()), ("producer", b"direct"))
    messages = [OutgoingMessage(CRAWL.name, f"{src}:a".encode(), crawl(src, "a", "refused a"), AT_MS,
                                traced, 0),
                OutgoingMessage(CRAWL.name, f"{src}:b".encode(),
                                crawl(src, "b", "refused b", {"text": "x" * 1_040_000}), AT_MS + 1000, traced, 0),
                OutgoingMessage(CRAWL.name, f"{src}:c".encode(), b"{not json", AT_MS + 2000, traced, 0),
                OutgoingMessage(CRAWL.name, f"{src}:ok".encode(), crawl(src, "ok", "fine"), None, traced, 0)]
    a, b, c, _ = await produce(messages)
    ids = {"a": f"{CRAWL.name}:0:{a}", "b": f"{CRAWL.name}:0:{b}", "c": f"{CRAWL.name}:0:{c}"}
    mine = ("--worker", group, "--since", since)

    async def listed() -> Any:
        run = await cli(env, "dlq", "list", *mine, "--json")
        assert run.code == 0, run.err
        body = run.json()
        assert body["counts"] == [{"topic": CRAWL.name, "errorType": "CheckViolationError", "count": 2},
                                  {"topic": CRAWL.name, "errorType": "ValidationError", "count": 1}], body
        assert await committed_lag(group) == {}
        return body
    try:
        body = await eventually(listed, 180, interval=2.0, what="three dead letters listed, lag 0")
        assert {d["id"]: (d["errorType"], d["parts"]) for d in body["deadLetters"]} == {
            ids["a"]: ("CheckViolationError", 1), ids["b"]: ("CheckViolationError", 2), ids["c"]: ("ValidationError", 1)}
        assert await db.fetchval("SELECT title FROM crawl_items WHERE source_id = $1", src) == "fine"

        text = await cli(env, "dlq", "list", *mine)
        assert ids["b"] in text.out.decode() and "CheckViolationError" in text.out.decode(), text.out
        shown = await cli(env, "dlq", "show", ids["b"], "--since", since)
        assert shown.code == 0, shown.err
        letter = shown.json()
        assert letter["key"] == {"text": f"{src}:b"} and letter["value"] == {"text": messages[1].value.decode()}
        assert letter["headers"] == [{"name": "trace-id", "text": f"trace-{unique}"}, {"name": "producer",
                                                                                       "text": "direct"}]
        assert (letter["errorType"], letter["worker"], letter["parts"]) == ("CheckViolationError", group, 2)
        raw = await cli(env, "dlq", "show", ids["b"], "--value")
        assert raw.out == messages[1].value
        missing = await cli(env, "dlq", "show", f"{CRAWL.name}:0:{c + 100_000}", "--since", since)
        assert missing.code == 1 and "no dead letter" in missing.err

        refused = ("dlq", "redrive", *mine, "--error", "CheckViolationError")
        before = await end_offsets(KAFKA, CRAWL.name)

        async def redriven(wait_for: int, timeout: float) -> list[Any]:
            """The records with a or b's key produced to crawl-items since `before`."""
            return await consume(KAFKA, CRAWL.name, lambda got: len(got) > wait_for, start=before, timeout=timeout,
                                 keep=lambda r: r.key in (messages[0].key, messages[1].key))
        dry = await cli(env, *refused, "--dry-run")
        assert dry.code == 0, dry.err
        assert (dry.json()["toSend"], dry.json()["sent"]) == ([ids["a"], ids["b"]], 0)
        assert await redriven(0, 3) == [], "a dry run sends nothing"

        await db.execute(f"ALTER TABLE crawl_items DROP CONSTRAINT refuse_{unique}")  # the fix
        done = await cli(env, *refused)
        assert done.code == 0, done.err
        assert (done.json()["sent"], done.json()["complete"]) == (2, True), done.out
        assert "redrive [" in done.err and "2/2" in done.err, done.err  # the progress bar

        async def stored() -> bool:
            rows = await db.fetch("SELECT external_id, title, length(raw::text) AS raw, trace_id FROM crawl_items"
                                  " WHERE source_id = $1 ORDER BY external_id", src)
            assert [(r["external_id"], r["title"]) for r in rows] == [("a", "refused a"), ("b", "refused b"),
                                                                      ("ok", "fine")], rows
            assert rows[1]["raw"] > 1_040_000 and {r["trace_id"] for r in rows} == {f"trace-{unique}"}
            return True
        await eventually(stored, 120, what="the re-driven records stored by the worker")
        again = await redriven(1, 60)
        assert [same_record(got, sent) for got, sent in zip(again, messages[:2], strict=True)] == [None, None]
        assert {r.partition for r in again} == {0}, "back to their source partition"

        twice = await cli(env, *refused)
        assert (twice.json()["sent"], twice.json()["alreadyRedriven"]) == (0, 2), twice.out
        assert len(await redriven(2, 3)) == 2, "the second run sent nothing"

        await ensure_topics(CONNECTION, [TopicSpec(scratch, key="test", partitions=3)])
        moved = await cli(env, "dlq", "redrive", *mine, "--record", ids["c"], "--to", scratch)
        assert moved.json()["sent"] == 1, moved.out
        [copy] = await consume(KAFKA, scratch, lambda got: len(got) >= 1, timeout=60)
        assert same_record(copy, messages[2]) is None
        assert copy.partition == (murmur2(messages[2].key) & 0x7FFFFFFF) % 3
        await eventually(lambda: _no_lag(group), 60, what="lag 0 after the re-drive")
    except AssertionError:
        print(worker.tail(60))
        raise
    finally:
        await db.close()
        await delete_topics({scratch})


async def _no_lag(group: str) -> bool:
    lag = await committed_lag(group)
    assert not lag, lag
    return True


class LosesConfirmations(RedriveStore):
    """PostgreSQL gone between Kafka's acknowledgement and the rows' confirmation (as a crash would)."""

    async def confirm(self, sent: Any) -> None:
        raise Unavailable("PostgreSQL is unreachable: ConnectionResetError")


async def test_a_redrive_stopped_between_its_send_and_its_record_sends_nothing_twice(
        own_database: str, unique: str) -> None:
    """Dead letters as the worker writes them, for records of a topic of this test's own; a first run loses
    PostgreSQL after Kafka acknowledged its chunk; another left a row whose record it never sent."""
    target = f"dlq-target-{unique}"
    await ensure_topics(CONNECTION, [TopicSpec(target, key="test", partitions=2)])
    worker = f"dlq-crash-{unique}"
    sources = [Source(target, i % 2, 10 + i, AT_MS + i, f"k{i}".encode(), f"v{i}".encode(),
                      (("trace-id", f"t{i}".encode()),)) for i in range(4)]
    await produce([OutgoingMessage(DEAD_LETTERS.name, r.key, r.value, None, tuple(r.headers))
                   for s in sources for r in envelopes(s, Failure("ValidationError", "bad", worker))])
    db = Database(own_database, max_size=3)
    await db.start()
    store, selection, stop = RedriveStore(db), Selection(workers=frozenset({worker})), asyncio.Event()
    try:
        never_sent = Redrive(target, 1, 13, target, 1, 0, "not yet sent", "ValidationError")
        await store.intend([never_sent])  # a run that stopped after its row, before its send
        with pytest.raises(Unavailable):
            await redrive(CONNECTION, LosesConfirmations(db), selection, to=None, stop=stop, chunk=3)
        first = await consume(KAFKA, target, lambda got: len(got) >= 3, timeout=60)
        assert sorted(r.value for r in first) == [b"v0", b"v1", b"v2"]

        async with store.exclusive():  # another re-drive running: this one is refused
            with pytest.raises(Unavailable, match="another `ingestflow dlq redrive` is running"):
                await redrive(CONNECTION, store, selection, to=None, stop=stop)

        report = await redrive(CONNECTION, store, selection, to=None, stop=stop)
        assert (report.settled, report.sent, report.already, report.complete) == (3, 1, 0, True)
        every = await consume(KAFKA, target, lambda got: False, timeout=5)  # all there is on the topic
        assert sorted(r.value for r in every) == [b"v0", b"v1", b"v2", b"v3"], "each sent exactly once"
        assert {(r.partition, r.key) for r in every} == {(s.partition, s.key) for s in sources}
        rows = await db.fetch("SELECT source_offset, target_partition, target_offset FROM dlq_redrives"
                              " WHERE target_topic = $1 ORDER BY source_offset", target)
        landed = {(r.partition, r.offset) for r in every}
        assert {(r["target_partition"], r["target_offset"]) for r in rows} == landed
        final = await redrive(CONNECTION, store, selection, to=None, stop=stop)
        assert (final.already, final.sent, final.settled) == (4, 0, 0)
    finally:
        await db.stop()
        await delete_topics({target})
