"""Operational endpoints: health, Prometheus metrics, spool status, the OpenAPI document."""
from __future__ import annotations

import asyncio

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from . import openapi
from .context import CONTEXT
from .health import check
from .routes_archive import ARCHIVE
from .http import json_response

__all__ = ["routes"]

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
    ctx = request.app[CONTEXT]
    deps = list(await asyncio.gather(check("kafka", ctx.publisher.ping), check("postgres", ctx.db.ping),
                                     check("redis", ctx.redis.ping),
                                     check("archive", request.app[ARCHIVE].backend.ping)))
    buffers = ctx.publisher.status()
    deps.append({"name": "spool", "status": "up" if buffers.spool_writable else "down",
                 "pending": buffers.pending, "failed": buffers.failed})
    kafka_up = any(d["name"] == "kafka" and d["status"] == "up" for d in deps)
    accepting = kafka_up or buffers.spool_writable
    status = "ok" if all(d["status"] == "up" for d in deps) else "degraded" if accepting else "unavailable"
    body: dict[str, object] = {"status": status, "accepting": accepting, "dependencies": deps}
    if not accepting:
        body["reasons"] = [f"{d['name']}: {d.get('error', 'not writable')}" for d in deps
                           if d["name"] in ("kafka", "spool") and d["status"] != "up"]
    return json_response(body, status=200 if accepting else 503)


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
