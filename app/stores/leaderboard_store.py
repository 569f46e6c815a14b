"""Leaderboards: the top N hot in Redis sorted sets, PostgreSQL as the source of truth and the fallback.

Periods end on a UTC day D (inclusive): daily = D, weekly = the 7 days to D, monthly = the 30 days to D,
all-time = every day to D. A subject's score over a period is the sum of its daily scores (the weighted
counts, app/metrics_store.day_score). The worker's leader rewrites the Redis sets from PostgreSQL every
LEADERBOARD_REFRESH_S; a read uses Redis when the set is there and PostgreSQL otherwise (Redis down or
cold), so the answer never depends on Redis being up.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

from ingestflow.app.clients.db import Database
from ingestflow.app.clients.redis_client import RedisClient, RedisError

__all__ = ["LeaderboardStore", "Entry", "PERIODS", "SCOPES", "period_range"]

log = logging.getLogger(__name__)

PERIODS = {"daily": 1, "weekly": 7, "monthly": 30, "all-time": None}
SCOPES = {"rules": ("rule_metric_daily", "rule_id"), "authors": ("author_metric_daily", "author_id")}
KEY_TTL_S = 3 * 86400
TRENDING_KEY = "ingestflow:trending:rules"


@dataclass(frozen=True, slots=True)
class Entry:
    id: str
    score: float


def period_range(period: str, day: date) -> tuple[date, date]:
    days = PERIODS[period]
    return (date(1970, 1, 1) if days is None else day - timedelta(days=days - 1)), day


def _key(scope: str, period: str, day: date) -> str:
    return f"ingestflow:lb:{scope}:{period}:{day.isoformat()}"


def _ranked(entries: list[Entry], limit: int) -> list[Entry]:
    return sorted(entries, key=lambda e: (-e.score, e.id))[:limit]


class LeaderboardStore:
    def __init__(self, db: Database, redis: RedisClient | None, *, size: int) -> None:
        self._db = db
        self._redis = redis
        self.size = size

    async def compute(self, period: str, scope: str, day: date, limit: int) -> list[Entry]:
        """The leaderboard from PostgreSQL's daily totals: always correct, slower."""
        table, column = SCOPES[scope]
        start, end = period_range(period, day)
        rows = await self._db.fetch(
            f"SELECT {column} AS id, SUM(score) AS score FROM {table} WHERE day BETWEEN $1 AND $2"
            f" GROUP BY {column} HAVING SUM(score) > 0 ORDER BY score DESC, {column} LIMIT $3", start, end, limit)
        return [Entry(r["id"], float(r["score"])) for r in rows]

    async def top(self, period: str, scope: str, day: date, limit: int) -> tuple[list[Entry], str]:
        """(entries, "redis" | "postgres")."""
        if self._redis is not None and limit <= self.size:
            try:
                redis = self._redis.redis
                key = _key(scope, period, day)
                async with redis.pipeline(transaction=False) as pipe:
                    pipe.exists(key)
                    pipe.zrange(key, 0, limit - 1, desc=True, withscores=True)
                    exists, members = await pipe.execute()
                if exists:
                    return _ranked([Entry(m.decode(), float(s)) for m, s in members if m], limit), "redis"
            except (RedisError, OSError) as exc:
                log.warning("leaderboard read from Redis failed, using PostgreSQL: %s", type(exc).__name__)
        return await self.compute(period, scope, day, limit), "postgres"

    async def refresh(self, day: date) -> int:
        """Rewrite every hot set for `day` from PostgreSQL (atomically per set); returns the sets written."""
        if self._redis is None:
            return 0
        boards = {(scope, period): await self.compute(period, scope, day, self.size)
                  for scope in SCOPES for period in PERIODS}
        redis = self._redis.redis
        async with redis.pipeline(transaction=True) as pipe:
            for (scope, period), entries in boards.items():
                key = _key(scope, period, day)
                pipe.delete(key)
                # An empty board is stored as a placeholder member so "exists" still means "fresh".
                pipe.zadd(key, {e.id: e.score for e in entries} or {"": 0.0})
                pipe.expire(key, KEY_TTL_S)
            await pipe.execute()
        return len(boards)

    async def snapshot_rows(self, day: date) -> list[tuple[str, str, date, int, str, float]]:
        rows = []
        for scope in SCOPES:
            for period in PERIODS:
                for rank, e in enumerate(await self.compute(period, scope, day, self.size), start=1):
                    rows.append((period, scope, day, rank, e.id, e.score))
        return rows

    async def write_snapshot(self, day: date, rows: list[tuple[str, str, date, int, str, float]]) -> None:
        """Replace the day's snapshot (all periods and scopes) in one transaction."""
        async with self._db.transaction() as conn:
            await conn.execute("DELETE FROM leaderboard_snapshot WHERE day = $1", day)
            await conn.executemany(
                "INSERT INTO leaderboard_snapshot (period, scope, day, rank, subject_id, score)"
                " VALUES ($1, $2, $3, $4, $5, $6)", rows)

    async def snapshot(self, day: date) -> int:
        rows = await self.snapshot_rows(day)
        await self.write_snapshot(day, rows)
        return len(rows)

    async def set_rule_trending(self, scores: dict[str, float]) -> None:
        """Trending values (log space, agents/trending.py) to PostgreSQL, and to Redis when it is up.

        A rule's value only grows, so a lower one is a stale write (a worker that lost the partition while
        writing, app/stores/metrics_store.py) and is skipped in both stores."""
        await self._db.executemany(
            "INSERT INTO rule_trending (rule_id, log_score) VALUES ($1, $2) ON CONFLICT (rule_id)"
            " DO UPDATE SET log_score = EXCLUDED.log_score, updated_at = NOW()"
            " WHERE EXCLUDED.log_score >= rule_trending.log_score", list(scores.items()))
        if self._redis is not None:
            try:
                await self._redis.redis.zadd(TRENDING_KEY, scores, gt=True)
            except (RedisError, OSError) as exc:
                log.warning("trending to Redis failed (PostgreSQL has it): %s", type(exc).__name__)

    async def trending(self, scope: str, limit: int) -> list[Entry]:
        """Top trending rules or authors (log-space values; an author's is the log-sum of its rules')."""
        if scope == "rules":
            rows = await self._db.fetch("SELECT rule_id AS id, log_score FROM rule_trending"
                                        " ORDER BY log_score DESC, rule_id LIMIT $1", limit)
        else:
            rows = await self._db.fetch(
                "SELECT ra.author_id AS id, MAX(t.log_score) + LN(SUM(POWER(2, t.log_score - m.top))) / LN(2)"
                " AS log_score FROM rule_trending t JOIN rule_authors ra USING (rule_id)"
                " JOIN (SELECT ra2.author_id, MAX(t2.log_score) AS top FROM rule_trending t2"
                "       JOIN rule_authors ra2 USING (rule_id) GROUP BY ra2.author_id) m"
                "   ON m.author_id = ra.author_id"
                " GROUP BY ra.author_id ORDER BY log_score DESC, ra.author_id LIMIT $1", limit)
        return [Entry(r["id"], float(r["log_score"])) for r in rows]

    def describe(self) -> dict[str, Any]:
        return {"size": self.size, "periods": list(PERIODS), "scopes": list(SCOPES)}
