"""`ingestflow status`: what an operator checks first, in one look.

Every figure comes from where it is kept, not from a process that may be down: the consumer group's
committed offsets, end offsets and members from Kafka, the spool from the gateway's /status/buffers, the
archive backlog and transfer_logs from PostgreSQL. Each source is probed with a deadline; one that cannot
be reached is reported down and its section left empty, and the rest is still shown. `attention` lists
what needs an operator; the command exits non-zero when it is not empty.
"""
from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, TypeVar

import aiohttp
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.coordinator.protocol import ConsumerProtocolMemberAssignment

from ingestflow.app.archive.base import ArchiveBackend
from ingestflow.app.archive.registry import backend_for
from ingestflow.app.archive.state import ArchiveState
from ingestflow.app.archive.transfer_logs import TransferLogs, TransferSummary
from ingestflow.app.clients.db import Database
from ingestflow.app.clients.kafka import start_client
from ingestflow.app.clients.kafka_security import client_options
from ingestflow.app.clients.redis_client import RedisClient
from ingestflow.app.core.settings import KafkaConnection, Settings
from ingestflow.app.web.health import check

__all__ = ["Thresholds", "Member", "PartitionStatus", "GroupStatus", "Status", "consumer_group", "collect",
           "render"]

T = TypeVar("T")
DEADLINE_S = 10.0  # per source: a group query is several requests


@dataclass(frozen=True)
class Thresholds:
    """When a figure needs an operator. Defaults suit the shipped alerts (deploy/prometheus/alerts.yml)."""

    max_lag: int = 1000
    spool_used: float = 0.8
    pending_transfer_s: float = 900.0
    archive_age_factor: float = 2.0  # records older than this many ARCHIVE_MAX_AGE_S should have been flushed


@dataclass(frozen=True)
class Member:
    client_id: str
    host: str
    member_id: str
    partitions: tuple[tuple[str, int], ...]

    def to_json(self) -> dict[str, Any]:
        return {"clientId": self.client_id, "host": self.host, "memberId": self.member_id,
                "partitions": len(self.partitions)}


@dataclass(frozen=True)
class PartitionStatus:
    topic: str
    partition: int
    committed: int | None  # None: the group has never committed here (it reads from the log start)
    end: int
    lag: int
    owner: str | None
    host: str | None

    def to_json(self) -> dict[str, Any]:
        return {"topic": self.topic, "partition": self.partition, "committed": self.committed, "end": self.end,
                "lag": self.lag, "owner": self.owner, "host": self.host}


@dataclass(frozen=True)
class GroupStatus:
    group: str
    state: str
    members: tuple[Member, ...]
    partitions: tuple[PartitionStatus, ...]


@dataclass
class Status:
    group: str
    checked_at: datetime
    dependencies: list[dict[str, object]] = field(default_factory=list)
    consumer: GroupStatus | None = None
    spool: dict[str, Any] | None = None
    archive: dict[str, Any] | None = None
    transfers: TransferSummary | None = None
    attention: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        c = self.consumer
        return {"group": self.group, "checkedAt": self.checked_at.isoformat(timespec="seconds"),
                "state": c.state if c else None,
                "members": [m.to_json() for m in c.members] if c else [],
                "partitions": [p.to_json() for p in c.partitions] if c else [],
                "spool": self.spool, "archive": self.archive,
                "transferLogs": self.transfers.to_json() if self.transfers else None,
                "dependencies": self.dependencies, "attention": self.attention}


async def consumer_group(kafka: KafkaConnection, group: str, topic_names: Sequence[str]) -> GroupStatus:
    """The group's state, its members with their assignment, and per partition of `topic_names` the
    committed offset, the end offset and the lag, as Kafka (not any worker) has them."""
    admin = AIOKafkaAdminClient(**client_options(kafka), client_id="ingestflow-status")
    consumer = AIOKafkaConsumer(**client_options(kafka), client_id="ingestflow-status", enable_auto_commit=False)
    await start_client(kafka, admin.start, admin.close, DEADLINE_S)
    try:
        await start_client(kafka, consumer.start, consumer.stop, DEADLINE_S)
        try:
            description = (await admin.describe_consumer_groups([group]))[0].to_object()["groups"][0]
            committed = {tp: meta.offset for tp, meta in (await admin.list_consumer_group_offsets(group)).items()}
            await consumer._client.force_metadata_update()
            tps = [TopicPartition(t, p) for t in topic_names
                   for p in sorted(consumer._client.cluster.partitions_for_topic(t) or ())]
            ends = await consumer.end_offsets(tps)
            unset = [tp for tp in tps if committed.get(tp, -1) < 0]
            starts = await consumer.beginning_offsets(unset) if unset else {}
        finally:
            await consumer.stop()
    finally:
        await admin.close()
    members = tuple(_member(m) for m in description["members"])
    owners = {tp: m for m in members for tp in m.partitions}
    partitions = []
    for tp in tps:
        offset = committed.get(tp, -1)
        known = offset if offset >= 0 else None
        owner = owners.get((tp.topic, tp.partition))
        partitions.append(PartitionStatus(
            tp.topic, tp.partition, known, ends[tp], max(0, ends[tp] - (known if known is not None else starts[tp])),
            owner.client_id if owner else None, owner.host if owner else None))
    return GroupStatus(group, description["state"], members, tuple(partitions))


