"""Stream job: collect each user's website records and archive them in encrypted batches.

A user's batch is cut when it reaches BUFFER_SIZE records, before a record that would take the user's
pending value past its byte bound (tables/archive_pending.py; a record over the bound alone is a batch of
its own), or at a control message on the records topic (`flush` for one user, `flush-all` for a partition)
which the gateway, the cron timer and the age timer send. Cuts depend only on the topic's contents, so a
replay cuts the same batches with the same ids.

Exactly once: the batches cut from one take_events batch are uploaded (bounded concurrency) and logged
`success` before the table is written and before Faust may ack those events; the table keeps a per-user
offset watermark so any record or control replayed after a crash is a no-op, and a batch replayed after
its upload finds its `success` row and is not uploaded twice. A record already buffered with the same
content (user, website_uid, fingerprint in `archive-seen`) is dropped, so producing the same records twice
(an import run again) archives them once. A batch keeps its records' distinct trace ids, which its
transfer_logs rows and log lines carry. The loop never raises: a record that fails for its own content is
dead-lettered (agents/isolate.py finds it when a whole batch fails), a backend or PostgreSQL outage is
retried until it passes (the partition waits).
"""
from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from contextlib import AbstractAsyncContextManager, nullcontext
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from ingestflow.app.archive.sink import ArchiveSink, Batch
from ingestflow.app.archive.state import ArchiveState
from ingestflow.app.clients.kafka import OutgoingMessage, Producer
from ingestflow.app.core import tracing
from ingestflow.app.core.clock import Clock
from ingestflow.app.core.errors import is_transient
from ingestflow.app.core.observability import PROCESSED, observe_batch
from ingestflow.app.core.retry import retry
from ingestflow.app.worker.commit_gate import CommitGate, Current, all_current
from ingestflow.app.worker.failed_batches import FailedBatches
from ingestflow.app.worker.partitions import check_changelogs
from ingestflow.app.worker.table_event import for_tables
from ingestflow.schemas import records as schema
from ingestflow.schemas.topics import RECORDS
from ingestflow.tables import archive_pending, archive_seen

from .dead_letter import DeadLetters
from .isolate import write_isolating

__all__ = ["register", "Entry", "append", "cut", "is_stale", "flush_all_messages", "BufferTimer", "BATCH_SIZE"]

log = logging.getLogger(__name__)
BATCH_SIZE = 2000
BATCH_WITHIN_S = 0.5
TIMER_INTERVAL_S = 1.0
AGENT = "archive"


@dataclass
class Entry:
    """A user's pending records (the table value, as a dataclass while the agent works on it)."""

    partition: int
    upto: int = -1
    first_ts: float | None = None
    offsets: list[int] = field(default_factory=list)
    records: list[dict[str, Any]] = field(default_factory=list)
    size: int = archive_pending.EMPTY_BYTES  # value_bytes(records), kept up to date (not stored)
    traces: list[str] = field(default_factory=list)  # the pending records' distinct trace ids

    @classmethod
    def load(cls, raw: dict[str, Any] | None, partition: int) -> Entry:
        if not raw:
            return cls(partition)
        records = list(raw["records"])
        return cls(raw["p"], raw["upto"], raw.get("first_ts"), list(raw["offsets"]), records,
                   archive_pending.value_bytes(records), list(raw.get("traces", ())))

    def dump(self) -> dict[str, Any]:
        return {"p": self.partition, "upto": self.upto, "first_ts": self.first_ts, "offsets": self.offsets,
                "records": self.records, "traces": self.traces}


def append(entry: Entry, user_id: int, offset: int, ts: float, record: dict[str, Any],
           buffer_size: int, trace: str | None = None) -> list[Batch]:
    """Add one record (with its trace id); returns the batches this cuts, in order: the pending records when
    this one would take the value past its byte bound, this one alone when it passes the bound by itself, the
    pending records when they reach BUFFER_SIZE."""
    if offset <= entry.upto:
        return []  # replayed: already buffered or archived
    size = archive_pending.record_bytes(record)
    batches = [_take(entry, user_id)] if entry.records and entry.size + size > archive_pending.MAX_VALUE_BYTES \
        else []
    entry.upto = offset
    traces = () if trace is None else (trace,)
    if archive_pending.EMPTY_BYTES + size > archive_pending.MAX_VALUE_BYTES:
        return [*batches, Batch(user_id, entry.partition, (offset,), (record,), traces)]  # never held in the table
    if entry.first_ts is None:
        entry.first_ts = ts
    entry.offsets.append(offset)
    entry.records.append(record)
    if trace is not None and trace not in entry.traces:
        entry.traces.append(trace)
    entry.size += size
    if len(entry.records) >= buffer_size:
        batches.append(_take(entry, user_id))
    return batches


