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

__all__ = ["describe", "build", "INGEST_EVENTS", "INGEST_CRAWL", "INGEST_RECORDS", "INGEST_STRIPE",
           "HEALTH", "STATUS_BUFFERS"]

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
_ACCEPTED = {"type": "object", "required": ["accepted", "stored"],
             "properties": {"accepted": {"type": "integer"}, "stored": {"enum": ["kafka", "spool"]},
                            "buffered": {"type": "boolean"}}}


def _ingest(summary: str, body: Spec) -> Spec:
    return {"summary": summary, "parameters": _TOKEN, "requestBody": {"required": True, **_json(body)},
            "responses": {"202": {"description": "every item is in Kafka or fsynced to the spool",
                                  **_json(_ACCEPTED)}, **_ERRORS}}


INGEST_EVENTS = _ingest("Analytics events on rules, keyed by ruleId", {
    "type": "object", "required": ["events"], "properties": {
        "events": {"type": "array", "minItems": 1, "items": {
            "type": "object", "required": ["type", "ruleId"], "properties": {
                "type": {"enum": ["VIEW", "COPY", "SAVE", "FORK", "VOTE"]}, "ruleId": _STR,
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
INGEST_RECORDS = _ingest("A user's website records for the archive, keyed by user_id", {
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
                    "description": "t=<unix time>,v1=<HMAC-SHA256 hex of '{t}.{raw body}'>[,v1=...]"}],
    "requestBody": {"required": True, **_json({
        "type": "object", "required": ["id", "type", "created", "data"], "properties": {
            "id": _STR, "type": _STR, "created": {"type": "integer", "minimum": 0},
            "data": {"type": "object", "required": ["object"], "properties": {"object": {"type": "object"}}}}})},
    "responses": {"200": {"description": "verified and stored (Kafka or spool)"},
                  "400": _ERRORS["400"], "404": {"description": "STRIPE_WEBHOOK_SECRET is not configured"},
                  "413": _ERRORS["413"], "415": _ERRORS["415"], "503": _ERRORS["503"]}}
HEALTH = {"summary": "Each dependency with its state; 503 when the gateway cannot accept input",
          "responses": {"200": {"description": "accepting (Kafka up, or the spool has room)"},
                        "503": {"description": "cannot accept: Kafka down and the spool full or unwritable"}}}
STATUS_BUFFERS = {"summary": "The disk spool: pending and failed records, whether Kafka is healthy",
                  "responses": {"200": {"description": "spool state", **_json({
                      "type": "object", "required": ["pending", "failed", "kafkaHealthy"], "properties": {
                          "pending": {"type": "integer"}, "failed": {"type": "integer"},
                          "kafkaHealthy": {"type": "boolean"}}})}}}


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
