"""The worker's table state as it grows for weeks, against a real broker of its own (other tests' traffic on
the shared topics would be consumed too): a restart reads the changelogs from the offsets it saved (not
from the start), keys restored from a changelog expire with a tombstone once their window closes, and the
worker's memory does not grow with the distinct event ids it holds."""
from __future__ import annotations

import asyncio
import random
import re
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import asyncpg
import rocksdict
from aiokafka import AIOKafkaConsumer, TopicPartition

import pytest

from ingestflow.app.clients.kafka import ensure_topics, read_topic
from ingestflow.app.core import serde
from ingestflow.schemas import topics

from . import analytics_data
from ..conftest import plaintext_kafka
from .conftest import PrivateService, all_committed, eventually

KAFKA_PORT = 18740
WINDOWED = ("dedup-keys", "view-guard", "rule-daily")
EXPIRED = ("dedup-keys", "view-guard")  # the windows of events 30 days old that have closed


@pytest.fixture
async def kafka(private_service: Callable[[str, int], PrivateService]) -> str:
    """A broker of this test's own, with the topics created; its bootstrap address."""
    broker = private_service("kafka", KAFKA_PORT)
    await ensure_topics(broker.connection, topics.ALL)
    return broker.address


def recovery_table(log: Path, title: str) -> dict[TopicPartition, int]:
    """A table Faust's recovery logs per changelog partition ("Reading Starts At - Active": the offset it
    reads from; "Highwater - Active": the last offset it reads to), from a worker's log. A repeated topic
    name is written as a ditto mark."""
    rows: dict[TopicPartition, int] = {}
    for line in log.read_text(errors="replace").splitlines():
        if title not in line:
            continue
        topic = ""
        for row in re.findall(r"^\| (\S+)\s+\| (\d+)\s+\| (-?\d+)\s+\|$", serde.loads(line)["msg"], re.M):
            topic = topic if row[0] == "\u3003" else row[0]
            rows[TopicPartition(topic, int(row[1]))] = int(row[2])
    return rows


async def end_offsets(bootstrap: str, tps: list[TopicPartition]) -> dict[TopicPartition, int]:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, isolation_level="read_committed")
    await consumer.start()
    try:
        return dict(await consumer.end_offsets(tps))
    finally:
        await consumer.stop()


async def changelog(bootstrap: str, topic: str) -> tuple[int, dict[bytes, bytes | None]]:
    """A changelog's committed records: how many, and the last value of each key (None: a tombstone)."""
    count, last = 0, {}
    async for batch in read_topic(plaintext_kafka(bootstrap), topic):
        for record in batch:
            count += 1
            last[record.key] = record.value
    return count, last


def stored_keys(table_dir: Path, table: str) -> tuple[int, int]:
    """Keys in a stopped worker's RocksDB stores of `table` (data keys, window-index entries)."""
    data = index = 0
    for path in table_dir.rglob(f"{table}-*.db"):
        db = rocksdict.Rdict(str(path), options=rocksdict.Options(raw_mode=True))
        try:
            data += sum(1 for key in db.keys() if not key.startswith(b"__faust"))
            cf = db.get_column_family("window-index")
            index += sum(1 for _ in cf.keys())
            del cf
        finally:
            db.close()
            del db
    return data, index


def unique_events(prefix: str, start: int, n: int, at: datetime, rules: int = 2000) -> list[tuple[str, Any, float]]:
    """Views from random IPs with ids all distinct, as real traffic: every one is a new key of every table."""
    stamp = at.isoformat().replace("+00:00", "Z")
    events = []
    for i in range(start, start + n):
        rule = f"{prefix}-r{i % rules}"
        ip = ".".join(str(random.randint(1, 254)) for _ in range(4))
        events.append((rule, {"id": f"{prefix}-{i}", "type": "VIEW", "ruleId": rule, "ts": stamp, "ip": ip},
                       at.timestamp()))
    return events


async def test_a_restarted_worker_reads_its_changelogs_from_where_it_committed_not_from_the_start(
        kafka: str, spawn: Callable[..., Any], env_factory: Callable[..., dict[str, str]], pg: asyncpg.Connection,
        unique: str) -> None:
    prefix, app_id = f"rs{unique}", f"state-restart-{unique}"
    env = env_factory(WORKER_PORT="18724", WORKER_APP_ID=app_id, KAFKA_BOOTSTRAP_SERVERS=kafka)
    stream = analytics_data.build(prefix, copies=150, plain_views=150)
    await analytics_data.produce(kafka, "events", stream.records)
    worker = spawn(["worker"], env)
    try:
        await analytics_data.wait_group_members(kafka, app_id, 1, timeout=600)
        await all_committed(app_id, timeout=300, bootstrap=kafka)
        worker.kill()  # kill -9: whatever the store has is what the commits put there
        held = sum([(await changelog(kafka, f"{app_id}-{t}-changelog"))[0] for t in WINDOWED])
        assert held >= len(stream.records)  # every event wrote its dedup key at least

        # LOG_LEVEL=DEBUG: Faust's recovery tables (its INFO lines) are logged only then.
        worker = spawn(["worker"], dict(env, LOG_LEVEL="DEBUG"))
        await analytics_data.wait_group_members(kafka, app_id, 1, timeout=600)
        await eventually(lambda: "Recovery]: Worker ready" in worker.log.read_text(), timeout=600,
                         what="the restarted worker's table recovery done")
        starts = recovery_table(worker.log, "Reading Starts At - Active")
        highwaters = recovery_table(worker.log, "Highwater - Active")
        ends = await end_offsets(kafka, list(highwaters))
        # Recovery knows where each changelog ends (else it would skip what it holds) ...
        assert all(highwaters[tp] >= end - 2 for tp, end in ends.items() if end > 0), (highwaters, ends)
        # ... and reads from the saved offsets on: a record or two per table partition, whatever the history.
        read = sum(max(0, highwaters[tp] - max(starts[tp], -1)) for tp in highwaters)
        print(f"recovery read {read} of {held} changelog records")
        assert read <= 0.02 * held, f"recovery read {read} changelog records of {held} on restart"
        # ... up to each changelog's end at once: a saved offset short of the last commit's marker left an
        # offset with no record to read, and recovery waited ten seconds for it (Faust's check for aborted
        # transactions, which logs this line when it gives up waiting).
        assert "Aborted tx until highwater" not in worker.log.read_text()

        # The state read back is whole: the same input again counts nothing twice.
        await analytics_data.produce(kafka, "events", stream.records)
        await all_committed(app_id, timeout=300, bootstrap=kafka)
        rows = await pg.fetch("SELECT rule_id, day::text AS day, views, copies FROM rule_metric_daily"
                              " WHERE rule_id LIKE $1", f"{prefix}-%")
        assert {(r["rule_id"], r["day"]): {"views": r["views"], "copies": r["copies"]} for r in rows} == stream.truth
    except AssertionError:
        print(worker.tail(60))
        raise


