"""POST /ingest/*: authenticate, rate-limit, validate the whole request, then publish all of it or nothing.

A `202` means every item is acknowledged by Kafka or fsynced to the disk spool (see publisher.py). With
`bufferMs`/`bufferMax` in the body (fire-and-forget, QoS 0) the answer comes after the local append and
the items go to Kafka in batches. Every record produced carries the request's trace id in its `trace-id`
header, and the one log line of an accepted request names it (`request_id`), so an operator can follow an
item from here to the rows the worker writes.
"""
from __future__ import annotations

import logging
from datetime import datetime, timedelta, timezone
from typing import Any

from aiohttp import web

from ingestflow.app.clients.kafka import OutgoingMessage
from ingestflow.app.core import serde, tracing
from ingestflow.app.core.errors import NotFound, RateLimited, Unavailable, UnsupportedMediaType, ValidationError
from ingestflow.app.core.observability import EVENTS_ACCEPTED, EVENTS_REJECTED
from ingestflow.app.web import openapi
from ingestflow.app.web.http import (client_ip, error_response, json_response, read_body, read_json, require_secret,
                                     trace_id)
from ingestflow.app.web.ratelimit import Decision
from ingestflow.schemas import crawl as crawl_schema
from ingestflow.schemas import events as event_schema
from ingestflow.schemas import fields
from ingestflow.schemas import records as records_schema
from ingestflow.schemas import stripe as stripe_schema
from ingestflow.schemas.topics import CRAWL, EVENTS, RECORDS, STRIPE

from .context import CONTEXT, GatewayContext
from .publisher import Qos
from .stripe_signature import HEADER as STRIPE_HEADER
from .stripe_signature import verify as verify_stripe

__all__ = ["routes", "parse_qos", "EARLIEST_TS", "MAX_FUTURE"]

log = logging.getLogger(__name__)
routes = web.RouteTableDef()
TOKEN = "x-app-token"
EARLIEST_TS = datetime(2000, 1, 1, tzinfo=timezone.utc)
MAX_FUTURE = timedelta(days=1)
MAX_BUFFER_MS = 60_000
MAX_BUFFER_ITEMS = 100_000


class _Refused(Exception):
    def __init__(self, response: web.Response) -> None:
        self.response = response


async def _admit(request: web.Request, endpoint: str) -> tuple[GatewayContext, str, Decision]:
    """Token first (constant-time), then the caller's rate-limit budget for this endpoint class."""
    ctx = request.app[CONTEXT]
    require_secret(request, TOKEN, ctx.reads.settings.ingest_app_token.get())
    ip = client_ip(request, ctx.reads.settings.trusted_proxies)
    decision = await ctx.reads.limiter.hit(endpoint, ip)
    if not decision.allowed:
        exc = RateLimited(f"rate limit of {decision.limit} requests a minute reached for {endpoint}",
                          retry_after=decision.reset_s, limit=decision.limit)
        EVENTS_REJECTED.labels(reason="RateLimited").inc()
        response = error_response(exc)
        response.headers.update(decision.headers())
        raise _Refused(response)
    return ctx, ip, decision


def parse_qos(body: dict[str, Any]) -> Qos | None:
    """`bufferMs` / `bufferMax` select fire-and-forget; either alone takes the other's default."""
    if body.get("bufferMs") is None and body.get("bufferMax") is None:
        return None
    ms = fields.integer(body, "bufferMs", "") if body.get("bufferMs") is not None else 1000
    most = fields.integer(body, "bufferMax", "", minimum=1) if body.get("bufferMax") is not None else 500
    if ms > MAX_BUFFER_MS:
        raise ValidationError("bufferMs", f"must be at most {MAX_BUFFER_MS}")
    if most > MAX_BUFFER_ITEMS:
        raise ValidationError("bufferMax", f"must be at most {MAX_BUFFER_ITEMS}")
    return Qos(buffer_ms=ms, buffer_max=most)


def _message(request: web.Request, topic: str, key: bytes, value: bytes,
             timestamp_ms: int | None = None) -> OutgoingMessage:
    """A record of this request: its trace id in the headers."""
    return OutgoingMessage(topic, key, value, timestamp_ms, tracing.headers(trace_id(request)))


async def _publish(request: web.Request, messages: list[OutgoingMessage], kind: str, qos: Qos | None = None
                   ) -> str:
    where = await request.app[CONTEXT].publisher.publish(messages, qos)
    EVENTS_ACCEPTED.labels(kind=kind).inc(len(messages))
    log.info("accepted %d %s item(s) for %s (held in %s)", len(messages), kind,
             messages[0].topic if messages else "-", where, extra={"request_id": trace_id(request)})
    return where


