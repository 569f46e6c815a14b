"""Stream job on `events` + the `rules` catalog: dedup, anti-gaming cap, daily rule counts, the rule ->
author join, trending scores; then the day totals to PostgreSQL.

Both topics are keyed by ruleId with the same partition count, so one agent reads both (Faust assigns the
same partition numbers of co-partitioned topics to one worker) and every table is local: no repartitioning.
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
from ingestflow.app.worker.commit_gate import CommitGate
from ingestflow.app.worker.failed_batches import FailedBatches
from ingestflow.app.worker.partitions import check_changelogs
from ingestflow.app.worker.table_event import for_tables
from ingestflow.schemas import rules as rules_schema
from ingestflow.schemas.events import decode, too_old
from ingestflow.tables import dedup_keys, rule_catalog, rule_daily, view_guard

from . import author_metrics, dedup, trending
from .dead_letter import DeadLetters
from .isolate import write_isolating

__all__ = ["register", "Tables", "Options", "BATCH_SIZE"]

log = logging.getLogger(__name__)
BATCH_SIZE = 1000
BATCH_WITHIN_S = 0.5
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
        return tuple(getattr(self, f.name) for f in fields(self))


@dataclass(frozen=True)
class Options:
    rules_topic: str
    dedup_retention_s: float
    half_life_s: float
    weights: dict[str, float]


@dataclass
class Batch:
    """What one batch changed, flushed to the stores once per batch."""

    touched: dict[tuple[str, float], Any] = field(default_factory=dict)
    trending: dict[str, float] = field(default_factory=dict)
    catalog_events: dict[str, Any] = field(default_factory=dict)
    catalog: dict[str, Any] = field(default_factory=dict)  # rule -> catalog entry, read once per batch
    # Per-batch aggregation: each table key is written once per batch, not once per event, because every
    # table write is one changelog record in the Kafka transaction (the dominant cost under exactly-once).
    added: dict[tuple[str, float], dict[str, int]] = field(default_factory=dict)
    trending_events: dict[str, Any] = field(default_factory=dict)
    events: dict[str, list[Any]] = field(default_factory=dict)  # rule -> its events: dead-lettered together


def register(app: Any, *, channel: Any, dead_letters: DeadLetters, tables: Tables, options: Options,
             store: MetricsSink, gate: CommitGate, trending_sink: TrendingSink | None = None) -> Any:
    def on_event(event: Any, batch: Batch) -> str:
        ts = event.message.timestamp
        ev = decode(event.value, utc_from_ms(int(ts * 1000)))
        if too_old(ts, time.time()):  # its day's window is gone: counting it would restart that day from zero
            return "late"
        batch.events.setdefault(ev.rule_id, []).append(event)
        day_key = (ev.rule_id, rule_daily.window_start(ts))
        # Dropped events refresh their day too: a replay after a crash finds its events already in the
        # committed tables (a Faust transaction can commit a batch's table writes while the batch's
        # PostgreSQL flush is still running), and rewriting the day's absolute totals is what repairs it.
        batch.touched[day_key] = event
        # Every event carries an id (its idempotencyKey when the producer gave one): dedup on it, so a
        # client's retry, a gateway spool replay and an operator's `ingestflow replay` never count twice.
        windows = tables.dedup_keys[dedup_keys.key(ev.rule_id, ev.id)]
        seen = (windows.value(event), windows.delta(options.dedup_retention_s, event))
        if dedup.key_seen(seen, ts, options.dedup_retention_s):
            return "duplicate"
        tables.dedup_keys[dedup_keys.key(ev.rule_id, ev.id)] = ts
        if ev.type == "VIEW" and ev.ip:
            guard_key = view_guard.key(ev.rule_id, ev.ip)
            windows = tables.view_guard[guard_key]
            today = dedup.ViewState.from_json(windows.value(event))
            lookback = dedup.ViewState.from_json(windows.delta(dedup.VIEW_REPEAT_S, event))
            reason = dedup.view_drop_reason(today, lookback, ts)
            if reason:
                return f"view-{reason}"
            tables.view_guard[guard_key] = dedup.counted_view(today, ts).to_json()
        added = batch.added.setdefault(day_key, {})
        added[ev.type] = added.get(ev.type, 0) + 1
        if ev.author_id:  # only an event's own authorId can change the catalog; read it once per batch
            current = batch.catalog[ev.rule_id] if ev.rule_id in batch.catalog else tables.catalog.get(ev.rule_id)
            entry = rule_catalog.resolve(current, ev.author_id)
            if entry is not None:
                tables.catalog[ev.rule_id] = current = entry
            batch.catalog[ev.rule_id] = current
        previous = batch.trending[ev.rule_id] if ev.rule_id in batch.trending else tables.trending.get(ev.rule_id)
        score = trending.add_event(previous, ts, options.weights.get(ev.type, 0.0),
                                   options.half_life_s)
        if score is not None:
            batch.trending[ev.rule_id] = score
            batch.trending_events[ev.rule_id] = event
        return "counted"

    def on_catalog(event: Any, batch: Batch) -> str:
        rule_id = (event.message.key or b"").decode("utf-8", "replace")
        if event.value is None:  # tombstone: the rule is gone, so are its author totals
            batch.events.setdefault(rule_id, []).append(event)
            batch.catalog.pop(rule_id, None)
            if tables.catalog.get(rule_id) is not None:
                del tables.catalog[rule_id]
            batch.catalog_events[rule_id] = event
            return "catalog-deleted"
        info = rules_schema.decode(event.value)
        batch.events.setdefault(info.rule_id, []).append(event)
        entry = {"authorId": info.author_id, "source": "catalog", "title": info.title}
        batch.catalog.pop(info.rule_id, None)
        if tables.catalog.get(info.rule_id) != entry:
            tables.catalog[info.rule_id] = entry
        batch.catalog_events[info.rule_id] = event  # re-asserted in PostgreSQL even when unchanged (replays)
        return "catalog"

    def write_aggregates(batch: Batch) -> None:
        """Apply the batch's counts and final trending values, each under an event of its own partition."""
        for day_key, counts in batch.added.items():
            rule_id, event = day_key[0], batch.touched[day_key]
            for_tables(event)
            tables.daily[rule_id].apply(rule_daily.add_counts, counts, event)
        for rule_id, score in batch.trending.items():
            for_tables(batch.trending_events[rule_id])
            tables.trending[rule_id] = score

    def read_back(batch: Batch) -> tuple[list[tuple[str, date, dict[str, int]]], dict[str, Any]]:
        """The absolute day totals and current authors of what the batch touched.

        Each read runs with its own event as the current one: the RocksDB store reads the partition of the
        current event, so reading rule A under rule B's event would find nothing.
        """
        rows: list[tuple[str, date, dict[str, int]]] = []
        entries: dict[str, dict[str, Any] | None] = {}
        for (rule_id, start), event in batch.touched.items():
            for_tables(event)
            rows.append((rule_id, rule_daily.day_of_window(start), tables.daily[rule_id].value(event)))
            entries[rule_id] = tables.catalog.get(rule_id)
        for rule_id, event in batch.catalog_events.items():
            for_tables(event)
            entries[rule_id] = tables.catalog.get(rule_id) or {"deleted": True}
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
                 extra={"trace_ids": tracing.of_events(e for rule in rules for e in batch.events.get(rule, ()))})

    async def reject_rule(batch: Batch, rule: str, error: BaseException) -> None:
        """The rule's events of this batch are dead-lettered; its rows stay out of PostgreSQL."""
        for event in batch.events.get(rule, ()):
            await dead_letters.send(event, error, agent=AGENT)

    failed_batches = FailedBatches(app, AGENT)

    @app.agent(channel, name=AGENT)
    async def rule_metrics(stream: Any) -> None:
        async for events in stream.take_events(BATCH_SIZE, within=BATCH_WITHIN_S):
            async with failed_batches.read_again_on_error(events):
                await retry(lambda: check_changelogs(app, tables.every(), {e.message.topic for e in events}),
                            what="table changelog partitions", retry_if=is_transient)
                batch = Batch()
                failed: list[tuple[Any, Exception]] = []
                outcomes: Counter[str] = Counter()
                # The batch's table writes under the commit gate: a commit must never hold a record's dedup
                # key without its counts (app/worker/commit_gate.py).
                async with gate.writes() as current:
                    # Events delivered before a rebalance or seek are read again: this worker's writes for
                    # them would land in a transaction no longer its own.
                    events = [event for event in events if current(event)]
                    rows, entries = write_batch(events, batch, failed, outcomes)
                # Once per batch: a labelled metric lookup per event is not free.
                for outcome, n in outcomes.items():
                    PROCESSED.labels(agent=AGENT, outcome=outcome).inc(n)
                for event, error in failed:
                    await dead_letters.send(event, error, agent=AGENT)
                # PostgreSQL down: retried, this partition waits and nothing is acknowledged meanwhile. A rule
                # whose rows PostgreSQL refuses for their content is found, its events dead-lettered, the
                # others written.
                await write_isolating(sorted({r for r, _, _ in rows} | set(entries) | set(batch.trending)),
                                      functools.partial(write_rules, batch, rows, entries),
                                      functools.partial(reject_rule, batch), what="write daily metrics")
                observe_batch(AGENT, events)

    def write_batch(events: list[Any], batch: Batch, failed: list[tuple[Any, Exception]],
                    outcomes: Counter[str]) -> tuple[list[tuple[str, date, dict[str, int]]], dict[str, Any]]:
        """Every table write of one batch (no await in here); returns the day totals and authors to flush."""
        for event in events:
            # Table writes find their changelog partition through the task's current event.
            for_tables(event)
            try:
                handler = on_catalog if event.message.topic == options.rules_topic else on_event
                outcomes[handler(event, batch)] += 1
            except Exception as exc:  # tables are local (no I/O): a failure here is the record's own fault
                failed.append((event, exc))
        if not (batch.touched or batch.catalog_events or batch.trending):
            return [], {}
        write_aggregates(batch)
        return read_back(batch)

    return rule_metrics