def _member(raw: dict[str, Any]) -> Member:
    assignment = raw["member_assignment"]
    owned: tuple[tuple[str, int], ...] = ()
    if assignment:
        decoded = ConsumerProtocolMemberAssignment.decode(assignment)
        owned = tuple(sorted((topic, p) for topic, parts in decoded.assignment for p in parts))
    return Member(raw["client_id"], raw["client_host"].lstrip("/"), raw["member_id"], owned)


async def _gateway_buffers(url: str) -> dict[str, Any]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=DEADLINE_S)) as http:
        async with http.get(f"{url.rstrip('/')}/status/buffers") as response:
            response.raise_for_status()
            body: dict[str, Any] = await response.json()
            return body


async def _archive_backlog(state: ArchiveState, now: datetime) -> dict[str, Any]:
    rows = await state.stats()
    oldest = [datetime.fromisoformat(r["oldestAt"]) for r in rows if r["oldestAt"] and r["records"]]
    return {"records": sum(r["records"] for r in rows), "users": sum(r["users"] for r in rows),
            "oldestAgeSeconds": round((now - min(oldest)).total_seconds(), 1) if oldest else None,
            "partitions": rows}


async def collect(settings: Settings, *, group: str, topic_names: Sequence[str], gateway_url: str | None,
                  thresholds: Thresholds = Thresholds()) -> Status:
    """Everything `ingestflow status` shows, each source probed at once and bounded in time."""
    now = datetime.now(timezone.utc)
    status = Status(group=group, checked_at=now)
    db = Database(settings.database_url.get(), max_size=2)
    redis = RedisClient(settings.redis_url.get())
    archives: list[ArchiveBackend] = []
    results: dict[str, Any] = {}

    def keep(name: str, call: Callable[[], Awaitable[T]]) -> Callable[[], Awaitable[T]]:
        async def run() -> T:
            results[name] = value = await call()
            return value
        return run

    async def postgres() -> None:
        await db.start()
        await db.ping()

    async def archive_ping() -> None:
        archives.append(backend_for(settings))  # a misconfigured ARCHIVE_URL is this dependency down
        await archives[0].start()
        await archives[0].ping()

    probes: list[tuple[str, Callable[[], Awaitable[object]], bool]] = [
        ("kafka", keep("kafka", lambda: consumer_group(settings.kafka, group, topic_names)), True),
        ("postgres", postgres, True), ("redis", lambda: _redis_ping(redis), False),
        ("archive", archive_ping, True)]
    if gateway_url:
        probes.append(("gateway", keep("gateway", lambda: _gateway_buffers(gateway_url)), True))
    try:
        checks = await asyncio.gather(*(check(name, call, DEADLINE_S) for name, call, _ in probes))
        for result, (_, _, required) in zip(checks, probes):
            result["required"] = required
        status.dependencies = list(checks)
        status.consumer, status.spool = results.get("kafka"), results.get("gateway")
        if _up(status, "postgres"):
            status.archive = await _archive_backlog(ArchiveState(db, group, settings.cron_schedule), now)
            status.transfers = await TransferLogs(db).summary()
    finally:
        await asyncio.gather(db.stop(), redis.stop(), *(a.stop() for a in archives), return_exceptions=True)
    status.attention = attention(status, thresholds, archive_max_age_s=settings.archive_max_age_s)
    return status


async def _redis_ping(redis: RedisClient) -> None:
    await redis.start()
    await redis.ping()