async def _accepted(request: web.Request, messages: list[OutgoingMessage], kind: str, qos: Qos | None,
                    decision: Decision, answer: dict[str, Any]) -> web.Response:
    where = await _publish(request, messages, kind, qos)
    answer.update(accepted=len(messages), stored=where, buffered=qos is not None)
    return json_response(answer, status=202, headers=decision.headers())


def _guarded(handler: Any) -> Any:
    async def run(request: web.Request) -> web.Response:
        try:
            return await handler(request)  # type: ignore[no-any-return]
        except _Refused as refused:
            return refused.response
    run.__doc__ = handler.__doc__
    run.__name__ = handler.__name__
    if hasattr(handler, "__openapi__"):
        run.__openapi__ = handler.__openapi__  # type: ignore[attr-defined]
    return run


async def _json_object(request: web.Request, ctx: GatewayContext) -> dict[str, Any]:
    return fields.obj(await read_json(request, ctx.reads.settings.max_body_bytes, ctx.reads.settings.body_timeout_s), "body")


@routes.post("/ingest/events")
@_guarded
@openapi.describe(openapi.INGEST_EVENTS)
async def ingest_events(request: web.Request) -> web.Response:
    """Analytics events, keyed by ruleId."""
    ctx, ip, decision = await _admit(request, "events")
    body = await _json_object(request, ctx)
    items = fields.array(body, "events", "", ctx.reads.settings.max_batch_items)
    qos = parse_qos(body)
    now = ctx.reads.clock.now()
    parsed = [event_schema.from_request(raw, f"events[{i}]", now, ip) for i, raw in enumerate(items)]
    for i, event in enumerate(parsed):
        if not EARLIEST_TS <= event.ts <= now + MAX_FUTURE:
            raise ValidationError(f"events[{i}].ts", "must be after 2000-01-01 and at most one day ahead")
    messages = [_message(request, EVENTS.name, e.key, e.encode(), e.timestamp_ms) for e in parsed]
    return await _accepted(request, messages, "event", qos, decision, {"ids": [e.id for e in parsed]})


@routes.post("/ingest/crawl")
@_guarded
@openapi.describe(openapi.INGEST_CRAWL)
async def ingest_crawl(request: web.Request) -> web.Response:
    """Crawled items of one source, keyed sourceId:externalId."""
    ctx, _, decision = await _admit(request, "crawl")
    body = await _json_object(request, ctx)
    qos = parse_qos(body)
    items = crawl_schema.from_request(body, ctx.reads.clock.now(), ctx.reads.settings.max_batch_items)
    messages = [_message(request, CRAWL.name, item.key, item.encode()) for item in items]
    return await _accepted(request, messages, "crawl", qos, decision, {"keys": [i.key.decode() for i in items]})


@routes.post("/ingest/records")
@_guarded
@openapi.describe(openapi.INGEST_RECORDS)
async def ingest_records(request: web.Request) -> web.Response:
    """A user's website records for the archive, keyed by user_id."""
    ctx, _, decision = await _admit(request, "records")
    if not ctx.reads.settings.lighthouse_private_key:
        raise Unavailable("the archive is not configured (LIGHTHOUSE_PRIVATE_KEY is not set): records would "
                          "not be archived, so none are accepted")
    body = await _json_object(request, ctx)
    qos = parse_qos(body)
    records = records_schema.from_request(body, ctx.reads.settings.max_batch_items)
    messages = [_message(request, RECORDS.name, r.key, r.encode()) for r in records]
    return await _accepted(request, messages, "record", qos, decision, {"wuids": [r.wuid for r in records]})


@routes.post("/ingest/stripe/webhook")
@openapi.describe(openapi.INGEST_STRIPE)
async def ingest_stripe(request: web.Request) -> web.Response:
    """Stripe events, produced unchanged only after their signature checked out; keyed by event id."""
    ctx = request.app[CONTEXT]
    secret = ctx.reads.settings.stripe_webhook_secret
    if not secret:
        raise NotFound("Stripe webhooks are not configured on this gateway (STRIPE_WEBHOOK_SECRET)")
    # Before the body is read or an HMAC computed: the route is open to anyone who can reach it.
    await ctx.reads.limiter.admit("webhook", client_ip(request, ctx.reads.settings.trusted_proxies))
    if request.content_type != "application/json":
        raise UnsupportedMediaType(f"Content-Type must be application/json, got {request.content_type!r}")
    payload = await read_body(request, ctx.reads.settings.max_body_bytes, ctx.reads.settings.body_timeout_s)
    verify_stripe(request.headers.get(STRIPE_HEADER), payload, secret.get(), ctx.reads.clock.time())
    try:
        event = stripe_schema.parse(serde.loads(payload))
    except serde.DecodeError as exc:
        raise ValidationError("body", f"is not valid JSON: {exc}") from None
    where = await _publish(request, [_message(request, STRIPE.name, event.key, payload)], "stripe")
    return json_response({"received": True, "id": event.id, "stored": where}, status=200)
