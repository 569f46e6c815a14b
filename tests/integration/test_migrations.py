from __future__ import annotations

import asyncpg

from ingestflow.app.clients.db import migrate

from .conftest import DSN


async def _schema(conn: asyncpg.Connection) -> list[tuple[str, str, str]]:
    rows = await conn.fetch(
        "SELECT table_name, column_name, data_type FROM information_schema.columns"
        " WHERE table_schema = 'public' ORDER BY table_name, ordinal_position")
    return [tuple(r) for r in rows]


async def test_migrate_twice_changes_nothing_the_second_time(pg: asyncpg.Connection) -> None:
    await migrate(DSN)
    before = await _schema(pg)
    versions = await pg.fetch("SELECT version, applied_at FROM schema_migrations ORDER BY version")
    assert await migrate(DSN) == []
    assert await _schema(pg) == before
    assert await pg.fetch("SELECT version, applied_at FROM schema_migrations ORDER BY version") == versions


async def test_transfer_logs_has_the_previous_systems_schema(pg: asyncpg.Connection) -> None:
    cols = {name: kind for table, name, kind in await _schema(pg) if table == "transfer_logs"}
    assert {"id", "user_id", "lighthouse_hash", "entries_transferred", "status", "transferred_at",
            "error_message", "created_at", "updated_at"} <= set(cols)
    assert cols["user_id"] == "bigint"
    tables = {t for t, _, _ in await _schema(pg)}
    assert {"audit_log", "crawl_items", "donations", "rule_metric_daily", "author_metric_daily",
            "leaderboard_snapshot"} <= tables
