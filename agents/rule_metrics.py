"""Stream job on `events` + the `rules` catalog: dedup, anti-gaming cap, daily rule counts, the rule ->
author join, trending scores; then the day totals to PostgreSQL.

Both topics are keyed by ruleId with the same partition count, so one agent reads both (Faust assigns the
same partition numbers of co-partitioned topics to one worker) and every table is local: no repartitioning.
The agent takes both topics in chunks (app/worker/chunks.py: a partition's records of one fetch as one
event) and reads and writes its tables by partition (StateTable.get_at / set_at), in the keys and values
Faust's own table operations use: Faust's per-record delivery and table wrappers cost more than the
decisions themselves.
The totals written are absolute values read back from the tables, so writing them again after a crash or
a replay is harmless: with exactly-once processing the tables themselves never count an event twice.
Events are aggregated, so what follows one event here is the log line of the write of its rule's days: it
names the trace ids of the events of the rules written.
"""
from __future__ import annotations

import functools
import logging
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field, fields
from datetime import date
from typing import Any, Protocol

from ingestflow.app.core import tracing
from ingestflow.app.core.clock import utc_from_ms
from ingestflow.app.core.errors import is_transient
from ingestflow.app.core.observability import PROCESSED, observe_batch
from ingestflow.app.core.retry import retry
from ingestflow.app.worker.chunks import chunk_of, message_of
from ingestflow.app.worker.commit_gate import CommitGate
from ingestflow.app.worker.failed_batches import FailedBatches
from ingestflow.app.worker.partitions import check_changelogs
from ingestflow.schemas import rules as rules_schema
from ingestflow.schemas.events import decode, too_old
from ingestflow.tables import dedup_keys, rule_catalog, rule_daily, view_guard

from . import author_metrics, dedup, trending
from .dead_letter import DeadLetters
from .isolate import write_isolating

__all__ = ["register", "Tables", "Options", "BATCH_CHUNKS"]

log = logging.getLogger(__name__)
BATCH_CHUNKS = 10  # a chunk: up to 1,000 records of one partition from one fetch (app/worker/chunks.py)
# A batch goes when it holds BATCH_CHUNKS chunks, or this long after the last one: under a backlog batches
# fill long before; in light traffic an event waits at most this long to be counted.
BATCH_WITHIN_S = 0.1
AGENT = "rule-metrics"


class MetricsSink(Protocol):
    async def upsert_rule_days(self, rows: list[tuple[str, Any, dict[str, int]]]) -> None: ...

    async def set_rule_authors(self, rows: list[tuple[str, str | None, str, str | None]]) -> dict[str, str]: ...

    async def rule_day_list(self, rule_ids: Any) -> list[tuple[str, date]]: ...

    async def recompute_author_days(self, pairs: Any, rule_days: Any = ()) -> None: ...


class TrendingSink(Protocol):
    async def set_rule_trending(self, rows: dict[str, float]) -> None: ...


@dataclass(frozen=True)
class Tables:
    daily: Any
    dedup_keys: Any
    view_guard: Any
    catalog: Any
    trending: Any

    def every(self) -> tuple[Any, ...]:
        """The tables themselves (a windowed table's definition is a wrapper around one)."""
        return tuple(getattr(getattr(self, f.name), "table", getattr(self, f.name)) for f in fields(self))


@dataclass(frozen=True)
class Options:
    rules_topic: str
    dedup_retention_s: float
    half_life_s: float
    weights: dict[str, float]


@dataclass
class Batch:
    """What one batch changed, flushed to the stores once per batch."""

    # (rule, day window start) -> the partition of its records: read back and written to PostgreSQL
    touched: dict[tuple[str, float], int] = field(default_factory=dict)
    trending: dict[str, float] = field(default_factory=dict)
    trending_at: dict[str, int] = field(default_factory=dict)  # rule -> partition
    catalog_events: dict[str, int] = field(default_factory=dict)  # rule -> partition
    catalog: dict[str, Any] = field(default_factory=dict)  # rule -> catalog entry, read once per batch
    # Per-batch aggregation: each table key is written once per batch, not once per event, because every
    # table write is one changelog record in the Kafka transaction.
    added: dict[tuple[str, float], dict[str, int]] = field(default_factory=dict)
    records: dict[str, list[Any]] = field(default_factory=dict)  # rule -> its records: dead-lettered together


