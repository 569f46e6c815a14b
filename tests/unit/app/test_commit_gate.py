"""The commit gate: a commit never lands in the middle of a batch's table writes, and it hands every
written changelog record to the producer before committing."""
from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any, cast

import faust
from faust.types import TP

from ingestflow.app.worker.commit_gate import CommitGate, gated_transactions
from ingestflow.app.worker.faust_app import draining_buffer


async def test_a_commit_waits_for_the_batch_being_written_then_flushes_before_committing() -> None:
    log: list[str] = []

    async def flush() -> None:
        log.append("flush")

    gate = CommitGate(flush)
    halfway = asyncio.Event()
    resume = asyncio.Event()

    async def batch() -> None:
        async with gate.writes():
            log.append("dedup key")
            halfway.set()
            await resume.wait()  # a commit arriving now must not split the batch
            log.append("counts")

    async def commit() -> None:
        async with gate.committing():
            log.append("commit")

    writing = asyncio.create_task(batch())
    await halfway.wait()
    committing = asyncio.create_task(commit())
    await asyncio.sleep(0.01)
    assert log == ["dedup key"]  # the commit is still waiting
    resume.set()
    await asyncio.gather(writing, committing)
    assert log == ["dedup key", "counts", "flush", "flush", "commit"]


async def test_a_batch_waits_for_a_commit_in_progress() -> None:
    log: list[str] = []
    committed = asyncio.Event()

    async def flush() -> None:
        log.append("flush")

    gate = CommitGate(flush)

    async def commit() -> None:
        async with gate.committing():
            await committed.wait()
            log.append("commit")

    async def batch() -> None:
        async with gate.writes():
            log.append("write")

    committing = asyncio.create_task(commit())
    await asyncio.sleep(0)
    writing = asyncio.create_task(batch())
    await asyncio.sleep(0.01)
    assert log == ["flush"]
    committed.set()
    await asyncio.gather(committing, writing)
    assert log == ["flush", "commit", "write", "flush"]


class _Assignor:
    """Faust's assignor as the transaction manager sees it after a rebalance: `standbys` are the source
    partitions this worker now keeps only a table replica of."""

    def __init__(self, standbys: set[TP]) -> None:
        self.standbys = standbys

    def group_for_topic(self, topic: str) -> int:
        return 0

    def is_standby(self, tp: TP) -> bool:
        return tp in self.standbys


class _Producer:
    def __init__(self, running: set[str]) -> None:
        self._transaction_producers = dict.fromkeys(running)
        self.calls: list[tuple[str, str]] = []

    async def stop_transaction(self, tid: str) -> None:
        self.calls.append(("stop", tid))
        self._transaction_producers.pop(tid, None)

    async def maybe_begin_transaction(self, tid: str) -> None:
        self.calls.append(("begin", tid))
        self._transaction_producers[tid] = None


async def test_a_rebalance_stops_the_producers_of_partitions_handed_over_even_when_kept_as_standbys() -> None:
    """With two workers and one standby replica, every partition a worker hands over stays with it as a
    standby. Faust's transaction manager skipped those, leaving their producers open (and fenced by the new
    owner's): used again when the partition came back, the first commit failed and crashed the worker."""
    events = [TP("events", p) for p in range(4)]
    changelog = [TP("g-dedup-keys-changelog", p) for p in range(4)]
    kept, handed_over, replicas = {events[0], events[1]}, {events[2], events[3]}, {changelog[2], changelog[3]}
    app = SimpleNamespace(conf=SimpleNamespace(id="g"), assignor=_Assignor(standbys=handed_over | replicas))
    producer = _Producer(running={"g-0-0", "g-0-1", "g-0-2", "g-0-3"})
    manager = gated_transactions(CommitGate(_no_flush))(SimpleNamespace(app=app), consumer=None, producer=producer)
    # The Kafka assignment holds the standbys' changelog partitions, not their source partitions.
    await manager.on_rebalance(kept | replicas, handed_over, set())
    assert sorted(producer.calls) == [("stop", "g-0-2"), ("stop", "g-0-3")]

    # The partitions come back: they get new producers (a new producer epoch), not the fenced ones.
    app.assignor.standbys = set()
    await manager.on_rebalance(set(events), replicas, handed_over)
    assert sorted(producer.calls[2:]) == [("begin", "g-0-2"), ("begin", "g-0-3")]


async def _no_flush() -> None:
    pass


async def test_the_gates_flush_returns_once_every_record_queued_was_handed_to_the_producer(tmp_path: Any) -> None:
    """Faust's buffer flush returned with the last record still on its way, and after 0.1 s of any slow
    hand-over: a commit then went out without records of a batch it had acked."""
    app = faust.App("draining-buffer", datadir=str(tmp_path))
    buffer = draining_buffer(app)
    handed_over: list[int] = []

    class SlowBroker:
        async def publish_message(self, fut: Any, wait: bool = False) -> None:
            await asyncio.sleep(0.3)
            handed_over.append(fut.n)

    await buffer.start()
    try:
        for n in range(3):
            buffer.put(cast(Any, SimpleNamespace(n=n, message=SimpleNamespace(channel=SlowBroker()))))
        await buffer.flush()
        assert handed_over == [0, 1, 2]
    finally:
        await buffer.stop()
