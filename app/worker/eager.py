"""Runs a coroutine's first step at once, so that one which never has to wait costs no task.

Faust's delivery loop wraps every record's delivery in `wait_first`: four tasks and an `asyncio.wait`
per record, to race a delivery that may block (a full stream buffer) against a flow suspended by a
rebalance. Almost every delivery does not block. `start` runs the coroutine until it first waits; only a
coroutine that did wait is handed back (as an awaitable of its rest) for the race. Python 3.12's
`asyncio.eager_task_factory` does the same for tasks; the worker runs on 3.11 too.
"""
from __future__ import annotations

from collections.abc import Coroutine, Generator
from dataclasses import dataclass
from typing import Any

__all__ = ["start", "Rest"]


@dataclass(eq=False)  # raced by identity in mode's wait_first
class Rest:
    """The rest of a coroutine that waited on `waiting`: awaiting it resumes the coroutine from there."""

    coro: Coroutine[Any, Any, Any]
    waiting: Any

    def __await__(self) -> Generator[Any, Any, Any]:
        coro, yielded = self.coro, self.waiting
        while True:
            try:
                sent = yield yielded  # the future the coroutine waits on, handed to the task running this
            except GeneratorExit:
                coro.close()
                raise
            except BaseException as exc:  # noqa: B036 - thrown in by the task (cancellation): passed on
                try:
                    yielded = coro.throw(exc)
                except StopIteration as stop:
                    return stop.value
            else:
                try:
                    yielded = coro.send(sent)
                except StopIteration as stop:
                    return stop.value


def start(coro: Coroutine[Any, Any, Any]) -> tuple[bool, Any]:
    """(True, its result) when the coroutine ran to the end without waiting, else (False, its `Rest`)."""
    try:
        waiting = coro.send(None)
    except StopIteration as stop:
        return True, stop.value
    return False, Rest(coro, waiting)
