"""Fire-and-forget options in a request body: either one turns it on; bad values name their field."""
from __future__ import annotations

import pytest

from ingestflow.app.core.errors import ValidationError
from ingestflow.app.gateway.publisher import Qos
from ingestflow.app.gateway.routes_ingest import parse_qos


def test_absent_means_acknowledged_by_kafka_or_spool() -> None:
    assert parse_qos({"events": []}) is None
    assert parse_qos({"bufferMs": None}) is None


def test_either_field_turns_it_on_with_the_other_defaulted() -> None:
    assert parse_qos({"bufferMs": 0}) == Qos(buffer_ms=0, buffer_max=500)
    assert parse_qos({"bufferMax": 10}) == Qos(buffer_ms=1000, buffer_max=10)
    assert parse_qos({"bufferMs": 250, "bufferMax": 2}) == Qos(buffer_ms=250, buffer_max=2)


@pytest.mark.parametrize("body, field", [
    ({"bufferMs": -1}, "bufferMs"), ({"bufferMs": 60_001}, "bufferMs"), ({"bufferMs": "soon"}, "bufferMs"),
    ({"bufferMs": True}, "bufferMs"), ({"bufferMax": 0}, "bufferMax"), ({"bufferMax": 100_001}, "bufferMax"),
    ({"bufferMax": 1.5}, "bufferMax"),
])
def test_out_of_range_or_wrong_type_is_a_400_naming_the_field(body: dict[str, object], field: str) -> None:
    with pytest.raises(ValidationError) as info:
        parse_qos(body)
    assert info.value.status == 400 and info.value.field == field
