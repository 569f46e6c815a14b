"""The decisions of `ingestflow status` (app/ops/status.py): which figures need an operator, and the text
form. The figures themselves are read from the real services in tests/integration/test_status.py."""
from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from ingestflow.app.archive.transfer_logs import TransferSummary
from ingestflow.app.ops.status import GroupStatus, Member, PartitionStatus, Status, Thresholds, attention, render

NOW = datetime(2026, 11, 30, 12, 0, tzinfo=timezone.utc)
UP = [{"name": n, "status": "up", "required": n != "redis"} for n in ("kafka", "postgres", "redis", "archive")]
WORKER = Member("app@host:6066", "10.0.0.5", "m-1", (("events", 0), ("events", 1)))


def healthy(**changes: Any) -> Status:
    status = Status(group="app", checked_at=NOW, dependencies=[dict(d) for d in UP],
                    consumer=GroupStatus("app", "Stable", (WORKER,), (
                        PartitionStatus("events", 0, 10, 12, 2, WORKER.client_id, WORKER.host),
                        PartitionStatus("events", 1, 5, 5, 0, WORKER.client_id, WORKER.host))),
                    spool={"pending": 0, "failed": 0, "kafkaHealthy": True, "spoolBytes": 0,
                           "spoolMaxBytes": 1000, "spoolWritable": True},
                    archive={"records": 3, "users": 1, "oldestAgeSeconds": 60.0, "partitions": []},
                    transfers=TransferSummary(0, None, 0, 2))
    for key, value in changes.items():
        setattr(status, key, value)
    return status


def notes(status: Status, **thresholds: Any) -> list[str]:
    return attention(status, Thresholds(**thresholds), archive_max_age_s=3600)


def test_all_well_needs_nothing_and_redis_down_is_only_degraded() -> None:
    assert notes(healthy()) == []
    status = healthy()
    status.dependencies[2].update(status="down", error="timed out")
    assert notes(status) == []


def test_a_required_dependency_down_is_named() -> None:
    status = healthy()
    status.dependencies[1].update(status="down", error="ConnectionRefusedError")
    assert notes(status) == ["postgres is down (ConnectionRefusedError)"]


def test_lag_above_the_bound_and_a_partition_without_owner() -> None:
    assert notes(healthy(), max_lag=1) == ["events[0]: lag 2 is above 1"]
    orphan = GroupStatus("app", "Stable", (WORKER,), (PartitionStatus("events", 2, 0, 7, 7, None, None),))
    assert notes(healthy(consumer=orphan)) == ["events[2]: 7 records waiting and no worker owns the partition"]
    empty = GroupStatus("app", "Empty", (), (PartitionStatus("events", 0, 0, 7, 7, None, None),))
    assert notes(healthy(consumer=empty)) == ["consumer group app has no members: no worker is running"]


def test_spool_filling_unwritable_or_with_corrupt_stretches() -> None:
    spool = {"pending": 90, "failed": 1, "kafkaHealthy": False, "spoolBytes": 850, "spoolMaxBytes": 1000,
             "spoolWritable": False}
    assert notes(healthy(spool=spool)) == [
        "spool holds 850 of 1000 bytes (over 80%): new input gets 503 once it is full",
        "spool is not writable", "spool has 1 corrupt stretch(es) parked in failed/"]
    assert notes(healthy(spool={**spool, "spoolBytes": 700, "failed": 0, "spoolWritable": True})) == []


def test_archive_backlog_past_its_flush_age_and_transfers_stuck_or_failing() -> None:
    old = {"records": 3, "users": 1, "oldestAgeSeconds": 7300.0, "partitions": []}
    assert notes(healthy(archive=old)) == [
        "archive: the oldest buffered record is 7300s old (flushes are due after 3600s)"]
    assert notes(healthy(transfers=TransferSummary(1, 1200.0, 2, 5))) == [
        "transfer_logs: 1 upload(s) pending, the oldest for 1200s",
        "transfer_logs: 2 batch(es) failed and not archived yet"]
    assert notes(healthy(transfers=TransferSummary(1, 30.0, 0, 0))) == []  # an upload in flight


def test_text_form_shows_each_section_and_the_attention_list() -> None:
    status = healthy()
    status.attention = ["postgres is down (timed out)"]
    text = render(status)
    for part in ("group app", "kafka      up", "redis      up  optional", "consumer group: Stable, 1 member(s)",
                 "events[0]", "app@host:6066", "spool: 0 message(s), 0 of 1000 bytes",
                 "archive backlog: 3 record(s) of 1 user(s), oldest 60s", "transfer_logs: 0 pending",
                 "attention:", "  - postgres is down (timed out)"):
        assert part in text, part
    assert "nothing needs attention" in render(healthy())
