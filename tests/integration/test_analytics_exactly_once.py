"""Exactly-once daily metrics against the real broker: a worker killed with SIGKILL mid-stream and
restarted, with the whole stream produced twice, still ends with every daily metric equal to the truth
computed from the input; authors arriving late on the `rules` catalog get their totals filled in."""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

import asyncpg

from . import analytics_data
from .conftest import all_committed, eventually, start_group_at_end


async def _author_rows(pg: asyncpg.Connection, prefix: str) -> dict[tuple[str, str], dict[str, int]]:
    rows = await pg.fetch("SELECT author_id, day::text AS day, views, copies FROM author_metric_daily"
                          " WHERE author_id LIKE $1", f"{prefix}-%")
    return {(r["author_id"], r["day"]): {"views": r["views"], "copies": r["copies"]} for r in rows}


async def test_kill_9_mid_stream_and_replayed_input_count_each_event_once(
        spawn: Callable[..., Any], env_factory: Callable[..., dict[str, str]], pg: asyncpg.Connection,
        unique: str) -> None:
    prefix = f"eo{unique}"
    env = env_factory(WORKER_PORT="18301", WORKER_APP_ID=f"analytics-eo-{unique}")
    bootstrap = env["KAFKA_BOOTSTRAP_SERVERS"]
    # Large enough (24,360 records) that one batch (at most 10 chunks of 1,000 records, agents/rule_metrics.py)
    # holds a fraction of it: the kill lands mid-stream.
    stream = analytics_data.build(prefix, copies=2000, plain_views=2000, author_for={2: f"{prefix}-bob"})
    await start_group_at_end(env["WORKER_APP_ID"])
    # The same input twice (a producer retrying everything), plus one record no one can decode.
    await analytics_data.produce(bootstrap, "events", stream.records)
    await analytics_data.produce(bootstrap, "events", [(f"{prefix}-r0", b"{not json", stream.records[0][2])])
    await analytics_data.produce(bootstrap, "events", stream.records)

    worker = spawn(["worker"], env)
    try:
        # Upper bounds only: on a cold broker the first worker can take a minute to join its group.
        await eventually(lambda: analytics_data.rule_rows(pg, prefix), timeout=600, interval=0.05, what="first rows")
        worker.kill()  # SIGKILL: no shutdown, no commit
        partial = await analytics_data.rule_rows(pg, prefix)
        worker = spawn(["worker"], env)
        # The killed member leaves the group when its session times out; then the new one takes over.
        await analytics_data.wait_group_members(bootstrap, env["WORKER_APP_ID"], 1, timeout=600)

        async def converged() -> bool:
            return await analytics_data.rule_rows(pg, prefix) == stream.truth
        await eventually(converged, timeout=300, what="daily rule metrics equal to the truth")
    except AssertionError:
        print(worker.tail(80))
        raise
    assert partial != stream.truth  # the kill landed before the stream was fully counted
    # The restarted worker commits everything it counted: the group's lag returns to zero.
    await all_committed(env["WORKER_APP_ID"], timeout=300)

    # The catalog names alice as author of r0 and r1, after their events were counted.
    await analytics_data.produce(bootstrap, "rules", [
        (f"{prefix}-r{i}", {"ruleId": f"{prefix}-r{i}", "authorId": f"{prefix}-alice"}, stream.records[-1][2])
        for i in (0, 1)])
    expected: dict[tuple[str, str], dict[str, int]] = {}
    for (rule, day), counts in stream.truth.items():
        author = f"{prefix}-bob" if rule.endswith("-r2") else f"{prefix}-alice"
        acc = expected.setdefault((author, day), {"views": 0, "copies": 0})
        acc["views"] += counts["views"]
        acc["copies"] += counts["copies"]

    async def authors_filled() -> bool:
        return await _author_rows(pg, prefix) == expected
    try:
        await eventually(authors_filled, timeout=300, what="author totals filled in from the catalog")
    except AssertionError:
        print(await _author_rows(pg, prefix), worker.tail(80))
        raise
