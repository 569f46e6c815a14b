"""Table `archive-seen`: a fingerprint of each user's website record as last buffered for the archive, so
the same record produced again (`ingestflow import` run twice, a producer's retry) is not archived twice,
while a changed record (same website_uid, new content) is archived again.

Key: "userId<US>website_uid" (co-partitioned with `website-records`, keyed by user id). Value: the hex
SHA-256 of the record's archived form in canonical JSON. Window: tumbling, one retention period
(DEDUP_RETENTION_DAYS) wide, expired after two; a lookup reads the record's window and the one before, so
a copy arriving within the retention is found while the table stays bounded.
"""
from __future__ import annotations

import hashlib
from datetime import timedelta
from typing import Any

import faust

from ingestflow.app.core import serde

__all__ = ["define", "key", "fingerprint", "NAME"]

NAME = "archive-seen"


def define(app: faust.App, *, partitions: int, retention_days: int) -> Any:
    period = timedelta(days=retention_days)
    table = app.Table(NAME, default=str, partitions=partitions, key_type=str)
    return table.tumbling(period, expires=2 * period).relative_to_stream()


def key(user_id: int | str, website_uid: str) -> str:
    return f"{user_id}\x1f{website_uid}"


def fingerprint(record: dict[str, Any]) -> str:
    return hashlib.sha256(serde.dumps_canonical(record)).hexdigest()
