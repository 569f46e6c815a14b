"""The one serializer: orjson everywhere (topics, HTTP bodies, tables, logs)."""
from __future__ import annotations

from typing import Any

import orjson

__all__ = ["dumps", "loads", "DecodeError"]

DecodeError = orjson.JSONDecodeError


def dumps(value: Any) -> bytes:
    return orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS)


def loads(data: bytes | bytearray | memoryview | str) -> Any:
    return orjson.loads(data)
