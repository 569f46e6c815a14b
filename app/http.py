"""Request helpers shared by every gateway route: auth, JSON bodies, client IP, error responses."""
from __future__ import annotations

import hmac
import ipaddress
from typing import Any

from aiohttp import web

from . import serde
from .errors import AuthError, IngestflowError, PayloadTooLarge, UnsupportedMediaType, ValidationError

__all__ = ["require_secret", "read_json", "read_body", "client_ip", "json_response", "error_response"]


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
