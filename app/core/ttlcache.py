"""Results of expensive calls kept for a few seconds: a heavy read (a full GROUP BY behind an all-time
leaderboard) or a dependency probe (one behind every unauthenticated /health call) runs at most once per
interval and key, however often it is asked for. Concurrent misses of one key share one call; a failed call
is not kept, so the next caller tries again."""
from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Hashable
from typing import Generic, TypeVar

__all__ = ["TtlCache"]

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class TtlCache(Generic[K, V]):
    def __init__(self, ttl_s: float, *, max_entries: int = 1024,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._ttl_s = ttl_s
        self._max_entries = max_entries
        self._clock = clock
        self._values: dict[K, tuple[float, V]] = {}
        self._pending: dict[K, asyncio.Future[V]] = {}

    async def get(self, key: K, compute: Callable[[], Awaitable[V]]) -> V:
        if self._ttl_s <= 0:
            return await compute()
        now = self._clock()
        kept = self._values.get(key)
        if kept is not None and kept[0] > now:
            return kept[1]
        pending = self._pending.get(key)
        if pending is not None:
            return await asyncio.shield(pending)
        future: asyncio.Future[V] = asyncio.get_running_loop().create_future()
        self._pending[key] = future
        try:
            value = await compute()
        except asyncio.CancelledError:
            future.cancel()
            raise
        except Exception as exc:
            future.set_exception(exc)
            future.exception()  # retrieved here, so a failure nobody else awaited is not reported as lost
            raise
        finally:
            del self._pending[key]
        future.set_result(value)
        if len(self._values) >= self._max_entries:
            self._values = {k: v for k, v in self._values.items() if v[0] > now}
        self._values[key] = (now + self._ttl_s, value)
        return value
