"""The OpenAPI 3.0 document of the gateway, built in one place from the live router.

Every route registered on the application appears (so endpoints other modules add are never missing); a
handler decorated with `describe(spec)` contributes its full operation (request body, parameters,
answers), any other handler a generic one built from its path parameters and docstring. The property-based
fuzzer (tests/integration/test_gateway_fuzz.py) drives the running gateway from this document.
"""
from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any, TypeVar

from aiohttp import web

from ingestflow.schemas.events import EVENT_TYPES

__all__ = ["describe", "build", "INGEST_EVENTS", "INGEST_CRAWL", "INGEST_RECORDS", "INGEST_STRIPE",
           "HEALTH", "STATUS_BUFFERS", "READ_RULE_METRICS", "READ_AUTHOR_METRICS", "READ_LEADERBOARD",
           "READ_TRENDING", "READ_SEARCH"]

F = TypeVar("F", bound=Callable[..., Any])
Spec = dict[str, Any]
_PARAM = re.compile(r"{([^}:]+)(?::[^}]*)?}")


def describe(spec: Spec) -> Callable[[F], F]:
    """Attach an OpenAPI operation to a handler (read by build())."""
    def mark(handler: F) -> F:
        handler.__openapi__ = spec  # type: ignore[attr-defined]
        return handler
    return mark


def _json(schema: Spec) -> Spec:
    return {"content": {"application/json": {"schema": schema}}}


ERROR = {"type": "object", "properties": {"error": {"type": "string"}, "message": {"type": "string"},
                                          "field": {"type": "string"}, "reason": {"type": "string"}},
         "required": ["error"]}
_STR = {"type": "string", "minLength": 1, "maxLength": 128}
_ERRORS = {
    "400": {"description": "invalid input: `field` names the path, `reason` says why", **_json(ERROR)},
    "401": {"description": "missing or wrong x-app-token", **_json(ERROR)},
    "403": {"description": "browser request (Origin header)", **_json(ERROR)},
    "413": {"description": "body or an item over the size limit", **_json(ERROR)},
    "415": {"description": "Content-Type is not application/json", **_json(ERROR)},
    "429": {"description": "per-IP rate limit; see Retry-After and RateLimit-* headers", **_json(ERROR)},
    "503": {"description": "the disk spool is full or unwritable; retry after Retry-After", **_json(ERROR)},
}
_QOS = {"bufferMs": {"type": "integer", "minimum": 0, "maximum": 60000,
                     "description": "fire-and-forget: answer after the local append, send within this delay"},
        "bufferMax": {"type": "integer", "minimum": 1, "maximum": 100000,
                      "description": "fire-and-forget: send once this many items wait"}}
_TOKEN = [{"name": "x-app-token", "in": "header", "required": True, "schema": {"type": "string"}}]
# The request's trace id, carried in the `trace-id` header of every record it produces (schemas/topics.py) and
# answered in `x-request-id`; an invalid value is ignored and a new id made.
_TRACE = [{"name": "traceparent", "in": "header", "required": False, "schema": {"type": "string"},
           "description": "W3C Trace Context: its trace id becomes the request's trace id"},
          {"name": "x-request-id", "in": "header", "required": False,
           "schema": {"type": "string", "pattern": "^[A-Za-z0-9._:-]{1,64}$"},
           "description": "the request's trace id when no valid traceparent is given"}]
_ACCEPTED = {"type": "object", "required": ["accepted", "stored"],
             "properties": {"accepted": {"type": "integer"}, "stored": {"enum": ["kafka", "spool"]},
                            "buffered": {"type": "boolean"}}}


def _ingest(summary: str, body: Spec) -> Spec:
    return {"summary": summary, "parameters": _TOKEN + _TRACE, "requestBody": {"required": True, **_json(body)},
            "responses": {"202": {"description": "every item is in Kafka or fsynced to the spool",
                                  **_json(_ACCEPTED)}, **_ERRORS}}


INGEST_EVENTS = _ingest("Analytics events on rules, keyed by ruleId", {
    "type": "object", "required": ["events"], "properties": {
        "events": {"type": "array", "minItems": 1, "items": {
            "type": "object", "required": ["type", "ruleId"], "properties": {
                "type": {"enum": list(EVENT_TYPES)}, "ruleId": _STR,
                "userId": _STR, "authorId": _STR, "ts": {"type": "string", "format": "date-time"},
                "idempotencyKey": {"type": "string", "minLength": 1, "maxLength": 256}}}},
        **_QOS}})
INGEST_CRAWL = _ingest("Crawled items of one source, keyed sourceId:externalId", {
    "type": "object", "required": ["sourceId", "items"], "properties": {
        "sourceId": _STR,
        "items": {"type": "array", "minItems": 1, "items": {
            "type": "object", "required": ["externalId", "url", "title"], "properties": {
                "externalId": _STR, "url": {"type": "string", "pattern": "^https?://", "maxLength": 2048},
                "title": {"type": "string", "minLength": 1, "maxLength": 1024},
                "summary": {"type": "string", "maxLength": 10000}, "raw": {"type": "object"}}}},
        **_QOS}})
INGEST_RECORDS = _ingest("A user's website records for the archive, keyed by user_id (503 while "
                         "LIGHTHOUSE_PRIVATE_KEY is not set: nothing would archive them)", {
    "type": "object", "required": ["user_id", "records"], "properties": {
        "user_id": {"type": "integer", "minimum": 0},
        "records": {"type": "array", "minItems": 1, "items": {
            "type": "object", "required": ["wuid", "cleaned"], "properties": {
                "wuid": {"type": "string", "minLength": 1, "maxLength": 256}, "cleaned": {"type": "object"},
                "context": {"type": "string"}}}},
        **_QOS}})
