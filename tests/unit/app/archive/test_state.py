"""Cron expressions: validated with a reason, next tick computed from the last one."""
from __future__ import annotations

from datetime import datetime, timezone

import pytest

from ingestflow.app.archive.state import next_tick, validate_schedule
from ingestflow.app.core.errors import ValidationError


def test_next_tick_follows_the_schedule() -> None:
    at = datetime(2026, 11, 23, 10, 7, tzinfo=timezone.utc)
    assert next_tick("*/5 * * * *", at) == datetime(2026, 11, 23, 10, 10, tzinfo=timezone.utc)
    assert next_tick("0 */2 * * *", at) == datetime(2026, 11, 23, 12, 0, tzinfo=timezone.utc)


@pytest.mark.parametrize("bad", ["every tuesday", "", None, 5, "61 * * * *"])
def test_invalid_schedules_name_the_field_and_reason(bad: object) -> None:
    with pytest.raises(ValidationError) as info:
        validate_schedule(bad)
    assert info.value.field == "schedule"


def test_valid_schedule_is_trimmed() -> None:
    assert validate_schedule(" 0 */2 * * * ") == "0 */2 * * *"
