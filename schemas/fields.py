"""Field checks shared by every topic schema: each failure names the field path and the reason.

The gateway (at the door) and the topics' decoders (for services producing straight to Kafka) apply the same
checks, so what the stores cannot hold never gets past either: PostgreSQL text and jsonb refuse NUL
(U+0000); orjson writes JSON at most 254 levels deep, and an archived record gains a few levels of wrapping;
integers are ASCII digits (`int()` also reads "٣" and fails on "²"); dates stay within what Python and the
stores represent.
"""
from __future__ import annotations

from datetime import date, datetime, timezone
from typing import Any, TypeGuard

from ingestflow.app.core.errors import ValidationError

__all__ = ["obj", "string", "opt_string", "timestamp", "array", "integer", "json_value", "ascii_int", "iso_day",
           "join", "MAX_JSON_DEPTH", "MAX_INT", "EARLIEST_DAY", "LATEST_DAY"]

MAX_JSON_DEPTH = 128  # nested objects/arrays in a free-form value (crawl raw, a record's cleaned, a Stripe event)
MAX_INT = 2**63 - 1  # PostgreSQL BIGINT
EARLIEST_DAY = date(1970, 1, 1)  # the daily windows start at the Unix epoch; nothing is stored before it
LATEST_DAY = date(9999, 12, 31)
NUL = "\x00"


def obj(value: Any, path: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ValidationError(path or "body", f"must be a JSON object, got {_kind(value)}")
    return value


def string(container: dict[str, Any], key: str, path: str, max_len: int = 256) -> str:
    value = container.get(key)
    if value is None:
        raise ValidationError(join(path, key), "is required")
    if _plain_str(value, max_len):
        return value
    return _check_str(value, join(path, key), max_len)


def opt_string(container: dict[str, Any], key: str, path: str, max_len: int = 256) -> str | None:
    value = container.get(key)
    if value is None or _plain_str(value, max_len):
        return value
    return _check_str(value, join(path, key), max_len)


def integer(container: dict[str, Any], key: str, path: str, minimum: int = 0, maximum: int = MAX_INT) -> int:
    """A JSON integer, or a string of ASCII digits (some producers quote their ids)."""
    value = container.get(key)
    field = join(path, key)
    if value is None:
        raise ValidationError(field, "is required")
    if isinstance(value, str):
        return ascii_int(value, field, minimum, maximum)
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValidationError(field, f"must be an integer, got {_kind(value)}")
    if not minimum <= value <= maximum:
        raise ValidationError(field, f"must be between {minimum} and {maximum}")
    return value


def ascii_int(text: str, field: str, minimum: int = 0, maximum: int = MAX_INT) -> int:
    """A whole number written in ASCII digits (a query parameter, a quoted id): "²" or "٣" is refused."""
    if not (text.isascii() and text.isdigit()) or len(text) > 20:
        raise ValidationError(field, f"must be a whole number written in ASCII digits, got {text[:32]!r}")
    value = int(text)
    if not minimum <= value <= maximum:
        raise ValidationError(field, f"must be between {minimum} and {maximum}, got {text[:32]}")
    return value


def iso_day(text: str, field: str) -> date:
    """An ISO date (YYYY-MM-DD; a date-time's date part is read too) from 1970-01-01 to 9999-12-31."""
    try:
        day = date.fromisoformat(text[:10])
    except ValueError:
        raise ValidationError(field, f"must be an ISO date (YYYY-MM-DD), got {text[:32]!r}") from None
    if not EARLIEST_DAY <= day <= LATEST_DAY:
        raise ValidationError(field, f"must be between {EARLIEST_DAY} and {LATEST_DAY}, got {day}")
    return day


def json_value(value: Any, field: str, *, text: bool) -> Any:
    """A free-form JSON value at most MAX_JSON_DEPTH containers deep; with `text` (it is stored in PostgreSQL
    jsonb) no key or string in it may hold a NUL. Returns the value unchanged."""
    stack: list[tuple[Any, int, str]] = [(value, 0, "")]
    while stack:
        item, depth, where = stack.pop()
        if isinstance(item, dict | list):
            if depth >= MAX_JSON_DEPTH:
                raise ValidationError(field, f"nests deeper than {MAX_JSON_DEPTH} levels")
            pairs = item.items() if isinstance(item, dict) else ((f"[{i}]", v) for i, v in enumerate(item))
            for key, child in pairs:
                if text and NUL in key:
                    raise ValidationError(field, f"has a key with a NUL (\\u0000) character at {where[:200] or '.'}")
                stack.append((child, depth + 1, f"{where}.{key}" if isinstance(item, dict) else where + key))
        elif text and isinstance(item, str) and NUL in item:
            raise ValidationError(field, f"has a NUL (\\u0000) character in the string at {where[:200] or '.'}")
    return value


def array(container: dict[str, Any], key: str, path: str, max_items: int) -> list[Any]:
    value = container.get(key)
    field = join(path, key)
    if value is None:
        raise ValidationError(field, "is required")
    if not isinstance(value, list):
        raise ValidationError(field, f"must be an array, got {_kind(value)}")
    if not value:
        raise ValidationError(field, "must not be empty")
    if len(value) > max_items:
        raise ValidationError(field, f"has {len(value)} items; at most {max_items} are allowed in one request")
    return value


def timestamp(container: dict[str, Any], key: str, path: str, default: datetime) -> datetime:
    value = container.get(key)
    field = join(path, key)
    if value is None:
        return default
    if not isinstance(value, str):
        raise ValidationError(field, f"must be an ISO-8601 date-time string, got {_kind(value)}")
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00") if value.endswith("Z") else value)
    except ValueError:
        raise ValidationError(field, f"is not an ISO-8601 date-time: {value[:64]!r}") from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=timezone.utc)
    try:
        return parsed.astimezone(timezone.utc)
    except OverflowError:
        raise ValidationError(field, f"is out of range in UTC: {value[:64]!r}") from None


def _plain_str(value: Any, max_len: int) -> TypeGuard[str]:
    """The common case that `_check_str` passes, decided without naming the field (a worker decodes every
    record through here)."""
    return isinstance(value, str) and 0 < len(value) <= max_len and NUL not in value and not value.isspace()


def _check_str(value: Any, field: str, max_len: int) -> str:
    if not isinstance(value, str):
        raise ValidationError(field, f"must be a string, got {_kind(value)}")
    if not value.strip():
        raise ValidationError(field, "must not be empty")
    if len(value) > max_len:
        raise ValidationError(field, f"must be at most {max_len} characters, got {len(value)}")
    if NUL in value:
        raise ValidationError(field, "must not contain a NUL (\\u0000) character")
    return value


def join(path: str, key: str) -> str:
    """`path.key`, or `key` at the top level."""
    return f"{path}.{key}" if path else key


def _kind(value: Any) -> str:
    return {dict: "object", list: "array", str: "string", bool: "boolean", int: "integer",
            float: "number", type(None): "null"}.get(type(value), type(value).__name__)
