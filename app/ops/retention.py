"""Retention: audit and transfer rows, and dated Redis keys, removed once past their configured age.

A dry run counts what would go and removes nothing. Transfer rows still `pending` are never removed: they
are the trace of an upload that has not finished.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta

from ingestflow.app.clients.db import Database
from ingestflow.app.clients.redis_client import RedisClient, RedisError

__all__ = ["RetentionPolicy", "RetentionReport", "run_retention"]

# Dated Redis keys end in an ISO day (for example a daily leaderboard `...:2026-11-20`).
DATED_KEY = re.compile(r"(\d{4}-\d{2}-\d{2})$")


@dataclass(frozen=True)
class RetentionPolicy:
    audit_days: int
    transfer_log_days: int
    redis_days: int


@dataclass
class RetentionReport:
    dry_run: bool
    audit_log: int = 0
    transfer_logs: int = 0
    redis_keys: int = 0
    redis_error: str | None = None
    examples: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, object]:
        return {"dryRun": self.dry_run, "auditLog": self.audit_log, "transferLogs": self.transfer_logs,
                "redisKeys": self.redis_keys, "redisError": self.redis_error, "redisExamples": self.examples}


async def run_retention(db: Database, redis: RedisClient | None, policy: RetentionPolicy, now: datetime,
                        *, dry_run: bool, redis_pattern: str = "ingestflow:*") -> RetentionReport:
    report = RetentionReport(dry_run=dry_run)
    audit_cutoff = now - timedelta(days=policy.audit_days)
    transfer_cutoff = now - timedelta(days=policy.transfer_log_days)
    if dry_run:
        report.audit_log = await db.fetchval("SELECT count(*) FROM audit_log WHERE created_at < $1", audit_cutoff)
        report.transfer_logs = await db.fetchval(
            "SELECT count(*) FROM transfer_logs WHERE transferred_at < $1 AND status <> 'pending'", transfer_cutoff)
    else:
        report.audit_log = _count(await db.execute("DELETE FROM audit_log WHERE created_at < $1", audit_cutoff))
        report.transfer_logs = _count(await db.execute(
            "DELETE FROM transfer_logs WHERE transferred_at < $1 AND status <> 'pending'", transfer_cutoff))
    if redis is not None:
        try:
            await _redis_keys(redis, now.date() - timedelta(days=policy.redis_days), report, redis_pattern)
        except (RedisError, OSError) as exc:
            report.redis_error = f"Redis unavailable: {type(exc).__name__}"
    return report


async def _redis_keys(redis: RedisClient, cutoff: date, report: RetentionReport, pattern: str) -> None:
    expired: list[bytes] = []
    async for key in redis.redis.scan_iter(match=pattern, count=1000):
        match = DATED_KEY.search(key.decode(errors="replace"))
        if match and date.fromisoformat(match.group(1)) < cutoff:
            expired.append(key)
    report.redis_keys = len(expired)
    report.examples = [k.decode(errors="replace") for k in expired[:5]]
    if not report.dry_run and expired:
        for start in range(0, len(expired), 500):
            await redis.redis.delete(*expired[start:start + 500])


def _count(status: str) -> int:
    """asyncpg returns the command tag, e.g. 'DELETE 12'."""
    return int(status.rsplit(" ", 1)[-1])
