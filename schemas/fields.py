"""Field checks shared by every topic schema: each failure names the field path and the reason."""
from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from ingestflow.app.errors import ValidationError

__all__ = ["obj", "string", "opt_string", "timestamp", "array", "integer"]


def obj(value: Any, path: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ValidationError(path or "body", f"must be a JSON object, got {_kind(value)}")
    return value


def string(container: dict[str, Any], key: str, path: str, max_len: int = 256) -> str:
    value = container.get(key)
    if value is None:
        raise ValidationError(_join(path, key), "is required")
    return _check_str(value, _join(path, key), max_len)


def opt_string(container: dict[str, Any], key: str, path: str, max_len: int = 256) -> str | None:
    value = container.get(key)
    if value is None:
        return None
    return _check_str(value, _join(path, key), max_len)


def integer(container: dict[str, Any], key: str, path: str, minimum: int = 0) -> int:
    value = container.get(key)
    field = _join(path, key)
    if value is None:
        raise ValidationError(field, "is required")
    if isinstance(value, bool) or not isinstance(value, int):
        if isinstance(value, str) and value.isdigit():
            value = int(value)
        else:
            raise ValidationError(field, f"must be an integer, got {_kind(value)}")
    if value < minimum or value > 2**63 - 1:
        raise ValidationError(field, f"must be between {minimum} and {2**63 - 1}")
    return value


def array(container: dict[str, Any], key: str, path: str, max_items: int) -> list[Any]:
    value = container.get(key)
    field = _join(path, key)
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
    field = _join(path, key)
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


def _check_str(value: Any, field: str, max_len: int) -> str:
    if not isinstance(value, str):
        raise ValidationError(field, f"must be a string, got {_kind(value)}")
    if not value.strip():
        raise ValidationError(field, "must not be empty")
    if len(value) > max_len:
        raise ValidationError(field, f"must be at most {max_len} characters, got {len(value)}")
    return value


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _kind(value: Any) -> str:
    return {dict: "object", list: "array", str: "string", bool: "boolean", int: "integer",
            float: "number", type(None): "null"}.get(type(value), type(value).__name__)
