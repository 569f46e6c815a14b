"""Bad records produced straight to Kafka (as a service that bypasses the gateway would) with a worker running:
each lands on `dead-letters` byte for byte with its source and error in headers, the good records after it
on the same partition are processed, and the worker's group commits to the end of every partition."""
from __future__ import annotations

import asyncio
import base64
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.partitioner import murmur2

from ingestflow.app.archive.local import LocalBackend
from ingestflow.app.core import serde
from ingestflow.schemas import records
from ingestflow.schemas.topics import RECORDS

from ..conftest import BASE_ENV
from .analytics_data import recent_day
from .archive_support import archived_uids, success_rows, unique_user_ids
from .conftest import all_committed, committed_lag, eventually, start_group_at_end

KAFKA = BASE_ENV["KAFKA_BOOTSTRAP_SERVERS"]
DEEP = b'{"a":' * 300 + b"1" + b"}" * 300
DAY = recent_day(2)


@dataclass(frozen=True)
class Sent:
    """A record as produced: where it landed and its exact bytes."""

    name: str
    topic: str
    partition: int
    offset: int
    key: bytes
    value: bytes


async def produce(items: list[tuple[str, str, int, bytes, bytes]]) -> list[Sent]:
    """(name, topic, partition, key, value) in order, each acknowledged by Kafka."""
    producer = AIOKafkaProducer(bootstrap_servers=KAFKA, acks="all", enable_idempotence=True)
    await producer.start()
    try:
        sent = []
        for name, topic, partition, key, value in items:
            meta = await producer.send_and_wait(topic, value, key=key, partition=partition,
                                                headers=[("producer", b"direct")])
            sent.append(Sent(name, topic, partition, meta.offset, key, value))
        return sent
    finally:
        await producer.stop()


async def dead_letter_ends() -> dict[TopicPartition, int]:
    consumer = AIOKafkaConsumer(bootstrap_servers=KAFKA)
    await consumer.start()
    try:
        await consumer._client.force_metadata_update()
        partitions = consumer._client.cluster.partitions_for_topic("dead-letters") or set()
        return dict(await consumer.end_offsets([TopicPartition("dead-letters", p) for p in sorted(partitions)]))
    finally:
        await consumer.stop()


class DeadLetterReader:
    """The committed dead letters a worker (by its dlq.worker header) sent after `start`, by source."""

    def __init__(self, start: dict[TopicPartition, int], worker: str) -> None:
        self.start, self.worker = start, worker
        self.found: dict[tuple[str, int, int], list[Any]] = {}  # a value split in parts: several records
        self.consumer = AIOKafkaConsumer(bootstrap_servers=KAFKA, isolation_level="read_committed",
                                         enable_auto_commit=False)

    async def __aenter__(self) -> DeadLetterReader:
        await self.consumer.start()
        self.consumer.assign(list(self.start))
        for tp, offset in self.start.items():
            self.consumer.seek(tp, offset)
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.consumer.stop()

    async def poll(self) -> dict[tuple[str, int, int], list[Any]]:
        for messages in (await self.consumer.getmany(timeout_ms=500)).values():
            for m in messages:
                headers = {k: v.decode() for k, v in m.headers}
                if headers.get("dlq.worker") == self.worker:
                    source = (headers["dlq.source.topic"], int(headers["dlq.source.partition"]),
                              int(headers["dlq.source.offset"]))
                    self.found.setdefault(source, []).append(m)
        return self.found


def check_dead_letter(found: dict[tuple[str, int, int], list[Any]], sent: Sent, field: str) -> str | None:
    """What is wrong with `sent`'s dead letter (the parts of a split one joined in order), or None."""
    parts = found.get((sent.topic, sent.partition, sent.offset))
    if not parts:
        return "not dead-lettered"
    m = parts[0]
    headers = {k: v.decode() for k, v in m.headers}
    numbers = [dict(p.headers).get("dlq.part", b"1/1").decode() for p in parts]
    if numbers != [f"{i}/{len(parts)}" for i in range(1, len(parts) + 1)]:
        return f"parts {numbers}"
    value = b"".join(p.value for p in parts)
    problems = [
        "key changed" if any(p.key != sent.key for p in parts) else "",
        "value changed" if value != sent.value else "",
        "" if m.headers[0] == ("producer", b"direct") else f"original headers lost: {m.headers[:1]}",
        "" if headers.get("dlq.error.type") == "ValidationError" else f"error type {headers.get('dlq.error.type')}",
        "" if headers.get("dlq.error.field") == field else f"field {headers.get('dlq.error.field')!r} != {field!r}",
        "" if headers.get("dlq.error.message", "").startswith(f"{field}: ") else "message does not name the field",
        "" if headers.get("dlq.at", "").endswith("+00:00") else "no dlq.at",
        "" if headers.get("dlq.source.timestamp", "").isdigit() else "no dlq.source.timestamp"]
    return "; ".join(p for p in problems if p) or None


