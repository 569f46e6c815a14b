"""Retention removes only what is past its age (and never a pending transfer); a dry run removes nothing."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

import asyncpg
from redis.asyncio import Redis

from ingestflow.app.clients.db import Database
from ingestflow.app.clients.redis_client import RedisClient
from ingestflow.app.ops.retention import RetentionPolicy, run_retention

from ..conftest import BASE_ENV
from .conftest import DSN

NOW = datetime.now(timezone.utc)
POLICY = RetentionPolicy(audit_days=30, transfer_log_days=60, redis_days=10)


async def test_retention_dry_run_then_real_run(pg: asyncpg.Connection, unique: str) -> None:
    user = int(unique[:7], 16)
    old, fresh = NOW - timedelta(days=100), NOW - timedelta(days=1)
    await pg.execute("DELETE FROM audit_log WHERE created_at < $1", NOW - timedelta(days=30))
    await pg.execute("DELETE FROM transfer_logs WHERE transferred_at < $1 AND status <> 'pending'",
                     NOW - timedelta(days=60))
    for when in (old, fresh):
        await pg.execute("INSERT INTO audit_log (action, subject, created_at) VALUES ('test', $1, $2)", unique, when)
    for status, when in (("success", old), ("failed", old), ("pending", old), ("success", fresh)):
        await pg.execute("INSERT INTO transfer_logs (user_id, status, transferred_at) VALUES ($1, $2, $3)",
                         user, status, when)
    redis = Redis.from_url(BASE_ENV["REDIS_URL"])
    old_day, new_day = (NOW - timedelta(days=20)).date(), NOW.date()
    await redis.set(f"ingestflow:test:{unique}:{old_day}", 1)
    await redis.set(f"ingestflow:test:{unique}:{new_day}", 1)
    await redis.set(f"ingestflow:test:{unique}:undated", 1)

    db, client = Database(DSN), RedisClient(BASE_ENV["REDIS_URL"])
    await db.start()
    await client.start()
    try:
        dry = await run_retention(db, client, POLICY, NOW, dry_run=True,
                                  redis_pattern=f"ingestflow:test:{unique}:*")
        assert (dry.audit_log, dry.transfer_logs, dry.redis_keys) == (1, 2, 1)
        assert await pg.fetchval("SELECT count(*) FROM audit_log WHERE subject = $1", unique) == 2
        done = await run_retention(db, client, POLICY, NOW, dry_run=False,
                                   redis_pattern=f"ingestflow:test:{unique}:*")
        assert (done.audit_log, done.transfer_logs, done.redis_keys) == (1, 2, 1)
    finally:
        await client.stop()
        await db.stop()
    assert await pg.fetchval("SELECT count(*) FROM audit_log WHERE subject = $1", unique) == 1
    left = await pg.fetch("SELECT status FROM transfer_logs WHERE user_id = $1 ORDER BY status", user)
    assert [r["status"] for r in left] == ["pending", "success"]
    assert await redis.exists(f"ingestflow:test:{unique}:{old_day}") == 0
    assert await redis.exists(f"ingestflow:test:{unique}:{new_day}", f"ingestflow:test:{unique}:undated") == 2
    await redis.aclose()