def cut(entry: Entry, user_id: int, offset: int) -> Batch | None:
    """Flush at a control message at `offset`: the pending records become a batch, the entry empties."""
    if offset < entry.upto:
        return None  # this control was applied before a crash; what follows it is already in the entry
    entry.upto = max(entry.upto, offset)
    return _take(entry, user_id) if entry.records else None


def _take(entry: Entry, user_id: int) -> Batch:
    """The pending records as a batch; the entry keeps only its watermark."""
    batch = Batch(user_id, entry.partition, tuple(entry.offsets), tuple(entry.records), tuple(entry.traces))
    entry.offsets, entry.records, entry.first_ts, entry.size = [], [], None, archive_pending.EMPTY_BYTES
    entry.traces = []
    return batch


def is_stale(raw: dict[str, Any], now: float, max_age_s: float) -> bool:
    first = raw.get("first_ts")
    return bool(raw.get("records")) and first is not None and now - first >= max_age_s


def flush_all_messages(partitions: int) -> list[OutgoingMessage]:
    return [OutgoingMessage(RECORDS.name, key, schema.flush_all()) for key in schema.partition_keys(partitions)]


class Processor:
    """The decisions of one take_events batch, kept apart from Faust so they can be tested without a broker."""

    def __init__(self, table: Any, seen: Any, sink: ArchiveSink, *, buffer_size: int, retention_s: float,
                 set_current: Callable[[Any], None], dead_letters: DeadLetters,
                 writes: Callable[[], AbstractAsyncContextManager[Current]] = lambda: nullcontext(all_current)) -> None:
        self.writes = writes  # the commit gate's write section (app/worker/commit_gate.py)
        self.table = table
        self.seen = seen
        self.retention_s = retention_s
        self.sink = sink
        self.buffer_size = buffer_size
        self.set_current = set_current
        self.dead_letters = dead_letters

    async def handle(self, events: Iterable[Any]) -> list[Batch]:
        entries: dict[str, Entry] = {}
        last_event: dict[str, Any] = {}
        batches: list[Batch] = []
        fingerprints: dict[str, tuple[str, Any]] = {}  # archive-seen key -> (fingerprint, event), written last

        def entry_for(user: str, partition: int) -> Entry:
            if user not in entries:
                entries[user] = Entry.load(self.table.get(user), partition)
            return entries[user]

        for event in events:
            message = event.message
            # RocksDB tables read and write the partition of the stream's current event: make it this one.
            self.set_current(event)
            try:
                item = schema.decode_any(event.value)
                if isinstance(item, schema.WebsiteRecord):
                    record = item.archived()
                    print_ = archive_seen.fingerprint(record)  # serialized here, so it can be archived later
            except Exception as exc:  # pure functions: whatever fails here is the record's own fault
                await self.dead_letters.send(event.message, exc, agent=AGENT)
                continue
            if isinstance(item, schema.Control) and item.action == "flush-all":
                for user in self._users_of(message.partition, entries):
                    last_event[user] = event
                    batch = cut(entry_for(user, message.partition), int(user), message.offset)
                    if batch:
                        batches.append(batch)
                continue
            user = str(item.user_id)
            entry = entry_for(user, message.partition)
            last_event[user] = event
            if isinstance(item, schema.Control):
                batch = cut(entry, int(user), message.offset)
                batches.extend([batch] if batch else [])
                continue
            if message.offset > entry.upto:  # not a replay of what this entry already holds
                seen_key = archive_seen.key(user, item.wuid)
                if self._seen(seen_key, print_, event, fingerprints):
                    PROCESSED.labels(agent=AGENT, outcome="duplicate").inc()
                    continue
                fingerprints[seen_key] = (print_, event)
                PROCESSED.labels(agent=AGENT, outcome="buffered").inc()
            batches.extend(append(entry, item.user_id, message.offset, message.timestamp, record, self.buffer_size,
                                  tracing.of_message(message)))
        if batches:
            # Uploads and their success rows are durable before the table changes and before any ack.
            await self.sink.archive_many(batches)
        # Under the commit gate: the pending records and their fingerprints commit in one transaction, so a
        # crash can never leave a fingerprint whose record was not buffered.
        # Records delivered before a rebalance or seek are read again, so their writes are left out.
        async with self.writes() as current:
            for user, entry in entries.items():
                if user in last_event and current(last_event[user]):
                    self.set_current(last_event[user])
                    self.table[user] = entry.dump()
            for seen_key, (print_, event) in fingerprints.items():
                if current(event):
                    self.set_current(event)
                    self.seen[seen_key] = print_
        return batches

    def _seen(self, key: str, print_: str, event: Any, batch: dict[str, tuple[str, Any]]) -> bool:
        """True when this exact record is already buffered or archived (within the retention)."""
        if key in batch:
            return batch[key][0] == print_
        windows = self.seen[key]
        return print_ in (windows.value(event), windows.delta(self.retention_s, event))

    def _users_of(self, partition: int, working: dict[str, Entry]) -> list[str]:
        users = {u for u, e in working.items() if e.partition == partition}
        users.update(u for u, raw in self.table.items() if raw and raw.get("p") == partition and raw.get("records"))
        return sorted(users)


