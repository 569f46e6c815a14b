"""A batch an agent fails to handle is rolled back and read again, never acknowledged.

Faust 0.15.3 acks a `take_events` batch in the generator's `finally` and, on an agent's exception, commits
(`Consumer.on_task_error`), then restarts the agent: the batch's offsets were committed without its effects,
and the table writes it had made stayed in the open transaction, committed with the next batch (a dedup key
without its counts, so the event was lost even when read again). Records that fail for their own content
never get here: agents dead-letter them. What does is a dependency failure an agent does not retry, or a
defect. So the batch's partitions are rolled back to their last commit (`read_again` in
app/worker/commit_gate.py: transactions aborted, table writes dropped, the consumer seeking back), the error
is logged and counted (`ingestflow_batches_read_again_total`), and after a backoff the agent takes its next
batch, which starts again from the commit. A batch that fails every time holds back its own partitions
(their lag grows), no other.
"""
from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any

from ingestflow.app.core.observability import BATCHES_READ_AGAIN
from ingestflow.app.core.retry import backoff_delay, retry

__all__ = ["FailedBatches"]

log = logging.getLogger(__name__)


class FailedBatches:
    """One per agent: `async with failed.read_again_on_error(events):` around the handling of each batch."""

    def __init__(self, app: Any, agent: str, *, base: float = 0.5, cap: float = 30.0) -> None:
        self._app, self._agent, self._base, self._cap = app, agent, base, cap
        self._failures = 0  # consecutive failed batches: the backoff grows with them

    @asynccontextmanager
    async def read_again_on_error(self, events: Sequence[Any]) -> AsyncIterator[None]:
        try:
            yield
        except Exception as exc:
            if self._app.should_stop:
                raise  # stopping: the records were not committed, whoever owns them next reads them
            self._failures += 1
            tps = {event.message.tp for event in events}
            offsets = await retry(lambda: self._app.consumer.transactions.read_again(tps),
                                  what=f"roll back a failed batch of {self._agent}")
            BATCHES_READ_AGAIN.labels(agent=self._agent).inc()
            log.error("%s: a batch of %d record(s) failed (%s: %s); rolled back and read again from %s",
                      self._agent, len(events), type(exc).__name__, exc,
                      ", ".join(f"{tp.topic}[{tp.partition}]@{offset}" for tp, offset in sorted(offsets.items())),
                      exc_info=exc)
            await asyncio.sleep(backoff_delay(self._failures, self._base, self._cap))
        else:
            self._failures = 0
