"""POST /ingest/*: validate the whole request, then publish all of it or nothing."""
from __future__ import annotations

from aiohttp import web

from ingestflow.schemas import events as event_schema
from ingestflow.schemas import fields
from ingestflow.schemas.topics import EVENTS

from .context import CONTEXT
from .http import client_ip, json_response, read_json, require_secret
from .kafka import OutgoingMessage
from .observability import EVENTS_ACCEPTED

__all__ = ["routes"]

routes = web.RouteTableDef()


@routes.post("/ingest/events")
async def ingest_events(request: web.Request) -> web.Response:
    ctx = request.app[CONTEXT]
    require_secret(request, "x-app-token", ctx.settings.ingest_app_token.get())
    body = fields.obj(await read_json(request, ctx.settings.max_body_bytes), "body")
    items = fields.array(body, "events", "", ctx.settings.max_batch_items)
    now, ip = ctx.clock.now(), client_ip(request, ctx.settings.trusted_proxies)
    parsed = [event_schema.from_request(raw, f"events[{i}]", now, ip) for i, raw in enumerate(items)]
    await ctx.publisher.publish(
        [OutgoingMessage(EVENTS.name, e.key, e.encode(), e.timestamp_ms) for e in parsed])
    EVENTS_ACCEPTED.labels(kind="event").inc(len(parsed))
    return json_response({"accepted": len(parsed), "ids": [e.id for e in parsed]}, status=202)
