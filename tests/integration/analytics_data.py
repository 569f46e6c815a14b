"""A prepared event stream whose true daily metrics are known by construction, for the analytics tests."""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

import asyncpg
from aiokafka import AIOKafkaProducer

from ingestflow.app.core import serde


def recent_day(days_ago: int = 2) -> datetime:
    """Midnight UTC (tz-aware) of the day `days_ago` days before today, to stamp events on (their `ts` and
    Kafka record timestamp): 2 days ago or more keeps them apart from today's live traffic; a few days at most
    keeps them well inside the topics' time-based retention and the age up to which an event is counted."""
    today = datetime.now(timezone.utc).replace(hour=0, minute=0, second=0, microsecond=0)
    return today - timedelta(days=days_ago)


DAY1 = recent_day(3)
DAYS = (DAY1, DAY1 + timedelta(days=1))  # 3 and 2 days ago


@dataclass
class Stream:
    records: list[tuple[str, dict[str, Any], float]] = field(default_factory=list)  # (key, value, ts)
    truth: dict[tuple[str, str], dict[str, int]] = field(default_factory=dict)  # (rule, day) -> counts


def build(prefix: str, rules: int = 3, copies: int = 40, plain_views: int = 40, ips: int = 6,
          author_for: dict[int, str] | None = None) -> Stream:
    """Per rule and day: `copies` COPY, `plain_views` VIEW without IP (all count), and from each of `ips`
    IPs 8 views 11 minutes apart (the cap counts 5) plus 2 views a minute after its first (repeats, dropped).
    Every event has a unique idempotency key. author_for: rule index -> authorId carried by its events."""
    s = Stream()
    for r in range(rules):
        rule = f"{prefix}-r{r}"
        author = (author_for or {}).get(r)
        for day in DAYS:
            n = 0

            def add(kind: str, at: datetime, ip: str | None = None) -> None:
                nonlocal n
                n += 1
                value = {"id": f"{rule}-{day.date()}-{n}", "type": kind, "ruleId": rule, "ts":
                         at.isoformat().replace("+00:00", "Z"), "idempotencyKey": f"{rule}-{day.date()}-{n}"}
                if ip:
                    value["ip"] = ip
                if author:
                    value["authorId"] = author
                s.records.append((rule, value, at.timestamp()))

            base = day + timedelta(hours=1)
            for i in range(copies):
                add("COPY", base + timedelta(seconds=i))
            for i in range(plain_views):
                add("VIEW", base + timedelta(seconds=i))
            for ip in range(ips):
                for k in range(8):
                    add("VIEW", base + timedelta(minutes=11 * k, seconds=ip), ip=f"10.0.{r}.{ip}")
                for k in range(2):
                    add("VIEW", base + timedelta(minutes=1 + k, seconds=ip), ip=f"10.0.{r}.{ip}")
            s.truth[(rule, day.date().isoformat())] = {"views": plain_views + 5 * ips, "copies": copies}
    # Interleave rules and days the way real traffic arrives, keeping each key's own order.
    s.records.sort(key=lambda rec: (rec[2], rec[0]))
    return s


async def produce(bootstrap: str, topic: str, records: list[tuple[str, Any, float]]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=True,
                                linger_ms=5)
    await producer.start()
    try:
        futures = [await producer.send(topic, key=key.encode(),
                                       value=None if value is None else
                                       (value if isinstance(value, bytes) else serde.dumps(value)),
                                       timestamp_ms=int(ts * 1000))
                   for key, value, ts in records]
        for f in futures:
            await f
    finally:
        await producer.stop()



async def wait_group_members(bootstrap: str, group_id: str, members: int, timeout: float = 90.0) -> None:
    """Wait until the consumer group is Stable with `members` members (every worker has its partitions)."""
    import asyncio
    import time

    from aiokafka.admin import AIOKafkaAdminClient
    from aiokafka.errors import KafkaError

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                (response,) = await admin.describe_consumer_groups([group_id])
            except KafkaError as exc:  # a cold broker: no coordinator for the group yet
                if not exc.retriable:
                    raise
            else:
                _, _, state, _, _, found = response.groups[0][:6]
                if state == "Stable" and len(found) == members:
                    return
            await asyncio.sleep(0.5)
        raise AssertionError(f"group {group_id} not Stable with {members} members within {timeout}s")
    finally:
        await admin.close()


async def rule_rows(pg: asyncpg.Connection, prefix: str) -> dict[tuple[str, str], dict[str, int]]:
    """The daily rule metrics in PostgreSQL of the rules named `prefix`-*, in the shape of `Stream.truth`."""
    rows = await pg.fetch("SELECT rule_id, day::text AS day, views, copies FROM rule_metric_daily"
                          " WHERE rule_id LIKE $1", f"{prefix}-%")
    return {(r["rule_id"], r["day"]): {"views": r["views"], "copies": r["copies"]} for r in rows}
