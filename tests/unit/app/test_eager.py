"""eager.start: a coroutine that never waits runs to its end at once; one that waits is resumed where it
waited, with what it waited for, its exceptions and its cancellation."""
from __future__ import annotations

import asyncio

import pytest

from ingestflow.app.worker import eager


async def test_a_coroutine_that_never_waits_ends_at_once_with_its_result() -> None:
    steps: list[str] = []

    async def put() -> int:
        steps.append("put")
        return 7

    assert eager.start(put()) == (True, 7) and steps == ["put"]


async def test_a_coroutine_that_waits_is_resumed_with_what_it_waited_for() -> None:
    room: asyncio.Future[str] = asyncio.get_running_loop().create_future()
    steps: list[str] = []

    async def put() -> str:
        steps.append("before")
        got = await room
        steps.append("after")
        await asyncio.sleep(0)
        return f"put {got}"

    done, rest = eager.start(put())
    assert not done and steps == ["before"]
    task = asyncio.ensure_future(rest)
    await asyncio.sleep(0)
    assert not task.done()
    room.set_result("x")
    assert await task == "put x" and steps == ["before", "after"]


async def test_exceptions_and_cancellation_reach_the_coroutine_and_its_caller() -> None:
    async def fails() -> None:
        raise ValueError("bad record")

    with pytest.raises(ValueError):
        eager.start(fails())

    cleaned: list[bool] = []

    async def waits_forever() -> None:
        try:
            await asyncio.Event().wait()
        finally:
            cleaned.append(True)

    done, rest = eager.start(waits_forever())
    task = asyncio.ensure_future(rest)
    await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert cleaned == [True]
