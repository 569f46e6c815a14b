"""Stream job on `crawl-items`: batches upserted into crawl_items (unchanged items are not rewritten,
app/crawl_store.py), each batch audited with its offsets, bad records dead-lettered."""
from __future__ import annotations

import logging
from typing import Any, Protocol

from ingestflow.app.clock import utc_from_ms
from ingestflow.app.crawl_store import UpsertReport
from ingestflow.app.errors import ValidationError
from ingestflow.app.observability import PROCESSED
from ingestflow.app.retry import retry
from ingestflow.schemas.crawl import CrawlItem, decode

from .dead_letter import dead_letter

__all__ = ["register", "batch_ref"]

log = logging.getLogger(__name__)
AGENT = "crawl"


class Store(Protocol):
    async def upsert(self, items: list[CrawlItem], *, batch_ref: str) -> UpsertReport: ...


def batch_ref(events: list[Any]) -> str:
    """`topic:partition:first-last` per partition in the batch: what the audit row covers."""
    spans: dict[tuple[str, int], list[int]] = {}
    for e in events:
        m = e.message
        span = spans.setdefault((m.topic, m.partition), [m.offset, m.offset])
        span[0], span[1] = min(span[0], m.offset), max(span[1], m.offset)
    return ",".join(f"{t}:{p}:{a}-{b}" for (t, p), (a, b) in sorted(spans.items()))


def register(app: Any, *, items: Any, dead_letters: Any, store: Store) -> Any:
    @app.agent(items, name=AGENT)
    async def crawl(stream: Any) -> None:
        async for events in stream.take_events(500, within=1.0):
            good: list[CrawlItem] = []
            for event in events:
                stream._set_current_event(event)
                try:
                    good.append(decode(event.value, utc_from_ms(int(event.message.timestamp * 1000))))
                except ValidationError as exc:
                    await dead_letter(dead_letters, event, exc)
                    PROCESSED.labels(agent=AGENT, outcome="dead-lettered").inc()
                except Exception as exc:  # never raise out of the loop: Faust would ack the batch
                    log.exception("crawl item failed; dead-lettering it")
                    await dead_letter(dead_letters, event, exc)
                    PROCESSED.labels(agent=AGENT, outcome="dead-lettered").inc()
            if good:
                ref = batch_ref(events)
                report = await retry(lambda: store.upsert(good, batch_ref=ref), what="upsert crawl items")
                PROCESSED.labels(agent=AGENT, outcome="upserted").inc(report.inserted + report.updated)
                PROCESSED.labels(agent=AGENT, outcome="unchanged").inc(report.unchanged)

    return crawl