async def wait_all(checks: Callable[[], Any], what: str, timeout: float) -> None:
    """Every case checked each round and reported together, so a failure shows each case's state."""
    async def all_ok() -> bool:
        state = await checks()
        bad = {case: problem for case, problem in state.items() if problem}
        assert not bad, "\n".join(f"  {case}: {problem}" for case, problem in sorted(bad.items()))
        return True
    await eventually(all_ok, timeout, interval=1.0, what=what)


def _event(rule: str, **extra: Any) -> bytes:
    return serde.dumps({"type": "COPY", "ruleId": rule, "ts": DAY.strftime("%Y-%m-%dT10:00:00Z"), **extra})


async def test_bad_analytics_crawl_and_stripe_records_are_dead_lettered_and_the_partition_moves_on(
        spawn: Callable[..., Any], env_factory: Callable[..., dict[str, str]], pg: asyncpg.Connection,
        unique: str) -> None:
    env = env_factory(WORKER_PORT="18551", WORKER_APP_ID=f"dlq-analytics-{unique}")
    group = env["WORKER_APP_ID"]
    await start_group_at_end(group)
    start = await dead_letter_ends()
    worker = spawn(["worker"], env)
    r = f"dlq-{unique}"
    long_author = base64.b64encode(os.urandom(6000)).decode()  # passes no index: PostgreSQL would refuse it

    def stripe(event_id: str, author: str) -> bytes:
        return serde.dumps({"id": event_id, "type": "payment_intent.succeeded",
                            "created": int(DAY.timestamp()) + 36_000,  # 10:00 that day
                            "data": {"object": {"id": f"pi_{event_id}", "amount_received": 500, "currency": "usd",
                                                "metadata": {"authorId": author}}}})

    def crawl(ext: str, **change: Any) -> bytes:
        return serde.dumps({"sourceId": r, "externalId": ext, "url": "https://e.org/x", "title": "a title",
                            "receivedAt": DAY.strftime("%Y-%m-%dT10:00:00Z"), **change})

    sent = await produce([
        ("ruleId NUL", "events", 1, f"{r}-\x00".encode(), _event(f"{r}-\u0000")),
        ("event authorId NUL", "events", 1, f"{r}-a".encode(), _event(f"{r}-a", authorId="au\u0000")),
        ("good event", "events", 1, f"{r}-ok".encode(), _event(f"{r}-ok", idempotencyKey=f"{r}-1")),
        ("catalog authorId NUL", "rules", 2, f"{r}-c".encode(), serde.dumps({"ruleId": f"{r}-c", "authorId": "\u0000"})),
        ("good catalog", "rules", 2, f"{r}-c2".encode(), serde.dumps({"ruleId": f"{r}-c2", "authorId": f"au-{r}"})),
        ("crawl title NUL", "crawl-items", 0, f"{r}:t".encode(), crawl("t", title="bad \u0000 title")),
        ("crawl raw NUL", "crawl-items", 0, f"{r}:raw".encode(), crawl("raw", raw={"k\u0000": "v"})),
        ("good crawl", "crawl-items", 0, f"{r}:ok".encode(), crawl("ok")),
        ("stripe authorId NUL", "stripe-webhooks", 3, f"evt_n_{r}".encode(), stripe(f"evt_n_{r}", "a\u0000")),
        ("stripe authorId too long", "stripe-webhooks", 3, f"evt_l_{r}".encode(), stripe(f"evt_l_{r}", long_author)),
        ("good stripe", "stripe-webhooks", 3, f"evt_ok_{r}".encode(), stripe(f"evt_ok_{r}", f"au-{r}")),
    ])
    fields = {"ruleId NUL": "ruleId", "event authorId NUL": "authorId", "catalog authorId NUL": "authorId",
              "crawl title NUL": "title", "crawl raw NUL": "raw", "stripe authorId NUL": "value",
              "stripe authorId too long": "data.object.metadata.authorId"}

    async def good_processed() -> dict[str, str | None]:
        return {
            "good event": None if await pg.fetchval(
                "SELECT copies FROM rule_metric_daily WHERE rule_id = $1", f"{r}-ok") == 1 else "not counted",
            "good catalog": None if await pg.fetchval(
                "SELECT author_id FROM rule_authors WHERE rule_id = $1", f"{r}-c2") == f"au-{r}" else "not stored",
            "good crawl": None if await pg.fetchval(
                "SELECT count(*) FROM crawl_items WHERE source_id = $1", r) == 1 else "not stored",
            "good stripe": None if await pg.fetchval(
                "SELECT count(*) FROM donations WHERE stripe_event_id = $1", f"evt_ok_{r}") == 1 else "not stored"}

    try:
        async with DeadLetterReader(start, group) as reader:
            async def checks() -> dict[str, str | None]:
                found = await reader.poll()
                lag = await committed_lag(group)
                return {**{s.name: check_dead_letter(found, s, fields[s.name]) for s in sent if s.name in fields},
                        **await good_processed(), "lag": f"{lag}" if lag else None}
            await wait_all(checks, "every bad record dead-lettered, every good one processed, lag 0", timeout=180)
    except AssertionError:
        print(worker.tail(60))
        raise


