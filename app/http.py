"""Request helpers shared by every gateway route (and the reads a worker serves): auth, JSON bodies, client
IP, error responses, and the middleware that maps every error to one response shape."""
from __future__ import annotations

import hmac
import ipaddress
import logging
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from . import serde
from .errors import (AuthError, ForbiddenError, IngestflowError, PayloadTooLarge, Unavailable, UnsupportedMediaType,
                     ValidationError)
from .observability import EVENTS_REJECTED, REQUESTS

__all__ = ["require_secret", "read_json", "read_body", "client_ip", "json_response", "error_response",
           "errors_middleware"]

log = logging.getLogger(__name__)


def require_secret(request: web.Request, header: str, expected: str) -> None:
    """Constant-time comparison, and one answer for missing and wrong values alike."""
    given = request.headers.get(header, "")
    if not expected or not hmac.compare_digest(given.encode(), expected.encode()):
        raise AuthError(f"missing or invalid {header} header")


async def read_body(request: web.Request, max_bytes: int) -> bytes:
    if request.content_length is not None and request.content_length > max_bytes:
        raise PayloadTooLarge(f"body is {request.content_length} bytes; the limit is {max_bytes}")
    body = await request.content.read(max_bytes + 1)
    if len(body) > max_bytes:
        raise PayloadTooLarge(f"body exceeds the limit of {max_bytes} bytes")
    return body


async def read_json(request: web.Request, max_bytes: int) -> Any:
    if request.content_type != "application/json":
        raise UnsupportedMediaType(f"Content-Type must be application/json, got {request.content_type!r}")
    body = await read_body(request, max_bytes)
    try:
        return serde.loads(body)
    except serde.DecodeError as exc:
        raise ValidationError("body", f"is not valid JSON: {exc}") from None


def client_ip(request: web.Request, trusted_proxies: tuple[str, ...]) -> str:
    """The socket peer, or the first untrusted hop of X-Forwarded-For when the peer is a trusted proxy."""
    peer = request.remote or "unknown"
    if not trusted_proxies or not _trusted(peer, trusted_proxies):
        return peer
    hops = [h.strip() for h in request.headers.get("X-Forwarded-For", "").split(",") if h.strip()]
    for hop in reversed(hops):
        if not _trusted(hop, trusted_proxies):
            return hop
    return hops[0] if hops else peer


def _trusted(address: str, trusted: tuple[str, ...]) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in ipaddress.ip_network(net, strict=False) for net in trusted)


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


@web.middleware
async def errors_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    request_id = request.headers.get("x-request-id") or uuid.uuid4().hex
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
    return response
