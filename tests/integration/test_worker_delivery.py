"""No fetched record is lost between the fetch and the commit, against the real broker: a seek landing in
the middle of a delivered batch during a rebalance (what Faust's table recovery does when a second worker
joins) and a delivery lost for any other reason (then sought back by the watchdog) both end with every
record processed and the group's committed offsets at the end of the topic."""
from __future__ import annotations

import os
import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
from aiokafka import TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, RecordsToDelete

from ingestflow.app.clients.kafka import ensure_topics
from ingestflow.schemas.records import partition_keys
from ingestflow.schemas.topics import TopicSpec

from ..conftest import plaintext_kafka
from . import analytics_data
from .conftest import ROOT, committed_lag, eventually, start_group_at_end

APP = "tests.integration.delivery_app"


def app_env(env_factory: Callable[..., dict[str, str]], app_id: str, port: int, stall_check_s: float) -> dict[str, str]:
    path = os.pathsep.join(p for p in (os.environ.get("PYTHONPATH"), str(ROOT)) if p)
    return env_factory(WORKER_APP_ID=app_id, WORKER_PORT=str(port), STALL_CHECK_S=str(stall_check_s), PYTHONPATH=path)


async def backlog(bootstrap: str, app_id: str, partitions: int, per_partition: int) -> tuple[str, set[tuple[int, int]]]:
    """A topic holding `per_partition` records in each partition; returns it and its (partition, offset)s."""
    topic = f"{app_id}-in"
    await ensure_topics(plaintext_kafka(bootstrap), [TopicSpec(topic, key="k", partitions=partitions)])
    keys = [key.decode() for key in partition_keys(partitions)]  # one key per partition
    await analytics_data.produce(bootstrap, topic, [(keys[i % partitions], f"v{i}".encode(), time.time())
                                                    for i in range(partitions * per_partition)])
    return topic, {(p, o) for p in range(partitions) for o in range(per_partition)}


def processed(*outs: Path) -> set[tuple[int, int]]:
    return {(int(p), int(o)) for out in outs if out.exists()
            for p, o in (line.split() for line in out.read_text().splitlines() if not line.startswith("count"))}


async def every_record_processed_and_committed(apps: list[Any], app_id: str, topic: str, outs: list[Path],
                                               expected: set[tuple[int, int]]) -> None:
    async def done() -> bool:
        missing = expected - processed(*outs)
        assert not missing, f"{len(missing)} records never processed, from {min(missing)}"
        lag = await committed_lag(app_id, (topic,))
        assert not lag, f"committed offsets short of the end: {lag}"
        return True
    try:
        await eventually(done, timeout=240, what="every record processed and committed")
    except AssertionError:
        for app in apps:
            print(app.tail(60))
        raise


async def one_partition_through(spawn: Callable[..., Any], env_factory: Callable[..., dict[str, str]], app_id: str,
                                port: int, fault: str, out: Path, stall_check_s: float = 1) -> tuple[Any, str]:
    """300 records in one partition through the app with `fault`, until every one is processed and
    committed; returns the app and the topic."""
    env = app_env(env_factory, app_id, port, stall_check_s=stall_check_s)
    topic, expected = await backlog(env["KAFKA_BOOTSTRAP_SERVERS"], app_id, partitions=1, per_partition=300)
    app = spawn([topic, "1", str(out), fault], env, name="delivery", module=APP)
    await every_record_processed_and_committed([app], app_id, topic, [out], expected)
    return app, topic


async def metrics_of(port: int) -> str:
    async with aiohttp.ClientSession() as session, session.get(f"http://127.0.0.1:{port}/metrics") as response:
        return await response.text()


async def test_a_partition_left_behind_by_a_lost_delivery_is_sought_back_by_the_watchdog(
        spawn: Callable[..., Any], env_factory: Callable[..., dict[str, str]], unique: str, tmp_path: Path) -> None:
    app, topic = await one_partition_through(spawn, env_factory, f"delivery-lost-{unique}", 18722, "lose-one",
                                             tmp_path / "processed.txt")
    assert f'ingestflow_partition_stalls_total{{partition="0",topic="{topic}"}} 1.0' in await metrics_of(18722)
    assert f"partition {topic}[0] stalled at committed offset 50" in app.log.read_text()


