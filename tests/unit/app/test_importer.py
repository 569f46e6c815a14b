from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

import pytest

from ingestflow.app.core import serde
from ingestflow.app.core.errors import ValidationError
from ingestflow.app.ops.importer import Rejected, read_file, read_file_store, to_messages

NOW = datetime(2026, 11, 23, tzinfo=timezone.utc)


def test_ndjson_lines_keep_their_numbers_and_bad_json_is_rejected(tmp_path: Path) -> None:
    path = tmp_path / "events.ndjson"
    path.write_text('{"type": "VIEW", "ruleId": "r1"}\n\n{broken\n{"type": "COPY", "ruleId": "r2"}\n')
    items = list(read_file(path))
    assert [i[0] if isinstance(i, tuple) else i.line for i in items] == [1, 3, 4]
    assert isinstance(items[1], Rejected) and items[1].reason.startswith("not valid JSON")


def test_json_array_is_read_as_items(tmp_path: Path) -> None:
    path = tmp_path / "events.json"
    path.write_text('[{"type": "VIEW", "ruleId": "r1"}, {"type": "SAVE", "ruleId": "r2"}]')
    assert [n for n, _ in read_file(path)] == [1, 2]  # type: ignore[misc]


def test_same_event_imported_twice_gets_the_same_id() -> None:
    raw = {"type": "VIEW", "ruleId": "r1", "ts": "2026-11-01T00:00:00Z", "ip": "1.2.3.4"}
    first = serde.loads(to_messages("events", dict(raw), NOW)[0].value)
    second = serde.loads(to_messages("events", dict(raw), NOW)[0].value)
    assert first["id"] == second["id"] and first["id"].startswith("import-")
    keyed = serde.loads(to_messages("events", {**raw, "idempotencyKey": "k9"}, NOW)[0].value)
    assert keyed["id"] == "k9"


def test_invalid_item_names_the_field() -> None:
    with pytest.raises(ValidationError) as info:
        to_messages("events", {"type": "LIKE", "ruleId": "r1"}, NOW)
    assert info.value.field == "event.type"
    with pytest.raises(ValidationError) as info:
        to_messages("records", {"user_id": 5, "wuid": "w", "cleaned": "text"}, NOW)
    assert info.value.field == "records[0].cleaned"


def test_file_store_key_becomes_the_record_id(tmp_path: Path) -> None:
    path = tmp_path / "store.json"
    path.write_text('{"w-1": {"user_id": 7, "cleaned": {"title": "A"}, "context": "c"}}')
    [(number, value)] = list(read_file_store(path))  # type: ignore[misc]
    message = to_messages("records", value, NOW)[0]
    assert (number, message.key, serde.loads(message.value)["wuid"]) == (1, b"7", "w-1")