def register(app: Any, *, channel: Any, dead_letters: DeadLetters, tables: Tables, options: Options,
             store: MetricsSink, gate: CommitGate, trending_sink: TrendingSink | None = None) -> Any:
    daily, seen, guard, catalog, trend = tables.every()

    def on_event(record: Any, partition: int, batch: Batch) -> str:
        ts = record.timestamp / 1000.0
        ev = decode(record.value, utc_from_ms(record.timestamp))
        if too_old(ts, time.time()):  # its day's window is gone: counting it would restart that day from zero
            return "late"
        batch.records.setdefault(ev.rule_id, []).append(record)
        day_key = (ev.rule_id, rule_daily.window_start(ts))
        # Dropped events refresh their day too: a replay after a crash finds its events already in the
        # committed tables (a Faust transaction can commit a batch's table writes while the batch's
        # PostgreSQL flush is still running), and rewriting the day's absolute totals is what repairs it.
        batch.touched[day_key] = partition
        # Every event carries an id (its idempotencyKey when the producer gave one): dedup on it, so a
        # client's retry, a gateway spool replay and an operator's `ingestflow replay` never count twice.
        key = dedup_keys.key(ev.rule_id, ev.id)
        retention = options.dedup_retention_s
        if dedup.key_seen((seen.get_at(partition, key, ts), seen.get_at(partition, key, ts - retention)), ts,
                          retention):
            return "duplicate"
        seen.set_at(partition, key, ts, ts)
        if ev.type == "VIEW" and ev.ip:
            guard_key = view_guard.key(ev.rule_id, ev.ip)
            today = dedup.ViewState.from_json(guard.get_at(partition, guard_key, ts))
            before = ts - dedup.VIEW_REPEAT_S  # in today's window but in the first ten minutes of a day
            lookback = today if guard.window.current(before) == guard.window.current(ts) \
                else dedup.ViewState.from_json(guard.get_at(partition, guard_key, before))
            reason = dedup.view_drop_reason(today, lookback, ts)
            if reason:
                return f"view-{reason}"
            guard.set_at(partition, guard_key, dedup.counted_view(today, ts).to_json(), ts)
        added = batch.added.setdefault(day_key, {})
        added[ev.type] = added.get(ev.type, 0) + 1
        if ev.author_id:  # only an event's own authorId can change the catalog; read it once per batch
            current = batch.catalog[ev.rule_id] if ev.rule_id in batch.catalog else catalog.get_at(partition, ev.rule_id)
            entry = rule_catalog.resolve(current, ev.author_id)
            if entry is not None:
                catalog.set_at(partition, ev.rule_id, entry)
                current = entry
            batch.catalog[ev.rule_id] = current
        previous = batch.trending[ev.rule_id] if ev.rule_id in batch.trending else trend.get_at(partition, ev.rule_id)
        score = trending.add_event(previous, ts, options.weights.get(ev.type, 0.0), options.half_life_s)
        if score is not None:
            batch.trending[ev.rule_id] = score
            batch.trending_at[ev.rule_id] = partition
        return "counted"

    def on_catalog(record: Any, partition: int, batch: Batch) -> str:
        rule_id = (record.key or b"").decode("utf-8", "replace")
        if record.value is None:  # tombstone: the rule is gone, so are its author totals
            batch.records.setdefault(rule_id, []).append(record)
            batch.catalog.pop(rule_id, None)
            if catalog.get_at(partition, rule_id) is not None:
                catalog.del_at(partition, rule_id)
            batch.catalog_events[rule_id] = partition
            return "catalog-deleted"
        info = rules_schema.decode(record.value)
        batch.records.setdefault(info.rule_id, []).append(record)
        entry = {"authorId": info.author_id, "source": "catalog", "title": info.title}
        batch.catalog.pop(info.rule_id, None)
        if catalog.get_at(partition, info.rule_id) != entry:
            catalog.set_at(partition, info.rule_id, entry)
        batch.catalog_events[info.rule_id] = partition  # re-asserted in PostgreSQL even when unchanged (replays)
        return "catalog"

    def write_aggregates(batch: Batch) -> None:
        """Apply the batch's counts and final trending values, each on its rule's partition."""
        for (rule_id, start), counts in batch.added.items():
            partition = batch.touched[(rule_id, start)]
            daily.set_at(partition, rule_id, rule_daily.add_counts(daily.get_at(partition, rule_id, start) or {},
                                                                    counts), start)
        for rule_id, score in batch.trending.items():
            trend.set_at(batch.trending_at[rule_id], rule_id, score)

    def read_back(batch: Batch) -> tuple[list[tuple[str, date, dict[str, int]]], dict[str, Any]]:
        """The absolute day totals and current authors of what the batch touched."""
        rows: list[tuple[str, date, dict[str, int]]] = []
        entries: dict[str, dict[str, Any] | None] = {}
        for (rule_id, start), partition in batch.touched.items():
            rows.append((rule_id, rule_daily.day_of_window(start), daily.get_at(partition, rule_id, start) or {}))
            entries[rule_id] = catalog.get_at(partition, rule_id)
        for rule_id, partition in batch.catalog_events.items():
            entries[rule_id] = catalog.get_at(partition, rule_id) or {"deleted": True}
        return rows, entries

    async def flush(rows: list[tuple[str, date, dict[str, int]]], entries: dict[str, Any],
                    trending_rows: dict[str, float]) -> None:
        if rows:
            await store.upsert_rule_days(rows)
        # The mapping of every rule the batch saw is (re)asserted: idempotent, and a replay repairs it.
        assert_rows = [(rule, None if e.get("deleted") else e["authorId"], e.get("source", "catalog"), e.get("title"))
                       for rule, e in entries.items() if e]
        old_authors = await store.set_rule_authors(assert_rows) if assert_rows else {}
        current = {rule: (None if not e or e.get("deleted") else e["authorId"]) for rule, e in entries.items()}
        changed = [rule for rule, author, _, _ in assert_rows if old_authors.get(rule) != author]
        moved = await store.rule_day_list(changed) if changed else []
        touched = [(rule, day) for rule, day, _ in rows]
        pairs = author_metrics.author_days_to_recompute(touched, current, moved, old_authors)
        await store.recompute_author_days(pairs, rule_days=touched)
        if trending_rows and trending_sink is not None:
            await trending_sink.set_rule_trending(trending_rows)

    async def write_rules(batch: Batch, rows: list[tuple[str, date, dict[str, int]]], entries: dict[str, Any],
                          rules: Sequence[str]) -> None:
        """The batch's PostgreSQL writes restricted to some rules (each rule's rows stand alone)."""
        keep = set(rules)
        days = [r for r in rows if r[0] in keep]
        await flush(days, {k: v for k, v in entries.items() if k in keep},
                    {k: v for k, v in batch.trending.items() if k in keep})
        log.info("rule metrics written: %d rule-day(s) of %d rule(s)", len(days), len(keep),
                 extra={"trace_ids": tracing.of_messages(r for rule in rules for r in batch.records.get(rule, ()))})

    async def reject_rule(batch: Batch, rule: str, error: BaseException) -> None:
        """The rule's records of this batch are dead-lettered; its rows stay out of PostgreSQL."""
        for record in batch.records.get(rule, ()):
            await dead_letters.send(message_of(record), error, agent=AGENT)

    failed_batches = FailedBatches(app, AGENT)

    @app.agent(channel, name=AGENT)
    async def rule_metrics(stream: Any) -> None:
        async for events in stream.take_events(BATCH_CHUNKS, within=BATCH_WITHIN_S):
            async with failed_batches.read_again_on_error(events):
                await retry(lambda: check_changelogs(app, tables.every(), {e.message.topic for e in events}),
                            what="table changelog partitions", retry_if=is_transient)
                batch = Batch()
                failed: list[tuple[Any, Exception]] = []
                outcomes: Counter[str] = Counter()
                # The batch's table writes under the commit gate: a commit must never hold a record's dedup
                # key without its counts (app/worker/commit_gate.py).
                async with gate.writes() as current:
                    # Chunks delivered before a rebalance or seek are read again: this worker's writes for
                    # them would land in a transaction no longer its own.
                    rows, entries = write_batch([e for e in events if current(e)], batch, failed, outcomes)
                # Once per batch: a labelled metric lookup per event is not free.
                for outcome, n in outcomes.items():
                    PROCESSED.labels(agent=AGENT, outcome=outcome).inc(n)
                for record, error in failed:
                    await dead_letters.send(message_of(record), error, agent=AGENT)
                # PostgreSQL down: retried, this partition waits and nothing is acknowledged meanwhile. A rule
                # whose rows PostgreSQL refuses for their content is found, its records dead-lettered, the
                # others written.
                await write_isolating(sorted({r for r, _, _ in rows} | set(entries) | set(batch.trending)),
                                      functools.partial(write_rules, batch, rows, entries),
                                      functools.partial(reject_rule, batch), what="write daily metrics")
                observe_batch(AGENT, events)

    def write_batch(events: list[Any], batch: Batch, failed: list[tuple[Any, Exception]],
                    outcomes: Counter[str]) -> tuple[list[tuple[str, date, dict[str, int]]], dict[str, Any]]:
        """Every table write of one batch (no await in here); returns the day totals and authors to flush."""
        for event in events:
            chunk = chunk_of(event)
            partition = chunk.partition
            handler = on_catalog if chunk.topic == options.rules_topic else on_event
            for record in chunk.records:
                try:
                    outcomes[handler(record, partition, batch)] += 1
                except Exception as exc:  # tables are local (no I/O): a failure here is the record's own fault
                    failed.append((record, exc))
        if not (batch.touched or batch.catalog_events or batch.trending):
            return [], {}
        write_aggregates(batch)
        return read_back(batch)

    return rule_metrics