def _up(status: Status, name: str) -> bool:
    return any(d["name"] == name and d["status"] == "up" for d in status.dependencies)


def attention(status: Status, t: Thresholds, *, archive_max_age_s: float) -> list[str]:
    """What needs an operator, one line each; empty when all is well."""
    notes = [f"{d['name']} is down ({d.get('error')})" for d in status.dependencies
             if d["required"] and d["status"] != "up"]
    c = status.consumer
    if c is not None:
        if not c.members:
            notes.append(f"consumer group {c.group} has no members: no worker is running")
        for p in c.partitions:
            where = f"{p.topic}[{p.partition}]"
            if p.lag > t.max_lag:
                notes.append(f"{where}: lag {p.lag} is above {t.max_lag}")
            if p.lag and p.owner is None and c.members:
                notes.append(f"{where}: {p.lag} records waiting and no worker owns the partition")
    s = status.spool
    if s is not None:
        if s["spoolMaxBytes"] and s["spoolBytes"] >= t.spool_used * s["spoolMaxBytes"]:
            notes.append(f"spool holds {s['spoolBytes']} of {s['spoolMaxBytes']} bytes "
                         f"(over {t.spool_used:.0%}): new input gets 503 once it is full")
        if not s["spoolWritable"]:
            notes.append("spool is not writable")
        if s["failed"]:
            notes.append(f"spool has {s['failed']} corrupt stretch(es) parked in failed/")
    a = status.archive
    if a is not None and a["oldestAgeSeconds"] is not None \
            and a["oldestAgeSeconds"] > t.archive_age_factor * archive_max_age_s:
        notes.append(f"archive: the oldest buffered record is {a['oldestAgeSeconds']:.0f}s old "
                     f"(flushes are due after {archive_max_age_s:.0f}s)")
    x = status.transfers
    if x is not None:
        if x.oldest_pending_s is not None and x.oldest_pending_s > t.pending_transfer_s:
            notes.append(f"transfer_logs: {x.pending} upload(s) pending, the oldest for {x.oldest_pending_s:.0f}s")
        if x.failed_batches:
            notes.append(f"transfer_logs: {x.failed_batches} batch(es) failed and not archived yet")
    return notes


def render(status: Status) -> str:
    """The text form: dependencies, partitions, spool, archive, transfer_logs, then what needs attention."""
    lines = [f"ingestflow status · group {status.group} · {status.checked_at:%Y-%m-%d %H:%M:%S} UTC", "",
             "dependencies:"]
    for d in status.dependencies:
        extra = f" ({d['error']})" if d.get("error") else ""
        lines.append(f"  {d['name']:<10} {d['status']}{extra}{'' if d['required'] else '  optional'}")
    c = status.consumer
    if c is not None:
        lines += ["", f"consumer group: {c.state}, {len(c.members)} member(s)"]
        for m in c.members:
            lines.append(f"  {m.client_id} on {m.host}: {len(m.partitions)} partition(s)")
        lines.append(f"  {'partition':<22} {'committed':>10} {'end':>10} {'lag':>8}  owner")
        for p in c.partitions:
            committed = "-" if p.committed is None else str(p.committed)
            lines.append(f"  {p.topic + '[' + str(p.partition) + ']':<22} {committed:>10} {p.end:>10} {p.lag:>8}"
                         f"  {p.owner or '-'}")
    if status.spool is not None:
        s = status.spool
        lines += ["", f"spool: {s['pending']} message(s), {s['spoolBytes']} of {s['spoolMaxBytes']} bytes, "
                      f"{s['failed']} corrupt stretch(es), kafka {'healthy' if s['kafkaHealthy'] else 'unhealthy'}"]
    if status.archive is not None:
        a = status.archive
        age = "-" if a["oldestAgeSeconds"] is None else f"{a['oldestAgeSeconds']:.0f}s"
        lines += ["", f"archive backlog: {a['records']} record(s) of {a['users']} user(s), oldest {age}"]
    if status.transfers is not None:
        x = status.transfers
        oldest = "" if x.oldest_pending_s is None else f" (oldest {x.oldest_pending_s:.0f}s)"
        lines += ["", f"transfer_logs: {x.pending} pending{oldest}, {x.failed_batches} failed batch(es) not "
                      f"archived, {x.failed_last_hour} failed attempt(s) in the last hour"]
    lines += ["", "attention:" if status.attention else "nothing needs attention"]
    lines += [f"  - {note}" for note in status.attention]
    return "\n".join(lines)
