"""A worker added to a group busy with a backlog, then removed again, as an operator scales out and back
in under load. What the operator checks: the first worker keeps running throughout, and every daily metric
equals the truth (each event counted once, none lost).

The first worker's PostgreSQL link is slowed (Toxiproxy latency), so that the rebalance lands while it
holds batches taken before it. The partitions it hands over must have their transactional producers
stopped: the newcomer starts its own under the same transactional ids, which fences the old ones, and a
fenced producer kept open was used again when the partitions came back, failing the first worker's next
commit (ProducerFenced) and taking the worker down."""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

import asyncpg

from ingestflow.app.clients.kafka import ensure_topics
from ingestflow.schemas import topics

from . import analytics_data
from .conftest import DSN, Process, all_committed, eventually
from .toxiproxy import Toxiproxy

KAFKA_PORT, WORKER_A, WORKER_B, PG_PROXY_PORT = 18580, 18582, 18583, 18584


class WorkerExited(Exception):
    """Raised inside a wait: `eventually` retries assertions, not this."""


async def test_a_worker_added_to_a_busy_group_and_removed_again_leaves_every_event_counted_once(
        spawn: Callable[..., Process], env_factory: Callable[..., dict[str, str]], toxiproxy: Toxiproxy,
        private_service: Callable[..., Any], pg: asyncpg.Connection, unique: str) -> None:
    kafka = private_service("kafka", KAFKA_PORT)
    await ensure_topics(kafka.connection, topics.ALL)
    bootstrap = str(kafka.address)
    pg_address = DSN.split("@")[1].split("/")[0]
    link = await toxiproxy.create(f"scale-out-pg-{unique}", PG_PROXY_PORT, pg_address)
    prefix = f"so{unique}"
    group = f"scale-out-{unique}"
    # LOG_LEVEL=DEBUG: Faust's recovery logs its INFO lines only then (checked at the end).
    common = dict(WORKER_APP_ID=group, KAFKA_BOOTSTRAP_SERVERS=bootstrap, LOG_LEVEL="DEBUG")
    env_a = env_factory(WORKER_PORT=str(WORKER_A), DATABASE_URL=DSN.replace(pg_address, link.address), **common)
    env_b = env_factory(WORKER_PORT=str(WORKER_B), TABLE_DIR=env_a["TABLE_DIR"] + "-b", **common)
    # Many rules, so that every partition has events; several take_events batches of backlog.
    stream = analytics_data.build(prefix, rules=24, copies=60, plain_views=60)
    half = len(stream.records) // 2
    await analytics_data.produce(bootstrap, "events", stream.records[:half])

    worker_a = spawn(["worker"], env_a, name="worker-a")
    worker_b: Process | None = None
    try:
        await toxiproxy.add(link, "latency", {"latency": 150, "jitter": 50})
        # Worker A is at work on the backlog: its first day totals are in PostgreSQL.
        await eventually(lambda: analytics_data.rule_rows(pg, prefix), timeout=600, interval=0.1, what="worker A's first rows")
        worker_b = spawn(["worker"], env_b, name="worker-b")
        await analytics_data.wait_group_members(bootstrap, group, 2, timeout=600)
        # Worker B has taken its share (its transactional producers started, fencing A's for those ids) ...
        await eventually(lambda: "transactional producer" in worker_b.tail(100_000), timeout=300,
                         what="worker B's partitions assigned")
        assert worker_a.alive(), worker_a.tail(60)
        # ... and leaves: worker A gets every partition back, and the rest of the backlog arrives.
        worker_b.stop()
        await analytics_data.wait_group_members(bootstrap, group, 1, timeout=600)
        await analytics_data.produce(bootstrap, "events", stream.records[half:])

        async def counted() -> bool:
            if not worker_a.alive():
                raise WorkerExited("worker A exited")
            return await analytics_data.rule_rows(pg, prefix) == stream.truth
        await eventually(counted, timeout=600, what="daily rule metrics equal to the truth")
        await all_committed(group, timeout=300, bootstrap=bootstrap)
        assert worker_a.alive(), "worker A exited"
        # Partitions that moved were recovered without Faust's ten-second wait for records that never come
        # (the transaction the old owner had open is aborted; app/worker/recovery.py), which it logs as:
        for worker in (worker_a, worker_b):
            assert "Aborted tx until highwater" not in worker.tail(1_000_000)
    except (AssertionError, WorkerExited):
        print("worker A:", worker_a.tail(60))
        if worker_b is not None:
            print("worker B:", worker_b.tail(60))
        raise
