"""PostgreSQL: one connection pool per process, and versioned migrations applied exactly once."""
from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from importlib import resources
from typing import Any, cast

import asyncpg

from ingestflow.app.core.errors import Unavailable

__all__ = ["Database", "migrate", "MIGRATIONS_LOCK"]

log = logging.getLogger(__name__)
MIGRATIONS_LOCK = 7_304_221  # pg_advisory_lock key: two processes migrating at once take turns.
# What an outage looks like to a caller: refused or dropped connections, a server shutting down or not yet
# accepting, no free connection within the acquire timeout. Each becomes Unavailable (503 + Retry-After).
OUTAGE_ERRORS = (OSError, asyncio.TimeoutError, asyncpg.PostgresConnectionError, asyncpg.InterfaceError,
                 asyncpg.exceptions.OperatorInterventionError, asyncpg.exceptions.TooManyConnectionsError,
                 asyncpg.exceptions.InvalidAuthorizationSpecificationError)
RETRY_AFTER_S = 2.0


class Database:
    """Stores its parameters now and connects in start(), so building it never touches the network.

    One pool per process, however many callers ask for it at once; after a failed connect the next attempt
    waits `RETRY_AFTER_S` (calls meanwhile fail fast), so an outage costs each request no connect timeout."""

    def __init__(self, dsn: str, *, min_size: int = 1, max_size: int = 10, timeout: float = 5.0,
                 acquire_timeout: float = 5.0) -> None:
        self._dsn = dsn
        self._min = min_size
        self._max = max_size
        self._timeout = timeout
        self._acquire_timeout = acquire_timeout
        self._pool: asyncpg.Pool | None = None
        self._lock = asyncio.Lock()
        self._retry_at = 0.0

    async def start(self) -> None:
        async with self._lock:
            if self._pool is None:
                self._pool = await asyncpg.create_pool(
                    self._dsn, min_size=self._min, max_size=self._max, timeout=self._timeout,
                    command_timeout=30)

    async def stop(self) -> None:
        async with self._lock:
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
            wait = self._retry_at - time.monotonic()
            if wait > 0:
                raise Unavailable("PostgreSQL is unreachable (the last attempt failed)", retry_after=wait)
            try:
                await self.start()
            except (*OUTAGE_ERRORS, asyncpg.PostgresError) as exc:
                self._retry_at = time.monotonic() + RETRY_AFTER_S
                raise Unavailable(f"PostgreSQL is unreachable: {type(exc).__name__}", RETRY_AFTER_S) from exc
        return self.pool

    @asynccontextmanager
    async def connection(self) -> AsyncIterator[asyncpg.Connection]:
        """A pooled connection, waited for at most `acquire_timeout`; an outage, before or during the
        caller's queries, is raised as Unavailable."""
        pool = await self.connected()
        try:
            async with pool.acquire(timeout=self._acquire_timeout) as conn:
                yield conn
        except OUTAGE_ERRORS as exc:
            raise Unavailable(f"PostgreSQL is unavailable: {type(exc).__name__}", RETRY_AFTER_S) from exc

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[asyncpg.Connection]:
        async with self.connection() as conn, conn.transaction():
            yield conn

    async def execute(self, query: str, *args: Any) -> str:
        async with self.connection() as conn:
            return cast(str, await conn.execute(query, *args))

    async def executemany(self, query: str, args: list[tuple[Any, ...]]) -> None:
        async with self.connection() as conn:
            await conn.executemany(query, args)

    async def fetch(self, query: str, *args: Any) -> list[asyncpg.Record]:
        async with self.connection() as conn:
            return cast(list[asyncpg.Record], await conn.fetch(query, *args))

    async def fetchrow(self, query: str, *args: Any) -> asyncpg.Record | None:
        async with self.connection() as conn:
            return cast(asyncpg.Record | None, await conn.fetchrow(query, *args))

    async def fetchval(self, query: str, *args: Any) -> Any:
        async with self.connection() as conn:
            return await conn.fetchval(query, *args)

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
