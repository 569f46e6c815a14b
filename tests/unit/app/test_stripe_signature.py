"""Stripe-Signature verification against signatures computed the way Stripe documents them."""
from __future__ import annotations

import hashlib
import hmac

import pytest

from ingestflow.app.core.errors import ValidationError
from ingestflow.app.gateway.stripe_signature import TOLERANCE_S, verify

SECRET = "whsec_test_secret_value"
BODY = b'{"id": "evt_1", "type": "charge.succeeded", "created": 1700000000, "data": {"object": {}}}'
NOW = 1_700_000_100


def stripe_sig(t: int, body: bytes = BODY, secret: str = SECRET) -> str:
    # Independent of the code under test: Stripe's documented recipe.
    return hmac.new(secret.encode(), f"{t}.{body.decode()}".encode(), hashlib.sha256).hexdigest()


def test_valid_signature_returns_its_timestamp() -> None:
    assert verify(f"t={NOW},v1={stripe_sig(NOW)}", BODY, SECRET, NOW) == NOW


def test_any_of_several_v1_signatures_may_match_and_other_schemes_are_ignored() -> None:
    header = f"t={NOW},v0=abc,v1={'0' * 64},v1={stripe_sig(NOW)}"
    assert verify(header, BODY, SECRET, NOW) == NOW


@pytest.mark.parametrize("header, reason", [
    (None, "header is missing"),
    ("", "header is missing"),
    (f"v1={'a' * 64}", "has no t= timestamp"),
    (f"t={NOW}", "has no v1= signature"),
    (f"t={NOW},v0={'a' * 64}", "has no v1= signature"),
    (f"t=soon,v1={'a' * 64}", "t= is not a Unix timestamp"),
    (f"t={NOW},v1={'a' * 64}", "no v1 signature matches the payload"),
])
def test_malformed_or_wrong_headers_are_refused_with_the_reason(header: str | None, reason: str) -> None:
    with pytest.raises(ValidationError) as info:
        verify(header, BODY, SECRET, NOW)
    assert info.value.status == 400 and info.value.field == "Stripe-Signature" and info.value.reason == reason


def test_body_changed_after_signing_or_other_secret_is_refused() -> None:
    with pytest.raises(ValidationError, match="no v1 signature matches"):
        verify(f"t={NOW},v1={stripe_sig(NOW)}", BODY.replace(b"evt_1", b"evt_2"), SECRET, NOW)
    with pytest.raises(ValidationError, match="no v1 signature matches"):
        verify(f"t={NOW},v1={stripe_sig(NOW, secret='whsec_other')}", BODY, SECRET, NOW)


def test_timestamp_is_part_of_the_signed_payload() -> None:
    with pytest.raises(ValidationError, match="no v1 signature matches"):
        verify(f"t={NOW + 1},v1={stripe_sig(NOW)}", BODY, SECRET, NOW)


def test_stale_signature_refused_past_300_seconds_but_not_at_300() -> None:
    t = NOW - 300
    assert verify(f"t={t},v1={stripe_sig(t)}", BODY, SECRET, NOW) == t
    t = NOW - 301
    with pytest.raises(ValidationError, match="older than the 300s tolerance"):
        verify(f"t={t},v1={stripe_sig(t)}", BODY, SECRET, NOW)


def test_errors_never_contain_the_secret() -> None:
    with pytest.raises(ValidationError) as info:
        verify(f"t={NOW},v1={'a' * 64}", BODY, SECRET, NOW)
    assert SECRET not in str(info.value.to_dict())


def test_a_timestamp_far_in_the_future_is_refused() -> None:
    for ahead in (TOLERANCE_S + 1, 86_400 * 365):
        with pytest.raises(ValidationError, match="in the future"):
            verify(f"t={NOW + ahead},v1={stripe_sig(NOW + ahead)}", BODY, SECRET, NOW)
    assert verify(f"t={NOW + 10},v1={stripe_sig(NOW + 10)}", BODY, SECRET, NOW) == NOW + 10
