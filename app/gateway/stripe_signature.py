"""Stripe webhook signatures, verified exactly as Stripe specifies (stripe.com/docs/webhooks#verify-manually).

`Stripe-Signature: t=1700000000,v1=<hex>,v1=<hex>,v0=...`: the signed payload is `"{t}.{raw body}"`, the
signature HMAC-SHA256 with the endpoint secret; any one `v1` matching is enough (Stripe sends several while a
secret is rolled); other schemes are ignored; a timestamp older than the tolerance is refused (replay
protection), and so is one further ahead than the tolerance (a signature made for a future time would
otherwise stay replayable until then). Comparisons are constant-time. The secret never appears in an error.
"""
from __future__ import annotations

import hashlib
import hmac

from ingestflow.app.core.errors import ValidationError

__all__ = ["verify", "sign", "TOLERANCE_S", "HEADER"]

TOLERANCE_S = 300
HEADER = "Stripe-Signature"


def sign(payload: bytes, secret: str, timestamp: int) -> str:
    """The v1 signature of `payload` at `timestamp` (what Stripe computes; tests and tools use it)."""
    return hmac.new(secret.encode(), f"{timestamp}.".encode() + payload, hashlib.sha256).hexdigest()


def verify(header: str | None, payload: bytes, secret: str, now: float, tolerance: int = TOLERANCE_S) -> int:
    """Return the signed timestamp, or raise ValidationError (400) naming what is wrong."""
    if not header:
        raise ValidationError(HEADER, "header is missing")
    timestamp: int | None = None
    signatures: list[str] = []
    for part in header.split(","):
        name, sep, value = part.strip().partition("=")
        if not sep:
            continue
        if name == "t":
            try:
                timestamp = int(value)
            except ValueError:
                raise ValidationError(HEADER, "t= is not a Unix timestamp") from None
        elif name == "v1":
            signatures.append(value)
    if timestamp is None:
        raise ValidationError(HEADER, "has no t= timestamp")
    if not signatures:
        raise ValidationError(HEADER, "has no v1= signature")
    expected = sign(payload, secret, timestamp).encode()
    # Compare against every candidate (no early exit), each in constant time.
    matched = False
    for candidate in signatures:
        matched |= hmac.compare_digest(expected, candidate.encode("ascii", "replace"))
    if not matched:
        raise ValidationError(HEADER, "no v1 signature matches the payload")
    if timestamp < now - tolerance:
        raise ValidationError(HEADER, f"timestamp is older than the {tolerance}s tolerance")
    if timestamp > now + tolerance:
        raise ValidationError(HEADER, f"timestamp is more than the {tolerance}s tolerance in the future")
    return timestamp
