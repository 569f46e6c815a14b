"""Operational endpoints: health, Prometheus metrics."""
from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from .context import CONTEXT
from .http import json_response
from .observability import DEPENDENCY_UP

__all__ = ["routes", "check"]

routes = web.RouteTableDef()
CHECK_TIMEOUT_S = 2.0


async def check(name: str, probe: Callable[[], Awaitable[object]]) -> dict[str, object]:
    started = time.perf_counter()
    try:
        await asyncio.wait_for(probe(), CHECK_TIMEOUT_S)
    except Exception as exc:  # any failure is a state to report, not an error to raise
        DEPENDENCY_UP.labels(dependency=name).set(0)
        return {"name": name, "status": "down", "error": type(exc).__name__,
                "latencyMs": round((time.perf_counter() - started) * 1000, 1)}
    DEPENDENCY_UP.labels(dependency=name).set(1)
    return {"name": name, "status": "up", "latencyMs": round((time.perf_counter() - started) * 1000, 1)}


@routes.get("/health")
async def health(request: web.Request) -> web.Response:
    ctx = request.app[CONTEXT]
    deps = await asyncio.gather(check("kafka", ctx.publisher.ping), check("postgres", ctx.db.ping))
    ok = all(d["status"] == "up" for d in deps if d["name"] == "kafka")
    return json_response({"status": "ok" if ok else "degraded", "dependencies": list(deps)},
                         status=200 if ok else 503)


@routes.get("/metrics")
async def metrics(request: web.Request) -> web.Response:
    return web.Response(body=generate_latest(), content_type=CONTENT_TYPE_LATEST.split(";")[0])
