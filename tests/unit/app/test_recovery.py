"""Table recovery ends once each changelog is read past its end, when that end holds no record to receive
(a commit marker, a transaction aborted when its partition moved): Faust waited two 5-second timeouts."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import faust
from faust.types import TP

from ingestflow.app.worker.recovery import PromptRecovery, PromptTableManager
from ingestflow.app.worker.state_store import RocksMemory
from ingestflow.app.worker.state_table import state_table

CHANGELOG0 = TP("app-seen-changelog", 0)


async def test_recovery_ends_when_the_consumer_is_past_an_end_that_holds_no_record(tmp_path: Path) -> None:
    app = faust.App("recovery-test", broker="kafka://127.0.0.1:1", store="rocksdb://", datadir=str(tmp_path),
                    autodiscover=False, processing_guarantee="exactly_once", Table=state_table(RocksMemory(32)),
                    TableManager=PromptTableManager)
    recovery = app.tables.recovery
    assert isinstance(recovery, PromptRecovery)
    # Records up to offset 7, then a transaction aborted when the partition moved, and its marker.
    recovery.active_highwaters[CHANGELOG0] = 10
    recovery.active_offsets[CHANGELOG0] = 7
    recovery.in_recovery = True
    position = {CHANGELOG0: 8}
    delivering = {CHANGELOG0: False}
    consumer: Any = app.consumer

    async def at(tp: TP) -> int:
        return position[tp]
    consumer.position = at
    consumer.delivering_any = lambda tps: any(delivering[tp] for tp in tps)
    recovery.active_tps = {CHANGELOG0}

    assert not await recovery._read_to_end()  # the consumer has not fetched past the end: records may come
    position[CHANGELOG0] = 11
    delivering[CHANGELOG0] = True
    assert not await recovery._read_to_end()  # fetched, still on its way to the changelog queue
    delivering[CHANGELOG0] = False
    assert await recovery._read_to_end()
    recovery._end_recovery()
    assert recovery.active_offsets[CHANGELOG0] == 10 and not recovery.need_recovery()
    assert recovery.signal_recovery_end.is_set() and not recovery.in_recovery
