"""Stream job on `crawl-items`: batches upserted into crawl_items (unchanged items are not rewritten,
app/stores/crawl_store.py), each batch audited with its offsets. A record that cannot be decoded, or that
PostgreSQL refuses for its content, is dead-lettered and the rest of its batch written (agents/isolate.py).
Each row keeps the trace id of the record that wrote it, and each batch written is logged with its trace ids."""
from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any, Protocol

from ingestflow.app.core import tracing
from ingestflow.app.core.clock import utc_from_ms
from ingestflow.app.core.observability import PROCESSED, observe_batch
from ingestflow.app.stores.crawl_store import UpsertReport
from ingestflow.app.worker.failed_batches import FailedBatches
from ingestflow.schemas.crawl import CrawlItem, decode

from .dead_letter import DeadLetters
from .isolate import write_isolating

__all__ = ["register", "batch_ref"]

log = logging.getLogger(__name__)
AGENT = "crawl"


class Store(Protocol):
    async def upsert(self, items: list[CrawlItem], *, batch_ref: str,
                     trace_ids: Sequence[str | None] = ()) -> UpsertReport: ...


def batch_ref(events: list[Any]) -> str:
    """`topic:partition:first-last` per partition in the batch: what the audit row covers."""
    spans: dict[tuple[str, int], list[int]] = {}
    for e in events:
        m = e.message
        span = spans.setdefault((m.topic, m.partition), [m.offset, m.offset])
        span[0], span[1] = min(span[0], m.offset), max(span[1], m.offset)
    return ",".join(f"{t}:{p}:{a}-{b}" for (t, p), (a, b) in sorted(spans.items()))


def register(app: Any, *, items: Any, dead_letters: DeadLetters, store: Store) -> Any:
    async def upsert(pairs: Sequence[tuple[Any, CrawlItem]]) -> None:
        events = [e for e, _ in pairs]
        ref = batch_ref(events)
        traces = [tracing.of_message(e.message) for e in events]
        report = await store.upsert([item for _, item in pairs], batch_ref=ref, trace_ids=traces)
        PROCESSED.labels(agent=AGENT, outcome="upserted").inc(report.inserted + report.updated)
        PROCESSED.labels(agent=AGENT, outcome="unchanged").inc(report.unchanged)
        log.info("crawl items written from %s: %d new, %d changed, %d unchanged", ref, report.inserted,
                 report.updated, report.unchanged, extra={"trace_ids": tracing.distinct(traces)})

    async def reject(pair: tuple[Any, CrawlItem], error: BaseException) -> None:
        await dead_letters.send(pair[0].message, error, agent=AGENT)

    failed_batches = FailedBatches(app, AGENT)

    @app.agent(items, name=AGENT)
    async def crawl(stream: Any) -> None:
        async for events in stream.take_events(500, within=1.0):
            async with failed_batches.read_again_on_error(events):
                good: list[tuple[Any, CrawlItem]] = []
                for event in events:
                    try:
                        good.append((event, decode(event.value, utc_from_ms(int(event.message.timestamp * 1000)))))
                    except Exception as exc:  # decoding is pure: whatever fails here is the record's own fault
                        await dead_letters.send(event.message, exc, agent=AGENT)
                # An item PostgreSQL refuses for its content is found and dead-lettered; the rest is written.
                await write_isolating(good, upsert, reject, what="upsert crawl items")
                observe_batch(AGENT, events)

    return crawl
