"""The one serializer: orjson everywhere (topics, HTTP bodies, tables, logs)."""
from __future__ import annotations

from typing import Any

import orjson

__all__ = ["dumps", "dumps_canonical", "dumps_readable", "loads", "DecodeError"]

DecodeError = orjson.JSONDecodeError


def dumps(value: Any) -> bytes:
    return orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS)


def dumps_canonical(value: Any) -> bytes:
    """Sorted keys: equal values give equal bytes (for fingerprints and hashes)."""
    return orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS | orjson.OPT_SORT_KEYS)


def dumps_readable(value: Any) -> bytes:
    """Indented, for a person reading a command's output."""
    return orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS | orjson.OPT_INDENT_2)


def loads(data: bytes | bytearray | memoryview | str) -> Any:
    return orjson.loads(data)
