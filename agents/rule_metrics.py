"""Stream job: count each event into its rule's daily window and write the day's totals to PostgreSQL.

The totals written are absolute values read back from the table, so writing them again after a crash or
a replay is harmless: with exactly-once processing the table itself never counts an event twice.
"""
from __future__ import annotations

from typing import Any, Protocol

from ingestflow.app.clock import utc_from_ms
from ingestflow.app.errors import ValidationError
from ingestflow.app.retry import retry
from ingestflow.schemas.events import decode
from ingestflow.tables import rule_daily

from .dead_letter import dead_letter

__all__ = ["register", "BATCH_SIZE"]

BATCH_SIZE = 1000
BATCH_WITHIN_S = 0.5


class DailyRuleStore(Protocol):
    async def upsert_rule_days(self, rows: list[tuple[str, Any, dict[str, int]]]) -> None: ...


def register(app: Any, *, events: Any, dead_letters: Any, table: Any, store: DailyRuleStore) -> Any:
    @app.agent(events, name="rule-metrics")
    async def rule_metrics(stream: Any) -> None:
        async for batch in stream.take_events(BATCH_SIZE, within=BATCH_WITHIN_S):
            touched: dict[tuple[str, float], Any] = {}
            for event in batch:
                # Table writes find their changelog partition through the stream's current event.
                stream._set_current_event(event)
                try:
                    ev = decode(event.value, utc_from_ms(int(event.message.timestamp * 1000)))
                except ValidationError as exc:
                    await dead_letter(dead_letters, event, exc)
                    continue
                table[ev.rule_id].apply(rule_daily.add, ev.type, event)
                touched[(ev.rule_id, rule_daily.window_start(event.message.timestamp))] = event
            if touched:
                rows = [(rule_id, rule_daily.day_of_window(start), table[rule_id].value(event))
                        for (rule_id, start), event in touched.items()]
                # PostgreSQL down: keep retrying; this partition waits, and nothing is acknowledged meanwhile.
                await retry(lambda: store.upsert_rule_days(rows), what="write rule_metric_daily")

    return rule_metrics
