"""Daily metrics in PostgreSQL: the agents write absolute daily totals, the read endpoints query them.

Every write is an absolute value recomputed from data that is itself absolute, so a replayed or repeated
write converges on the same rows (the idempotence that makes crashes and redeliveries harmless).

A rule's day totals only ever grow, and every worker's values are a prefix of the same partition's counts,
so a write that would lower any count is stale: a worker whose partition was revoked while its batch was
being written (its Kafka transaction fenced, its PostgreSQL write not) landing after the new owner's. Such
writes are skipped; the newest counts always dominate the ones they replace.
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import date
from typing import Any

from ingestflow.app.clients.db import Database
from ingestflow.schemas.events import EVENT_TYPES

__all__ = ["MetricsStore", "COLUMNS", "day_score"]

# Event type (schemas/events.py) -> its count's column in rule_metric_daily / author_metric_daily.
COLUMNS = dict(zip(EVENT_TYPES, ("views", "copies", "saves", "forks", "votes"), strict=True))


def day_score(counts: Mapping[str, int], weights: Mapping[str, float]) -> float:
    """A day's leaderboard score: the weighted sum of its counted events."""
    return float(sum(counts.get(kind, 0) * weights.get(kind, 0.0) for kind in COLUMNS))


_UPSERT_RULE = """
INSERT INTO rule_metric_daily (rule_id, day, views, copies, saves, forks, votes, score, updated_at)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, NOW())
ON CONFLICT (rule_id, day) DO UPDATE SET views = EXCLUDED.views, copies = EXCLUDED.copies,
  saves = EXCLUDED.saves, forks = EXCLUDED.forks, votes = EXCLUDED.votes, score = EXCLUDED.score,
  updated_at = NOW()
WHERE EXCLUDED.views >= rule_metric_daily.views AND EXCLUDED.copies >= rule_metric_daily.copies
  AND EXCLUDED.saves >= rule_metric_daily.saves AND EXCLUDED.forks >= rule_metric_daily.forks
  AND EXCLUDED.votes >= rule_metric_daily.votes
"""

# Serialises recomputations of one author-day across workers: the last recomputation then always starts
# after every rule row committed before it, so concurrent workers cannot leave a stale sum behind.
_LOCK_AUTHOR_DAYS = """
SELECT pg_advisory_xact_lock(k) FROM (
  SELECT DISTINCT hashtext(a || '|' || d::text) AS k FROM unnest($1::text[], $2::date[]) AS p(a, d) ORDER BY k
) AS locks
"""

_RECOMPUTE_AUTHOR_DAYS = """
INSERT INTO author_metric_daily (author_id, day, views, copies, saves, forks, votes, score, updated_at)
SELECT p.a, p.d, COALESCE(SUM(m.views), 0), COALESCE(SUM(m.copies), 0), COALESCE(SUM(m.saves), 0),
       COALESCE(SUM(m.forks), 0), COALESCE(SUM(m.votes), 0), COALESCE(SUM(m.score), 0), NOW()
FROM unnest($1::text[], $2::date[]) AS p(a, d)
LEFT JOIN rule_authors ra ON ra.author_id = p.a
LEFT JOIN rule_metric_daily m ON m.rule_id = ra.rule_id AND m.day = p.d
GROUP BY p.a, p.d
ON CONFLICT (author_id, day) DO UPDATE SET views = EXCLUDED.views, copies = EXCLUDED.copies,
  saves = EXCLUDED.saves, forks = EXCLUDED.forks, votes = EXCLUDED.votes, score = EXCLUDED.score,
  updated_at = NOW()
"""

_DAY_COLUMNS = "day, views, copies, saves, forks, votes, score"