INGEST_STRIPE = {
    "summary": "Stripe webhook: verified against Stripe-Signature, then produced unchanged",
    "parameters": [{"name": "Stripe-Signature", "in": "header", "required": True, "schema": {"type": "string"},
                    "description": "t=<unix time>,v1=<HMAC-SHA256 hex of '{t}.{raw body}'>[,v1=...]"}, *_TRACE],
    "requestBody": {"required": True, **_json({
        "type": "object", "required": ["id", "type", "created", "data"], "properties": {
            "id": _STR, "type": _STR, "created": {"type": "integer", "minimum": 0},
            "data": {"type": "object", "required": ["object"], "properties": {"object": {"type": "object"}}}}})},
    "responses": {"200": {"description": "verified and stored (Kafka or spool)"},
                  "400": _ERRORS["400"], "404": {"description": "STRIPE_WEBHOOK_SECRET is not configured"},
                  "413": _ERRORS["413"], "415": _ERRORS["415"], "429": _ERRORS["429"], "503": _ERRORS["503"]}}


def _query(name: str, schema: Spec, description: str, *, required: bool = False) -> Spec:
    return {"name": name, "in": "query", "required": required, "schema": schema, "description": description}


def _read(summary: str, *parameters: Spec) -> Spec:
    return {"summary": summary, "parameters": list(parameters),
            "responses": {"200": {"description": "success", **_json({"type": "object"})}, "400": _ERRORS["400"],
                          "429": _ERRORS["429"], "503": _ERRORS["503"]}}


_DAY = {"type": "string", "format": "date"}
_RANGE = (_query("from", _DAY, "first day, inclusive (default: 29 days before `to`)"),
          _query("to", _DAY, "last day, inclusive (default: today, UTC); at most 366 days from `from`"))


def _limit(most: int) -> Spec:
    return _query("limit", {"type": "integer", "minimum": 1, "maximum": most}, "entries, ASCII digits (default 10)")


READ_RULE_METRICS = _read("A rule's daily metrics and their totals over a date range", *_RANGE)
READ_AUTHOR_METRICS = _read("An author's daily metrics (donations included) over a date range", *_RANGE)
READ_LEADERBOARD = _read(
    "Top rules or authors by score over the period ending on `date`",
    _query("scope", {"enum": ["rules", "authors"]}, "what is ranked (default rules)"), _limit(1000),
    _query("date", _DAY, "the period's last day (default: today, UTC)"))
READ_TRENDING = _read("Top rules or authors by decayed score", _limit(1000))
READ_SEARCH = _read("Full-text search over crawl items",
                    _query("q", {"type": "string", "minLength": 1, "maxLength": 256}, "words, \"phrases\", -exclusions",
                           required=True), _limit(100))
HEALTH = {"summary": "Each dependency with its state; 503 when the gateway cannot accept input",
          "responses": {"200": {"description": "accepting (Kafka up, or the spool has room)"},
                        "503": {"description": "cannot accept: Kafka down and the spool full or unwritable"}}}
STATUS_BUFFERS = {"summary": "The disk spool: pending and failed records, its size and bound, whether Kafka is healthy",
                  "responses": {"200": {"description": "spool state", **_json({
                      "type": "object", "required": ["pending", "failed", "kafkaHealthy", "spoolBytes",
                                                     "spoolMaxBytes", "spoolWritable"], "properties": {
                          "pending": {"type": "integer"}, "failed": {"type": "integer"},
                          "kafkaHealthy": {"type": "boolean"}, "spoolBytes": {"type": "integer"},
                          "spoolMaxBytes": {"type": "integer"}, "spoolWritable": {"type": "boolean"}}})}}}


def _generic(method: str, path: str, handler: Any) -> Spec:
    doc = (handler.__doc__ or "").strip().splitlines()
    spec: Spec = {"summary": doc[0] if doc else f"{method} {path}",
                  "responses": {"200": {"description": "success"}, "400": _ERRORS["400"],
                                "401": {"description": "missing or wrong credentials"}}}
    if method in ("POST", "PUT", "PATCH"):
        spec["requestBody"] = {"required": False, **_json({"type": "object"})}
    return spec


def build(app: web.Application, *, title: str = "ingestflow gateway", version: str = "1") -> Spec:
    paths: dict[str, dict[str, Spec]] = {}
    for route in app.router.routes():
        method = route.method.upper()
        resource = route.resource
        if method in ("HEAD", "OPTIONS", "*") or resource is None:
            continue
        path = _PARAM.sub(r"{\1}", resource.canonical)
        spec = dict(getattr(route.handler, "__openapi__", None) or _generic(method, path, route.handler))
        names = _PARAM.findall(resource.canonical)
        if names:
            spec["parameters"] = [*spec.get("parameters", []),
                                  *({"name": n, "in": "path", "required": True,
                                     "schema": {"type": "string", "minLength": 1}} for n in names)]
        spec.setdefault("operationId", f"{method.lower()}{re.sub(r'[^A-Za-z0-9]+', '_', path)}")
        paths.setdefault(path, {})[method.lower()] = spec
    return {"openapi": "3.0.3", "info": {"title": title, "version": version},
            "servers": [{"url": "/"}], "paths": dict(sorted(paths.items()))}
