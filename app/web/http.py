"""Request helpers shared by every gateway route (and the reads a worker serves): auth, JSON bodies, client
IP, error responses, and the middleware that maps every error to one response shape."""
from __future__ import annotations

import asyncio
import hmac
import ipaddress
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError

from ingestflow.app.core import serde, tracing
from ingestflow.app.core.errors import (AuthError, ForbiddenError, IngestflowError, PayloadTooLarge, RequestTimeout,
                                        Unavailable, UnsupportedMediaType, ValidationError)
from ingestflow.app.core.observability import EVENTS_REJECTED, REQUEST_SECONDS, REQUESTS
from ingestflow.app.core.settings import IPNetwork

__all__ = ["require_secret", "read_json", "read_body", "client_ip", "json_response", "error_response",
           "errors_middleware", "trace_id"]

log = logging.getLogger(__name__)


def require_secret(request: web.Request, header: str, expected: str) -> None:
    """Constant-time comparison, and one answer for missing and wrong values alike."""
    given = request.headers.get(header, "")
    if not expected or not hmac.compare_digest(given.encode(), expected.encode()):
        raise AuthError(f"missing or invalid {header} header")


async def read_body(request: web.Request, max_bytes: int, timeout_s: float) -> bytes:
    """The whole body, however many TCP segments it comes in: `content.read(n)` answers with what is buffered
    so far, so one call would cut a body that is still on its way. Past `max_bytes` it is a 413 (also without
    a Content-Length, chunked); a client that has not sent it all within `timeout_s` gets a 408, so a stalled
    upload never holds a handler; one that disconnects half-way ends in a 400 nobody reads, not a 500."""
    if request.content_length is not None and request.content_length > max_bytes:
        raise PayloadTooLarge(f"body is {request.content_length} bytes; the limit is {max_bytes}")
    body = bytearray()
    try:
        async with asyncio.timeout(timeout_s):
            while chunk := await request.content.read(max_bytes + 1 - len(body)):
                body += chunk
                if len(body) > max_bytes:
                    raise PayloadTooLarge(f"body exceeds the limit of {max_bytes} bytes")
    except TimeoutError:
        raise RequestTimeout(f"the body did not arrive within {timeout_s:g}s "
                             f"({len(body)} bytes received)") from None
    except (ConnectionError, HttpProcessingError):
        raise ValidationError("body", f"ended after {len(body)} bytes: the connection closed before the "
                                      "whole body arrived") from None
    return bytes(body)


async def read_json(request: web.Request, max_bytes: int, timeout_s: float) -> Any:
    if request.content_type != "application/json":
        raise UnsupportedMediaType(f"Content-Type must be application/json, got {request.content_type!r}")
    body = await read_body(request, max_bytes, timeout_s)
    try:
        return serde.loads(body)
    except serde.DecodeError as exc:
        raise ValidationError("body", f"is not valid JSON: {exc}") from None


def client_ip(request: web.Request, trusted_proxies: tuple[IPNetwork, ...]) -> str:
    """The socket peer, or the first untrusted hop of X-Forwarded-For when the peer is a trusted proxy."""
    peer = request.remote or "unknown"
    if not trusted_proxies or not _trusted(peer, trusted_proxies):
        return peer
    hops = [h.strip() for h in request.headers.get("X-Forwarded-For", "").split(",") if h.strip()]
    for hop in reversed(hops):
        if not _trusted(hop, trusted_proxies):
            return hop
    return hops[0] if hops else peer


def _trusted(address: str, trusted: tuple[IPNetwork, ...]) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in net for net in trusted)


def json_response(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(body=serde.dumps(data), status=status, content_type="application/json",
                        headers=headers)


def error_response(exc: IngestflowError) -> web.Response:
    headers: dict[str, str] = {}
    retry_after = getattr(exc, "retry_after", None)
    if retry_after is not None:
        headers["Retry-After"] = str(max(1, int(retry_after + 0.999)))
    return json_response(exc.to_dict(), status=exc.status, headers=headers)


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
BROWSER_ALLOWED = {"/health", "/health/live", "/health/ready"}
TRACE_ID = web.RequestKey("trace_id", str)


def trace_id(request: web.Request) -> str:
    """The request's id (app/core/tracing.py): what its log lines and the Kafka records it produces carry."""
    return request[TRACE_ID]


@web.middleware
async def errors_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    started = time.perf_counter()
    request_id = tracing.from_http(request.headers.get("traceparent"), request.headers.get("x-request-id"))
    request[TRACE_ID] = request_id
    route = request.match_info.route.resource.canonical if request.match_info.route.resource else "unmatched"
    try:
        # Server-to-server only: a browser (it always sends Origin on cross-site requests) is refused.
        if "Origin" in request.headers and request.path not in BROWSER_ALLOWED:
            raise ForbiddenError("browser requests are not accepted; call this service server-to-server")
        response = await handler(request)
    except IngestflowError as exc:
        EVENTS_REJECTED.labels(reason=type(exc).__name__).inc()
        if isinstance(exc, Unavailable):
            log.warning("unavailable: %s", exc.message, extra={"request_id": request_id})
        response = error_response(exc)
    except web.HTTPException as exc:
        response = json_response({"error": exc.reason, "message": exc.text or exc.reason}, status=exc.status)
    except Exception:
        log.exception("unhandled error on %s", route, extra={"request_id": request_id})
        response = json_response({"error": "InternalError", "message": "internal error",
                                  "requestId": request_id}, status=500)
    response.headers["x-request-id"] = request_id
    REQUESTS.labels(route=route, status=str(response.status)).inc()
    REQUEST_SECONDS.labels(route=route, method=request.method).observe(time.perf_counter() - started)
    return response
