"""PostgreSQL: one connection pool per process, and versioned migrations applied exactly once."""
from __future__ import annotations

import logging
from importlib import resources
from typing import Any, cast

import asyncpg

from .errors import Unavailable

__all__ = ["Database", "migrate", "MIGRATIONS_LOCK"]

log = logging.getLogger(__name__)
MIGRATIONS_LOCK = 7_304_221  # pg_advisory_lock key: two processes migrating at once take turns.


class Database:
    """Stores its parameters now and connects in start(), so building it never touches the network."""

    def __init__(self, dsn: str, *, min_size: int = 1, max_size: int = 10, timeout: float = 5.0) -> None:
        self._dsn = dsn
        self._min = min_size
        self._max = max_size
        self._timeout = timeout
        self._pool: asyncpg.Pool | None = None

    async def start(self) -> None:
        if self._pool is None:
            self._pool = await asyncpg.create_pool(
                self._dsn, min_size=self._min, max_size=self._max, timeout=self._timeout,
                command_timeout=30)

    async def stop(self) -> None:
        pool, self._pool = self._pool, None
        if pool is not None:
            await pool.close()

    @property
    def pool(self) -> asyncpg.Pool:
        if self._pool is None:
            raise Unavailable("PostgreSQL is not connected")
        return self._pool

    async def connected(self) -> asyncpg.Pool:
        """The pool, connecting first if needed (a worker's agents may run before its services)."""
        if self._pool is None:
            try:
                await self.start()
            except (OSError, asyncpg.PostgresError) as exc:
                raise Unavailable(f"PostgreSQL is unreachable: {type(exc).__name__}") from exc
        return self.pool

    async def execute(self, query: str, *args: Any) -> str:
        return cast(str, await (await self.connected()).execute(query, *args))

    async def executemany(self, query: str, args: list[tuple[Any, ...]]) -> None:
        await (await self.connected()).executemany(query, args)

    async def fetch(self, query: str, *args: Any) -> list[asyncpg.Record]:
        return cast(list[asyncpg.Record], await (await self.connected()).fetch(query, *args))

    async def fetchrow(self, query: str, *args: Any) -> asyncpg.Record | None:
        return await (await self.connected()).fetchrow(query, *args)

    async def fetchval(self, query: str, *args: Any) -> Any:
        return await (await self.connected()).fetchval(query, *args)

    async def ping(self) -> None:
        await self.fetchval("SELECT 1")


def _migration_files() -> list[tuple[str, str]]:
    folder = resources.files("ingestflow.app") / "migrations"
    files = sorted((f.name, f.read_text()) for f in folder.iterdir() if f.name.endswith(".sql"))
    return [(name.removesuffix(".sql"), sql) for name, sql in files]


async def migrate(dsn: str) -> list[str]:
    """Apply every migration not yet recorded, each in its own transaction; returns those applied."""
    conn = await asyncpg.connect(dsn)
    applied: list[str] = []
    try:
        await conn.execute("SELECT pg_advisory_lock($1)", MIGRATIONS_LOCK)
        await conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations ("
            " version TEXT PRIMARY KEY, applied_at TIMESTAMPTZ NOT NULL DEFAULT NOW())")
        done = {r["version"] for r in await conn.fetch("SELECT version FROM schema_migrations")}
        for version, sql in _migration_files():
            if version in done:
                continue
            async with conn.transaction():
                await conn.execute(sql)
                await conn.execute("INSERT INTO schema_migrations (version) VALUES ($1)", version)
            log.info("applied migration %s", version)
            applied.append(version)
    finally:
        await conn.execute("SELECT pg_advisory_unlock($1)", MIGRATIONS_LOCK)
        await conn.close()
    return applied