class BufferTimer:
    """Every second on each worker: ask for a flush of its users whose oldest record is too old, claim due
    cron ticks (one worker wins each tick) and flush every partition, and publish buffer figures."""

    def __init__(self, *, table: Any, state: ArchiveState, producer: Producer, clock: Clock, worker: str,
                 max_age_s: float, partitions: int, actives: Callable[[], set[int]]) -> None:
        self.table, self.state, self.producer, self.clock = table, state, producer, clock
        self.worker, self.max_age_s, self.partitions, self.actives = worker, max_age_s, partitions, actives
        self._asked: dict[str, float] = {}

    async def tick(self) -> None:
        now = self.clock.time()
        actives = self.actives()
        stats: dict[int, list[Any]] = {p: [0, 0, None] for p in actives}
        messages: list[OutgoingMessage] = []
        for user, raw in list(self.table.items()):
            if not raw or raw.get("p") not in actives or not raw.get("records"):
                continue
            figures = stats[raw["p"]]
            figures[0] += 1
            figures[1] += len(raw["records"])
            figures[2] = min(figures[2] or raw["first_ts"], raw["first_ts"])
            if is_stale(raw, now, self.max_age_s) and now - self._asked.get(user, 0.0) >= self.max_age_s:
                self._asked[user] = now
                key, value = schema.flush_user(int(user))
                messages.append(OutgoingMessage(RECORDS.name, key, value))
        if await self.state.claim_tick(self.clock.now()):
            log.info("cron tick: flushing every user")
            messages.extend(flush_all_messages(self.partitions))
        if messages:
            await self.producer.send_many(messages)
        await self.state.write_stats(self.worker, {
            p: (u, r, datetime.fromtimestamp(o, timezone.utc) if o else None) for p, (u, r, o) in stats.items()})


def register(app: Any, *, records: Any, dead_letters: DeadLetters, table: Any, seen: Any, sink: ArchiveSink,
             state: ArchiveState, producer: Producer, clock: Clock, settings: Any, gate: CommitGate) -> Any:
    """The archive agent and its buffer timer (the worker, app/worker/app.py, builds and starts the clients)."""
    async def reject(event: Any, error: BaseException) -> None:
        await dead_letters.send(event.message, error, agent=AGENT)

    # One actor per partition (isolated_partitions): a slow upload holds back only its own partition.
    @app.agent(records, name=AGENT, isolated_partitions=True)
    async def archive(stream: Any) -> None:
        processor = Processor(table, seen, sink, buffer_size=settings.buffer_size,
                              retention_s=settings.dedup_retention_days * 86400.0,
                              set_current=for_tables, dead_letters=dead_letters,
                              writes=gate.writes)
        failed_batches = FailedBatches(app, AGENT)
        async for events in stream.take_events(BATCH_SIZE, within=BATCH_WITHIN_S):
            async with failed_batches.read_again_on_error(events):
                await retry(lambda: check_changelogs(app, (table, seen), (RECORDS.name,)),
                            what="table changelog partitions", retry_if=is_transient)
                # An outage is retried, the partition waiting; a batch that fails otherwise is handled in
                # halves down to the records at fault, dead-lettered. Handling is incremental and idempotent
                # (watermarks, success rows), so halves redo nothing.
                await write_isolating(events, processor.handle, reject, what="archive batch handling")
                observe_batch(AGENT, events)

    def actives() -> set[int]:
        return {tp.partition for tp in app.assignor.assigned_actives() if tp.topic == RECORDS.name}

    timer = BufferTimer(table=table, state=state, producer=producer, clock=clock, worker=settings.worker_id,
                        max_age_s=settings.archive_max_age_s, partitions=RECORDS.partitions, actives=actives)

    @app.timer(TIMER_INTERVAL_S, name="archive-buffer-timer")
    async def buffer_timer() -> None:
        try:
            await timer.tick()
        except Exception as exc:  # PostgreSQL or Kafka down: the next tick tries again
            log.warning("archive timer: %s: %s", type(exc).__name__, exc)

    return archive