async def test_a_delivery_lost_before_the_group_committed_anything_is_read_again(
        spawn: Callable[..., Any], env_factory: Callable[..., dict[str, str]], unique: str, tmp_path: Path) -> None:
    """A partition the group never committed has no committed offset to hold a commit back or to seek to
    (aiokafka's seek to the committed offsets skips it): the first record's loss was committed over."""
    app, topic = await one_partition_through(spawn, env_factory, f"delivery-first-{unique}", 18728, "lose-first",
                                             tmp_path / "processed.txt")
    assert f"partition {topic}[0] stalled at committed offset 0" in app.log.read_text()


async def test_a_batch_that_failed_in_its_agent_is_rolled_back_and_read_again(
        spawn: Callable[..., Any], env_factory: Callable[..., dict[str, str]], unique: str, tmp_path: Path) -> None:
    """Faust acks a batch whose agent raised, and commits: its records were committed unprocessed, and the
    table writes made before the failure were committed with the next batch. The batch is read again from
    the commit instead, its table writes rolled back: each record counted once."""
    out = tmp_path / "processed.txt"
    app, topic = await one_partition_through(spawn, env_factory, f"delivery-raise-{unique}", 18729, "raise-once", out,
                                             stall_check_s=60)
    counts = [int(line.split()[2]) for line in out.read_text().splitlines() if line.startswith("count 0 ")]
    assert counts[-1] == 300, f"the table counted {counts[-1]} records of 300"
    assert 'ingestflow_batches_read_again_total{agent="record"} 1.0' in await metrics_of(18729)
    assert re.search(rf"forced failure after the batch's table writes\); rolled back and read again from "
                     rf"{re.escape(topic)}\[0\]@\d+", app.log.read_text())


async def test_records_the_retention_deleted_before_they_were_processed_do_not_hold_the_partition_back(
        spawn: Callable[..., Any], env_factory: Callable[..., dict[str, str]], unique: str, tmp_path: Path) -> None:
    """Records stamped with an old event time are deleted by a time-based retention as soon as the broker
    checks (every few minutes), even unread: a worker behind them found its fetch position reset past them and
    its committed offset stuck below the topic's first offset, a lag that never drains."""
    app_id, port = f"delivery-deleted-{unique}", 18727
    env = app_env(env_factory, app_id, port, stall_check_s=1)
    bootstrap = env["KAFKA_BOOTSTRAP_SERVERS"]
    topic, _ = await backlog(bootstrap, app_id, partitions=1, per_partition=10)
    await start_group_at_end(app_id, (topic,))  # the group has read the first ten
    await analytics_data.produce(bootstrap, topic, [("k", f"w{i}".encode(), time.time()) for i in range(290)])
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.delete_records({TopicPartition(topic, 0): RecordsToDelete(before_offset=300)})  # retention
    finally:
        await admin.close()
    out = tmp_path / "processed.txt"
    app = spawn([topic, "1", str(out), "none"], env, name="delivery", module=APP)
    await every_record_processed_and_committed([app], app_id, topic, [out], set())
    metrics = await metrics_of(port)
    assert f'ingestflow_records_deleted_unprocessed_total{{partition="0",topic="{topic}"}} 290.0' in metrics
    assert "290 records (offsets 10 to 299) were deleted by the topic's retention" in app.log.read_text()
    # And the partition goes on with what arrives next.
    await analytics_data.produce(bootstrap, topic, [("k", f"x{i}".encode(), time.time()) for i in range(5)])
    await every_record_processed_and_committed([app], app_id, topic, [out], {(0, o) for o in range(300, 305)})


async def test_a_worker_that_caught_up_commits_without_waiting_for_its_commit_interval(
        spawn: Callable[..., Any], env_factory: Callable[..., dict[str, str]], unique: str, tmp_path: Path) -> None:
    """Faust commits on its timer only: with an interval of an hour, the end of a backlog and every later
    record stayed uncommitted (their outputs invisible to read_committed consumers) for up to that hour."""
    app_id, port = f"delivery-caught-up-{unique}", 18730
    env = {**app_env(env_factory, app_id, port, stall_check_s=60), "COMMIT_INTERVAL_S": "3600"}
    topic, expected = await backlog(env["KAFKA_BOOTSTRAP_SERVERS"], app_id, partitions=1, per_partition=300)
    out = tmp_path / "processed.txt"
    app = spawn([topic, "1", str(out), "none"], env, name="delivery", module=APP)
    await every_record_processed_and_committed([app], app_id, topic, [out], expected)  # the backlog's end

    await analytics_data.produce(env["KAFKA_BOOTSTRAP_SERVERS"], topic,
                                 [("k", f"later{i}".encode(), time.time()) for i in range(5)])
    await every_record_processed_and_committed([app], app_id, topic, [out],
                                               expected | {(0, offset) for offset in range(300, 305)})
