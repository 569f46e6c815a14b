"""Table recovery that ends as soon as every changelog has been read to its end.

Faust's recovery reads each changelog until it has received the record just before the end offset. Under
exactly-once the end of a changelog is often no record at all: a transaction's commit marker, or records of
a transaction aborted when its partition moved to another worker (a rebalance, a restart after a crash),
which a read_committed consumer never receives. Faust then waits for an event that never comes, and only
after two 5-second timeouts checks whether the consumer's position has passed the end: ten seconds of every
such recovery, in a row at each rebalance of a scale-out. Here a watcher makes the same check every tenth of
a second, once nothing of those changelogs is left anywhere on its way (the changelog queue, the recovery
buffers, the consumer's delivery of a fetch).
"""
from __future__ import annotations

import asyncio
from typing import Any

from faust.tables import TableManager
from faust.tables.recovery import Recovery

__all__ = ["PromptRecovery", "PromptTableManager", "CHECK_S"]

CHECK_S = 0.1


class PromptRecovery(Recovery):
    async def on_start(self) -> None:
        await super().on_start()
        self.add_future(self._watch_ends())

    async def _watch_ends(self) -> None:
        read_to_end = False  # two checks in a row, as Faust's own check wants two idle cycles
        while not self.should_stop:
            await asyncio.sleep(CHECK_S)
            now = self.in_recovery and self.need_recovery() and await self._read_to_end()
            if now and read_to_end:
                self._end_recovery()
                now = False
            read_to_end = now

    async def _read_to_end(self) -> bool:
        """True when every active changelog partition still short of its end has no record left to come."""
        consumer: Any = self.app.consumer
        if not self.tables.changelog_queue.empty() or consumer.delivering_any(self.active_tps):
            return False
        for tp, highwater in self.active_highwaters.items():
            offset = self.active_offsets[tp]
            if highwater is not None and offset is not None and offset < highwater:
                position = await consumer.position(tp)
                if position is None or position < highwater:
                    return False
        return True

    def _end_recovery(self) -> None:
        """Faust's end of recovery (`_slurp_changelogs`' own, after its aborted-transaction check)."""
        for tp, highwater in self.active_highwaters.items():
            offset = self.active_offsets[tp]
            if highwater is not None and offset is not None and offset < highwater:
                self.log.info("changelog %s[%d] read to its end (%d): no record after %d", tp.topic, tp.partition,
                              highwater, offset)
                self.active_offsets[tp] = highwater
        self.flush_buffers()
        self._set_recovery_ended()
        self.signal_recovery_end.set()


class PromptTableManager(TableManager):
    """Faust's table manager with `PromptRecovery` (set as the app's TableManager)."""

    @property
    def recovery(self) -> Recovery:
        if self._recovery is None:
            self._recovery = PromptRecovery(self.app, self, beacon=self.beacon, loop=self.loop)
        return self._recovery