class MetricsStore:
    def __init__(self, db: Database, weights: Mapping[str, float]) -> None:
        self._db = db
        self._weights = dict(weights)  # EVENT_WEIGHTS

    async def upsert_rule_days(self, rows: list[tuple[str, date, dict[str, int]]]) -> None:
        await self._db.executemany(
            _UPSERT_RULE,
            [(rule_id, day, *(counts.get(kind, 0) for kind in COLUMNS), day_score(counts, self._weights))
             for rule_id, day, counts in rows])

    async def set_rule_authors(self, rows: list[tuple[str, str | None, str, str | None]]) -> dict[str, str]:
        """(ruleId, authorId or None to forget, source, title) -> the authors the rules had before."""
        rule_ids = [r[0] for r in rows]
        async with self._db.transaction() as conn:
            old = {r["rule_id"]: r["author_id"] for r in await conn.fetch(
                "SELECT rule_id, author_id FROM rule_authors WHERE rule_id = ANY($1::text[])", rule_ids)}
            await conn.executemany(
                "INSERT INTO rule_authors (rule_id, author_id, source, title) VALUES ($1, $2, $3, $4)"
                " ON CONFLICT (rule_id) DO UPDATE SET author_id = EXCLUDED.author_id, source = EXCLUDED.source,"
                " title = EXCLUDED.title, updated_at = NOW()"
                " WHERE (rule_authors.author_id, rule_authors.source, rule_authors.title)"
                " IS DISTINCT FROM (EXCLUDED.author_id, EXCLUDED.source, EXCLUDED.title)"
                # The catalog wins over an event's authorId (tables/rule_catalog.py); only a stale writer
                # could try otherwise, since a catalog tombstone deletes the row first.
                " AND NOT (rule_authors.source = 'catalog' AND EXCLUDED.source = 'event')",
                [r for r in rows if r[1] is not None])
            gone = [r[0] for r in rows if r[1] is None]
            if gone:
                await conn.execute("DELETE FROM rule_authors WHERE rule_id = ANY($1::text[])", gone)
        return old

    async def rule_day_list(self, rule_ids: Iterable[str]) -> list[tuple[str, date]]:
        rows = await self._db.fetch("SELECT rule_id, day FROM rule_metric_daily WHERE rule_id = ANY($1::text[])",
                                    list(rule_ids))
        return [(r["rule_id"], r["day"]) for r in rows]

    async def recompute_author_days(self, pairs: Iterable[tuple[str, date]],
                                    rule_days: Iterable[tuple[str, date]] = ()) -> None:
        """Author-day totals = the sums of the author's rules' day totals (absolute, so repeatable).

        `pairs` are (author, day); `rule_days` are (rule, day) whose author is taken from `rule_authors`
        here, whatever the worker's catalog table says: a worker that lost a partition may have written a
        rule's author to PostgreSQL before its transaction was fenced, and the new owner, replaying the rule's
        events before its catalog record, must still bring that author's days up to date."""
        wanted = set(pairs)
        rules_days = sorted(set(rule_days))
        async with self._db.transaction() as conn:
            if rules_days:
                wanted.update((r["author_id"], r["d"]) for r in await conn.fetch(
                    "SELECT DISTINCT ra.author_id, p.d FROM unnest($1::text[], $2::date[]) AS p(r, d)"
                    " JOIN rule_authors ra ON ra.rule_id = p.r", [r for r, _ in rules_days],
                    [d for _, d in rules_days]))
            ordered = sorted(wanted)
            if not ordered:
                return
            authors, days = [p[0] for p in ordered], [p[1] for p in ordered]
            await conn.execute(_LOCK_AUTHOR_DAYS, authors, days)
            await conn.execute(_RECOMPUTE_AUTHOR_DAYS, authors, days)

    async def rule_days(self, rule_id: str, start: date, end: date) -> list[dict[str, Any]]:
        rows = await self._db.fetch(
            f"SELECT {_DAY_COLUMNS} FROM rule_metric_daily"
            " WHERE rule_id = $1 AND day BETWEEN $2 AND $3 ORDER BY day", rule_id, start, end)
        return [{**dict(r), "day": r["day"].isoformat()} for r in rows]

    async def author_days(self, author_id: str, start: date, end: date) -> list[dict[str, Any]]:
        rows = await self._db.fetch(
            f"SELECT {_DAY_COLUMNS}, donation_count, donation_amount_cents FROM author_metric_daily"
            " WHERE author_id = $1 AND day BETWEEN $2 AND $3 ORDER BY day", author_id, start, end)
        return [{**dict(r), "day": r["day"].isoformat()} for r in rows]
