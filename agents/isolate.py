"""Finding the records at fault when a batch write fails for its content, so that exactly those are
dead-lettered and the rest is written: one bad record never stalls its partition, nor takes good ones along.

Transient failures (errors.is_transient: an outage) are retried without limit, the partition waiting and
nothing acknowledged. Any other failure of a write of several units splits it in halves, each written on its
own, down to the single units that fail alone: k bad units among n cost about 2k·log2(n) extra writes. Every
write here must be idempotent (absolute values, upserts), as a retried or split write repeats part of one.
"""
from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import TypeVar

from ingestflow.app.core.errors import is_transient
from ingestflow.app.core.retry import retry

__all__ = ["write_isolating"]

log = logging.getLogger(__name__)
T = TypeVar("T")


async def write_isolating(units: Sequence[T], write: Callable[[Sequence[T]], Awaitable[object]],
                          reject: Callable[[T, BaseException], Awaitable[None]], *, what: str) -> None:
    """Write `units` together; on a content failure, bisect and `reject` each unit that fails alone."""
    if not units:
        return
    try:
        await retry(lambda: write(units), what=what, retry_if=is_transient)
        return
    except Exception as exc:
        if len(units) == 1:
            await reject(units[0], exc)
            return
        log.warning("%s: %d units failed together (%s: %s); writing them in halves to find the bad ones",
                    what, len(units), type(exc).__name__, str(exc)[:200])
    middle = len(units) // 2
    await write_isolating(units[:middle], write, reject, what=what)
    await write_isolating(units[middle:], write, reject, what=what)
