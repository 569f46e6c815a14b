"""Health of a process: each dependency probed with a deadline, its latency measured, and readiness
decided by the required ones only (Redis is optional by design: the system keeps working without it).

Liveness says the process and its event loop answer; readiness says it can do its job now."""
from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import NotRequired, TypedDict

from .observability import DEPENDENCY_UP

__all__ = ["Probe", "Readiness", "check", "readiness"]

CHECK_TIMEOUT_S = 2.0


@dataclass(frozen=True)
class Probe:
    name: str
    call: Callable[[], Awaitable[object]]
    required: bool = True


class Readiness(TypedDict):
    """The readiness body: `reasons` lists the failing required dependencies, only when there are some."""
    status: str
    dependencies: list[dict[str, object]]
    reasons: NotRequired[list[str]]


async def check(name: str, probe: Callable[[], Awaitable[object]]) -> dict[str, object]:
    started = time.perf_counter()
    try:
        await asyncio.wait_for(probe(), CHECK_TIMEOUT_S)
    except Exception as exc:  # any failure is a state to report, not an error to raise
        DEPENDENCY_UP.labels(dependency=name).set(0)
        reason = "timed out" if isinstance(exc, asyncio.TimeoutError) else type(exc).__name__
        return {"name": name, "status": "down", "error": reason,
                "latencyMs": round((time.perf_counter() - started) * 1000, 1)}
    DEPENDENCY_UP.labels(dependency=name).set(1)
    return {"name": name, "status": "up", "latencyMs": round((time.perf_counter() - started) * 1000, 1)}


async def readiness(probes: list[Probe]) -> tuple[bool, Readiness]:
    """(ready, body): ready when every required dependency is up; the body names each one and why not."""
    results = await asyncio.gather(*(check(p.name, p.call) for p in probes))
    for probe, result in zip(probes, results):
        result["required"] = probe.required
    failing = [f"{r['name']}: {r['error']}" for r, p in zip(results, probes) if p.required and r["status"] != "up"]
    body: Readiness = {"status": "ready" if not failing else "not ready", "dependencies": list(results)}
    if failing:
        body["reasons"] = failing
    return not failing, body
