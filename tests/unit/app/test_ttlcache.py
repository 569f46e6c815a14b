"""The cache behind heavy reads and health probes: one call per interval and key, shared by concurrent
callers, failures never kept."""
from __future__ import annotations

import asyncio

import pytest

from ingestflow.app.core.ttlcache import TtlCache


async def test_one_call_per_interval_shared_by_concurrent_callers() -> None:
    now = [0.0]
    cache: TtlCache[str, int] = TtlCache(5.0, clock=lambda: now[0])
    calls = 0

    async def compute() -> int:
        nonlocal calls
        calls += 1
        await asyncio.sleep(0.01)
        return calls

    assert await asyncio.gather(*(cache.get("k", compute) for _ in range(10))) == [1] * 10
    now[0] = 4.9
    assert await cache.get("k", compute) == 1
    now[0] = 5.1
    assert await cache.get("k", compute) == 2
    assert calls == 2


async def test_a_failure_is_not_kept() -> None:
    cache: TtlCache[str, int] = TtlCache(60.0)
    attempts = 0

    async def flaky() -> int:
        nonlocal attempts
        attempts += 1
        if attempts == 1:
            raise ConnectionError("down")
        return 7

    with pytest.raises(ConnectionError):
        await cache.get("k", flaky)
    assert await cache.get("k", flaky) == 7
