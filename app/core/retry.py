"""The one retry helper: exponential backoff with full jitter, for every call to a dependency."""
from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable
from typing import TypeVar

__all__ = ["retry", "backoff_delay"]

log = logging.getLogger(__name__)
T = TypeVar("T")


def backoff_delay(attempt: int, base: float = 0.1, cap: float = 10.0) -> float:
    """Full jitter (AWS architecture blog): spreads retries of many workers over the whole interval."""
    return random.uniform(0, min(cap, base * (2 ** attempt)))


async def retry(
    call: Callable[[], Awaitable[T]],
    *,
    what: str,
    retry_on: tuple[type[BaseException], ...] = (Exception,),
    retry_if: Callable[[BaseException], bool] | None = None,
    attempts: int | None = None,
    base: float = 0.1,
    cap: float = 10.0,
    on_failure: Callable[[int, BaseException], Awaitable[None] | None] | None = None,
) -> T:
    """Call until it succeeds; `attempts=None` retries forever (the caller owns cancellation).

    `retry_if` narrows what is retried (`errors.is_transient`: a failure the input itself causes is raised at
    once, since no number of attempts can fix it)."""
    attempt = 0
    while True:
        try:
            return await call()
        except retry_on as exc:
            if retry_if is not None and not retry_if(exc):
                raise
            attempt += 1
            if on_failure is not None:
                result = on_failure(attempt, exc)
                if asyncio.iscoroutine(result):
                    await result
            if attempts is not None and attempt >= attempts:
                raise
            delay = backoff_delay(attempt, base, cap)
            log.warning("%s failed (attempt %d): %s; retrying in %.2fs", what, attempt, exc, delay)
            await asyncio.sleep(delay)
