"""Operational endpoints: health, Prometheus metrics, spool status, the OpenAPI document."""
from __future__ import annotations

import asyncio

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from ingestflow.app.web import openapi
from ingestflow.app.web.health import Readiness, cached_check, summary
from ingestflow.app.web.http import json_response

from .context import CONTEXT
from .routes_archive import ARCHIVE

__all__ = ["routes", "gateway_health"]

routes = web.RouteTableDef()
@routes.get("/health/live")
async def live(request: web.Request) -> web.Response:
    """Liveness: the process and its event loop answer (restart it when this fails)."""
    return json_response({"status": "alive"})


@routes.get("/health/ready")
async def ready(request: web.Request) -> web.StreamResponse:
    """Readiness: 200 when the gateway can accept input now, else 503 with the reasons."""
    return await health(request)


@routes.get("/health")
@openapi.describe(openapi.HEALTH)
async def health(request: web.Request) -> web.Response:
    """Every dependency's state. The gateway can accept while Kafka is up or the spool has room; PostgreSQL,
    Redis and the archive backend are reported but never block ingest (reads and rate limits degrade instead)."""
    accepting, body = await gateway_health(request.app)
    return json_response(body, status=200 if accepting else 503)


async def gateway_health(app: web.Application) -> tuple[bool, Readiness]:
    """(accepting, body): what /health answers, also evaluated on a timer for `ingestflow_ready`. Each
    dependency is probed at most once per HEALTH_CACHE_S, however often it is asked."""
    ctx = app[CONTEXT]
    probes = {"kafka": ctx.publisher.ping, "postgres": ctx.reads.db.ping, "redis": ctx.redis.ping,
              "archive": app[ARCHIVE].backend.ping}
    deps = list(await asyncio.gather(*(cached_check(ctx.probes, name, probe) for name, probe in probes.items())))
    buffers = ctx.publisher.status()
    spool: dict[str, object] = {"name": "spool", "status": "up" if buffers.spool_writable else "down",
                                "pending": buffers.pending, "failed": buffers.failed}
    if buffers.spool_problem is not None:
        spool["error"] = buffers.spool_problem
    deps.append(spool)
    kafka_up = any(d["name"] == "kafka" and d["status"] == "up" for d in deps)
    accepting = kafka_up or buffers.spool_writable  # ready: a 202 can be honoured
    reasons = [] if accepting else [f"{d['name']}: {d.get('error', 'not writable')}" for d in deps
                                    if d["name"] in ("kafka", "spool") and d["status"] != "up"]
    return accepting, summary(accepting, deps, reasons)


@routes.get("/status/buffers")
@openapi.describe(openapi.STATUS_BUFFERS)
async def status_buffers(request: web.Request) -> web.Response:
    """The disk spool: records waiting for Kafka, corrupt stretches parked in failed/, Kafka's health."""
    return json_response(request.app[CONTEXT].publisher.status().to_json())


@routes.get("/openapi.json")
async def openapi_document(request: web.Request) -> web.Response:
    """This document: every route of the running gateway."""
    return json_response(openapi.build(request.app))


@routes.get("/metrics")
async def metrics(request: web.Request) -> web.Response:
    return web.Response(body=generate_latest(), content_type=CONTENT_TYPE_LATEST.split(";")[0])
