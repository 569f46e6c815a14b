"""POST /ingest/*: authenticate, rate-limit, validate the whole request, then publish all of it or nothing.

A `202` means every item is acknowledged by Kafka or fsynced to the disk spool (see publisher.py). With
`bufferMs`/`bufferMax` in the body (fire-and-forget, QoS 0) the answer comes after the local append and
the items go to Kafka in batches.
"""
from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any

from aiohttp import web

from ingestflow.schemas import crawl as crawl_schema
from ingestflow.schemas import events as event_schema
from ingestflow.schemas import fields
from ingestflow.schemas import records as records_schema
from ingestflow.schemas import stripe as stripe_schema
from ingestflow.schemas.topics import CRAWL, EVENTS, RECORDS, STRIPE

from . import openapi, serde
from .context import CONTEXT, GatewayContext
from .errors import NotFound, RateLimited, UnsupportedMediaType, ValidationError
from .http import client_ip, error_response, json_response, read_body, read_json, require_secret
from .kafka import OutgoingMessage
from .observability import EVENTS_ACCEPTED, EVENTS_REJECTED
from .publisher import Qos
from .ratelimit import Decision
from .stripe_signature import HEADER as STRIPE_HEADER
from .stripe_signature import verify as verify_stripe

__all__ = ["routes", "parse_qos", "EARLIEST_TS", "MAX_FUTURE"]

routes = web.RouteTableDef()
TOKEN = "x-app-token"
EARLIEST_TS = datetime(2000, 1, 1, tzinfo=timezone.utc)
MAX_FUTURE = timedelta(days=1)
MAX_BUFFER_MS = 60_000
MAX_BUFFER_ITEMS = 100_000
MAX_DEPTH = 254  # orjson's serialization recursion limit


class _Refused(Exception):
    def __init__(self, response: web.Response) -> None:
        self.response = response


async def _admit(request: web.Request, endpoint: str) -> tuple[GatewayContext, str, Decision]:
    """Token first (constant-time), then the caller's rate-limit budget for this endpoint class."""
    ctx = request.app[CONTEXT]
    require_secret(request, TOKEN, ctx.settings.ingest_app_token.get())
    ip = client_ip(request, ctx.settings.trusted_proxies)
    decision = await ctx.limiter.hit(endpoint, ip)
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


async def _publish(ctx: GatewayContext, messages: list[OutgoingMessage], kind: str, qos: Qos | None,
                   decision: Decision, answer: dict[str, Any]) -> web.Response:
    where = await ctx.publisher.publish(messages, qos)
    EVENTS_ACCEPTED.labels(kind=kind).inc(len(messages))
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


def _encode(item: crawl_schema.CrawlItem | records_schema.WebsiteRecord, path: str) -> bytes:
    try:
        return item.encode()
    except TypeError:  # orjson refuses to write JSON nested deeper than it reads
        raise ValidationError(path, f"nests deeper than {MAX_DEPTH} levels") from None


@routes.post("/ingest/events")
@_guarded
@openapi.describe(openapi.INGEST_EVENTS)
async def ingest_events(request: web.Request) -> web.Response:
    """Analytics events, keyed by ruleId."""
    ctx, ip, decision = await _admit(request, "events")
    body = fields.obj(await read_json(request, ctx.settings.max_body_bytes), "body")
    items = fields.array(body, "events", "", ctx.settings.max_batch_items)
    qos = parse_qos(body)
    now = ctx.clock.now()
    parsed = [event_schema.from_request(raw, f"events[{i}]", now, ip) for i, raw in enumerate(items)]
    for i, event in enumerate(parsed):
        if not EARLIEST_TS <= event.ts <= now + MAX_FUTURE:
            raise ValidationError(f"events[{i}].ts", "must be after 2000-01-01 and at most one day ahead")
    messages = [OutgoingMessage(EVENTS.name, e.key, e.encode(), e.timestamp_ms) for e in parsed]
    return await _publish(ctx, messages, "event", qos, decision, {"ids": [e.id for e in parsed]})


@routes.post("/ingest/crawl")
@_guarded
@openapi.describe(openapi.INGEST_CRAWL)
async def ingest_crawl(request: web.Request) -> web.Response:
    """Crawled items of one source, keyed sourceId:externalId."""
    ctx, _, decision = await _admit(request, "crawl")
    body = fields.obj(await read_json(request, ctx.settings.max_body_bytes), "body")
    qos = parse_qos(body)
    items = crawl_schema.from_request(body, ctx.clock.now(), ctx.settings.max_batch_items)
    messages = [OutgoingMessage(CRAWL.name, item.key, _encode(item, f"items[{n}].raw"))
                for n, item in enumerate(items)]
    return await _publish(ctx, messages, "crawl", qos, decision,
                          {"keys": [i.key.decode() for i in items]})


@routes.post("/ingest/records")
@_guarded
@openapi.describe(openapi.INGEST_RECORDS)
async def ingest_records(request: web.Request) -> web.Response:
    """A user's website records for the archive, keyed by user_id."""
    ctx, _, decision = await _admit(request, "records")
    body = fields.obj(await read_json(request, ctx.settings.max_body_bytes), "body")
    qos = parse_qos(body)
    records = records_schema.from_request(body, ctx.settings.max_batch_items)
    messages = [OutgoingMessage(RECORDS.name, r.key, _encode(r, f"records[{n}].cleaned"))
                for n, r in enumerate(records)]
    return await _publish(ctx, messages, "record", qos, decision, {"wuids": [r.wuid for r in records]})


@routes.post("/ingest/stripe/webhook")
@openapi.describe(openapi.INGEST_STRIPE)
async def ingest_stripe(request: web.Request) -> web.Response:
    """Stripe events, produced unchanged only after their signature checked out; keyed by event id."""
    ctx = request.app[CONTEXT]
    secret = ctx.settings.stripe_webhook_secret
    if not secret:
        raise NotFound("Stripe webhooks are not configured on this gateway (STRIPE_WEBHOOK_SECRET)")
    if request.content_type != "application/json":
        raise UnsupportedMediaType(f"Content-Type must be application/json, got {request.content_type!r}")
    payload = await read_body(request, ctx.settings.max_body_bytes)
    verify_stripe(request.headers.get(STRIPE_HEADER), payload, secret.get(), ctx.clock.time())
    try:
        event = stripe_schema.parse(serde.loads(payload))
    except serde.DecodeError as exc:
        raise ValidationError("body", f"is not valid JSON: {exc}") from None
    where = await ctx.publisher.publish([OutgoingMessage(STRIPE.name, event.key, payload)])
    EVENTS_ACCEPTED.labels(kind="stripe").inc()
    return json_response({"received": True, "id": event.id, "stored": where}, status=200)
