"""A replay onto the live `events` topic never counts an event twice: the worker drops what it has already
counted by event id, even for events produced without an idempotency key."""
from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import asyncpg

from ingestflow.app.core import serde

from ..conftest import BASE_ENV
from .analytics_data import produce, recent_day
from .conftest import eventually, start_group_at_end

DAY = recent_day(5) + timedelta(hours=9)


def _event(rule: str, kind: str, at: datetime) -> tuple[str, dict[str, Any], float]:
    # No idempotencyKey: the id is the only thing that makes a replayed copy recognisable.
    return rule, {"id": str(uuid.uuid4()), "type": kind, "ruleId": rule,
                  "ts": at.isoformat().replace("+00:00", "Z")}, at.timestamp()


async def test_replay_onto_live_topic_does_not_double_count(
        spawn: Callable[..., Any], env_factory: Callable[..., dict[str, str]], pg: asyncpg.Connection,
        unique: str, tmp_path: Path) -> None:
    group = f"replay-dedup-{unique}"
    bootstrap = BASE_ENV["KAFKA_BOOTSTRAP_SERVERS"]
    await start_group_at_end(group)
    env = env_factory(PORT="18451", WORKER_PORT="16451", WORKER_APP_ID=group)
    worker = spawn(["worker"], env)
    rule = f"replay-{unique}"
    since = datetime.now(timezone.utc) - timedelta(seconds=1)
    # The replay starts each partition at its first record stamped at or after `since`: a VOTE stamped now,
    # ahead of the rule's events (stamped days ago), puts them in the replayed range.
    await produce(bootstrap, "events", [_event(rule, "VOTE", datetime.now(timezone.utc))]
                  + [_event(rule, "COPY", DAY + timedelta(minutes=i)) for i in range(3)]
                  + [_event(rule, "SAVE", DAY + timedelta(minutes=10 + i)) for i in range(2)])

    async def day_row(day: datetime) -> Any:
        return await pg.fetchrow("SELECT copies, saves FROM rule_metric_daily WHERE rule_id = $1 AND day = $2",
                                 rule, day.date())
    try:
        await eventually(lambda: _is(day_row(DAY), (3, 2)), timeout=120, what="first counts")
    except AssertionError:
        print(worker.tail())
        raise

    proc = subprocess.run([sys.executable, "-m", "ingestflow.app.cli", "replay", "--topic", "events",
                           "--from", since.isoformat(), "--state-dir", str(tmp_path)],
                          env={**os.environ, **env}, capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert '"complete":true' in proc.stdout
    assert serde.loads(proc.stdout.strip().splitlines()[-1])["produced"] >= 6, proc.stdout  # the rule's 6 at least
    # A sentinel on the same rule (same partition, after the replayed copies) shows the worker got past them.
    await produce(bootstrap, "events", [_event(rule, "COPY", DAY + timedelta(days=1))])
    await eventually(lambda: _is(day_row(DAY + timedelta(days=1)), (1, 0)), timeout=120, what="sentinel counted")
    assert tuple(await day_row(DAY)) == (3, 2)


async def _is(row: Any, expected: tuple[int, int]) -> bool:
    got = await row
    return got is not None and tuple(got) == expected
