"""Daily metrics in PostgreSQL: the agents write absolute daily totals, the read endpoints query them."""
from __future__ import annotations

from datetime import date
from typing import Any

from .db import Database

__all__ = ["MetricsStore", "COLUMNS"]

# Event type -> column in rule_metric_daily / author_metric_daily.
COLUMNS = {"VIEW": "views", "COPY": "copies", "SAVE": "saves", "FORK": "forks", "VOTE": "votes"}

_UPSERT_RULE = """
INSERT INTO rule_metric_daily (rule_id, day, views, copies, saves, forks, votes, updated_at)
VALUES ($1, $2, $3, $4, $5, $6, $7, NOW())
ON CONFLICT (rule_id, day) DO UPDATE SET views = EXCLUDED.views, copies = EXCLUDED.copies,
  saves = EXCLUDED.saves, forks = EXCLUDED.forks, votes = EXCLUDED.votes, updated_at = NOW()
"""


class MetricsStore:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def upsert_rule_days(self, rows: list[tuple[str, date, dict[str, int]]]) -> None:
        await self._db.executemany(
            _UPSERT_RULE,
            [(rule_id, day, *(counts.get(kind, 0) for kind in COLUMNS)) for rule_id, day, counts in rows])

    async def rule_days(self, rule_id: str, start: date, end: date) -> list[dict[str, Any]]:
        rows = await self._db.fetch(
            "SELECT day, views, copies, saves, forks, votes, score FROM rule_metric_daily"
            " WHERE rule_id = $1 AND day BETWEEN $2 AND $3 ORDER BY day", rule_id, start, end)
        return [{**dict(r), "day": r["day"].isoformat()} for r in rows]