async def test_bad_and_oversized_website_records_never_stall_their_partition(
        spawn: Callable[..., Any], env_factory: Callable[..., dict[str, str]], pg: asyncpg.Connection,
        unique: str) -> None:
    env = env_factory(WORKER_PORT="18552", WORKER_APP_ID=f"dlq-archive-{unique}", BUFFER_SIZE="100")
    group = env["WORKER_APP_ID"]
    archive = LocalBackend(Path(env["ARCHIVE_URL"][len("local://"):]))
    await start_group_at_end(group)
    start = await dead_letter_ends()
    worker = spawn(["worker"], env)
    def partition_of(u: int) -> int:
        return (murmur2(str(u).encode()) & 0x7FFFFFFF) % RECORDS.partitions
    user, *others = unique_user_ids(8)
    big_user = next(u for u in others if partition_of(u) != partition_of(user))  # each case on its own partition
    partition, big_partition = partition_of(user), partition_of(big_user)

    def rec(u: int, wuid: str, size: int = 10) -> bytes:
        return records.WebsiteRecord(u, wuid, {"text": "x" * size}, "ctx").encode()

    key, big_key = str(user).encode(), str(big_user).encode()
    sent = await produce([
        ("user_id ²", RECORDS.name, partition, key, b'{"user_id": "\xc2\xb2", "wuid": "w", "cleaned": {}}'),
        ("cleaned nested 300 deep", RECORDS.name, partition, key,
         b'{"user_id": ' + key + b', "wuid": "deep", "cleaned": ' + DEEP + b"}"),
        # Near the broker's 1,048,588 bytes: more than the worker's producer sends in one record.
        ("1 MB, user_id ²", RECORDS.name, partition, key,
         b'{"user_id": "\xc2\xb2", "wuid": "w", "cleaned": {"text": "' + b"x" * 1_040_000 + b'"}}'),
        ("good record", RECORDS.name, partition, key, rec(user, f"ok-{unique}")),
        ("flush", RECORDS.name, partition, key, records.flush_user(user)[1]),
        ("600 KB #1", RECORDS.name, big_partition, big_key, rec(big_user, f"big1-{unique}", 600_000)),
        ("600 KB #2", RECORDS.name, big_partition, big_key, rec(big_user, f"big2-{unique}", 600_000)),
    ])
    fields = {"user_id ²": "user_id", "cleaned nested 300 deep": "cleaned", "1 MB, user_id ²": "user_id"}

    async def big_ones_consumed() -> bool:  # both records are in the user's pending value, or archived
        lag = await committed_lag(group)
        assert f"{RECORDS.name}[{big_partition}]" not in lag, f"lag: {lag}"
        return True
    try:
        await eventually(big_ones_consumed, 120, what="the two 600 KB records consumed")
    except AssertionError:
        print(worker.tail(30))
        raise
    await produce([("flush big", RECORDS.name, big_partition, big_key, records.flush_user(big_user)[1])])

    async def archived(users: list[int]) -> set[str]:
        return set(await archived_uids(archive, await success_rows(pg, users, archive)))

    try:
        async with DeadLetterReader(start, group) as reader:
            async def checks() -> dict[str, str | None]:
                found = await reader.poll()
                lag = await committed_lag(group)
                small, big = await archived([user]), await archived([big_user])
                return {**{s.name: check_dead_letter(found, s, fields[s.name]) for s in sent if s.name in fields},
                        "good record": None if small == {f"ok-{unique}"} else f"archived: {sorted(small)}",
                        "two 600 KB records": None if big == {f"big1-{unique}", f"big2-{unique}"}
                        else f"archived: {sorted(big)}", "lag": f"{lag}" if lag else None}
            await wait_all(checks, "bad records dead-lettered, good and big ones archived, lag 0", timeout=180)
            [huge] = [x for x in sent if x.name == "1 MB, user_id ²"]
            assert len(reader.found[(huge.topic, huge.partition, huge.offset)]) == 2, "split in two parts"
        rows = await success_rows(pg, [big_user], archive)
        assert [r["entries_transferred"] for r in rows] == [1, 1], "the first cut before the second record"
        # Nothing left behind a moment later. The worker's hourly flush may have produced records to every
        # partition meanwhile (a run crossing the hour did): those must be consumed too, so wait for them.
        await asyncio.sleep(2)
        await all_committed(group)
    except AssertionError:
        print(worker.tail(60))
        raise