async def test_keys_restored_from_the_changelog_expire_with_tombstones_once_their_window_closes(
        kafka: str, spawn: Callable[..., Any], env_factory: Callable[..., dict[str, str]], unique: str,
        tmp_path: Path) -> None:
    prefix, app_id = f"ex{unique}", f"state-expiry-{unique}"
    first_dir, second_dir = tmp_path / "first", tmp_path / "second"
    env = env_factory(WORKER_PORT="18725", WORKER_APP_ID=app_id, TABLE_DIR=str(first_dir),
                      KAFKA_BOOTSTRAP_SERVERS=kafka)
    # Thirty days ago: past the dedup windows' expiry (two 7-day windows) and the view guard's (2 days), still
    # within the 35 counted days, whose `rule-daily` windows outlive every event a worker accepts.
    await analytics_data.produce(kafka, "events",
                                 unique_events(prefix, 0, 300, datetime.now(timezone.utc) - timedelta(days=30), 7))
    first = spawn(["worker"], env)  # expires every TABLE_EXPIRY_INTERVAL_S (300 s): nothing before it stops
    await analytics_data.wait_group_members(kafka, app_id, 1, timeout=600)
    await all_committed(app_id, timeout=300, bootstrap=kafka)
    first.stop()
    live = {t: {k for k, v in (await changelog(kafka, f"{app_id}-{t}-changelog"))[1].items() if v is not None}
            for t in WINDOWED}
    assert all(live.values()), live

    # A worker with an empty table directory restores every key from the changelogs, then expires them.
    second = spawn(["worker"], dict(env, TABLE_DIR=str(second_dir), TABLE_EXPIRY_INTERVAL_S="1"))

    async def all_tombstoned() -> bool:
        for table, keys in live.items():
            if table not in EXPIRED:
                continue
            last = (await changelog(kafka, f"{app_id}-{table}-changelog"))[1]
            alive = [k for k in keys if last.get(k) is not None]
            assert not alive, f"{len(alive)} of {len(keys)} keys of {table} without a tombstone"
        return True
    try:
        await eventually(all_tombstoned, timeout=600, interval=2, what="a tombstone for every expired key")
    except AssertionError:
        print(second.tail(60))
        raise
    second.stop()
    for table in EXPIRED:
        assert stored_keys(second_dir, table) == (0, 0), table  # the store emptied, index included
    daily = (await changelog(kafka, f"{app_id}-rule-daily-changelog"))[1]
    assert all(daily.get(k) is not None for k in live["rule-daily"]), "a day still counted lost its counts"
    assert stored_keys(second_dir, "rule-daily")[0] == len(live["rule-daily"])


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


async def test_worker_memory_stays_flat_while_the_distinct_ids_it_holds_grow(
        kafka: str, spawn: Callable[..., Any], env_factory: Callable[..., dict[str, str]], unique: str) -> None:
    prefix, app_id, step = f"mem{unique}", f"state-memory-{unique}", 30_000
    env = env_factory(WORKER_PORT="18726", WORKER_APP_ID=app_id, TABLE_MEMORY_MB="32", LOG_LEVEL="WARNING",
                      KAFKA_BOOTSTRAP_SERVERS=kafka)
    worker = spawn(["worker"], env)
    await analytics_data.wait_group_members(kafka, app_id, 1, timeout=600)
    assert worker.proc is not None
    sizes: list[tuple[int, float]] = []
    now = datetime.now(timezone.utc)
    for n in range(4):  # the first step warms the stores up to their memory budget
        await analytics_data.produce(kafka, "events", unique_events(prefix, n * step, step, now))
        await all_committed(app_id, timeout=600, bootstrap=kafka)
        await asyncio.sleep(2)
        sizes.append(((n + 1) * step, rss_mb(worker.proc.pid)))
    (ids0, rss0), (ids1, rss1) = sizes[1], sizes[-1]
    per_id_kb = (rss1 - rss0) * 1024 / (ids1 - ids0)
    print(f"worker RSS by distinct ids held: {sizes}; {per_id_kb:.3f} KB per id")
    # Faust's own windowed tables held 0.7-1.3 KB of Python memory per id until expiry (14 days); half the
    # lowest of those fails that design. What remains at these small sizes (0.1-0.2 KB per id, falling as
    # they grow: 0.08 KB from 200k to 800k ids in bench/bench_scale.py) is RocksDB and the allocator settling.
    assert per_id_kb < 0.35, f"RSS grows by {per_id_kb:.2f} KB per distinct id: {sizes}"
