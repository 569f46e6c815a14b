"""The commit gate: a commit never lands in the middle of a batch's table writes, and it hands every
written changelog record to the producer before committing."""
from __future__ import annotations

import asyncio

from ingestflow.app.worker.commit_gate import CommitGate


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
