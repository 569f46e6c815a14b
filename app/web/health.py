"""Health of a process: each dependency probed with a deadline, its latency measured, and readiness
decided by the required ones only (Redis is optional by design: the system keeps working without it).

Liveness says the process and its event loop answer; readiness says it can do its job now. Health needs no
secret, so each probe's result is kept a few seconds (HEALTH_CACHE_S): however often /health is called, a
dependency (Lighthouse, with our key) is probed at most once per interval."""
from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import NotRequired, TypedDict

from ingestflow.app.core.observability import DEPENDENCY_UP, READY
from ingestflow.app.core.ttlcache import TtlCache

__all__ = ["Probe", "Readiness", "check", "cached_check", "readiness", "ProbeCache", "watch"]

log = logging.getLogger(__name__)

CHECK_TIMEOUT_S = 2.0
ProbeCache = TtlCache[str, dict[str, object]]


@dataclass(frozen=True)
class Probe:
    name: str
    call: Callable[[], Awaitable[object]]
    required: bool = True


class Readiness(TypedDict):
    """The body of /health and /health/ready on every process, in one vocabulary: `ready` says whether the
    process can do its job now (the HTTP status is 200 or 503 by it); `status` is "ok" (every dependency up),
    "degraded" (ready, an optional dependency down) or "unavailable" (not ready); `reasons` names what keeps
    it from being ready, only when something does."""
    status: str
    ready: bool
    dependencies: list[dict[str, object]]
    reasons: NotRequired[list[str]]


def summary(ready: bool, dependencies: list[dict[str, object]], reasons: list[str]) -> Readiness:
    """The Readiness body of a process that is `ready` or not, with its dependencies and reasons."""
    up = all(d["status"] == "up" for d in dependencies)
    body: Readiness = {"status": "unavailable" if not ready else "ok" if up else "degraded", "ready": ready,
                       "dependencies": dependencies}
    if reasons:
        body["reasons"] = reasons
    return body


async def check(name: str, probe: Callable[[], Awaitable[object]],
                timeout_s: float = CHECK_TIMEOUT_S) -> dict[str, object]:
    started = time.perf_counter()
    try:
        await asyncio.wait_for(probe(), timeout_s)
    except Exception as exc:  # any failure is a state to report, not an error to raise
        DEPENDENCY_UP.labels(dependency=name).set(0)
        reason = "timed out" if isinstance(exc, asyncio.TimeoutError) else type(exc).__name__
        return {"name": name, "status": "down", "error": reason,
                "latencyMs": round((time.perf_counter() - started) * 1000, 1)}
    DEPENDENCY_UP.labels(dependency=name).set(1)
    return {"name": name, "status": "up", "latencyMs": round((time.perf_counter() - started) * 1000, 1)}


async def cached_check(cache: ProbeCache, name: str, probe: Callable[[], Awaitable[object]]) -> dict[str, object]:
    """check(), or its result from the last HEALTH_CACHE_S seconds (a copy: callers add to it)."""
    return dict(await cache.get(name, lambda: check(name, probe)))


async def readiness(probes: list[Probe], cache: ProbeCache) -> tuple[bool, Readiness]:
    """(ready, body): ready when every required dependency is up; the body names each one and why not."""
    results = await asyncio.gather(*(cached_check(cache, p.name, p.call) for p in probes))
    for probe, result in zip(probes, results):
        result["required"] = probe.required
    failing = [f"{r['name']}: {r['error']}" for r, p in zip(results, probes) if p.required and r["status"] != "up"]
    return not failing, summary(not failing, list(results), failing)


async def watch(evaluate: Callable[[], Awaitable[bool]], interval_s: float) -> None:
    """Evaluate readiness every `interval_s`, so `ingestflow_ready` and `ingestflow_dependency_up` stay
    current (and alerts can fire) even when nothing polls the health endpoints. Runs until cancelled."""
    while True:
        try:
            READY.set(1 if await evaluate() else 0)
        except Exception as exc:  # an evaluation that fails is a process that cannot tell it is ready
            log.warning("readiness evaluation failed: %s", type(exc).__name__)
            READY.set(0)
        await asyncio.sleep(interval_s)
