"""The lag export of app/worker/lag.py: a worker reports the partitions it owns now, and drops a partition's
series once it no longer owns it (tests/integration/test_metrics.py runs it in two real workers)."""
from __future__ import annotations

from prometheus_client import REGISTRY

from ingestflow.app.worker.lag import LagExport, PartitionOffsets


def exported(group: str) -> dict[tuple[str, str], tuple[float | None, float | None]]:
    def value(name: str, topic: str, partition: str) -> float | None:
        return REGISTRY.get_sample_value(name, {"group": group, "topic": topic, "partition": partition})
    found: dict[tuple[str, str], tuple[float | None, float | None]] = {}
    for metric in REGISTRY.collect():
        for s in metric.samples:
            if s.name == "ingestflow_consumer_lag" and s.labels["group"] == group:
                key = (s.labels["topic"], s.labels["partition"])
                found[key] = (s.value, value("ingestflow_consumer_committed_offset", *key))
    return found


def test_reports_owned_partitions_and_drops_the_ones_it_lost() -> None:
    export = LagExport("unit-lag")
    export.publish([PartitionOffsets("events", 0, 10, 25), PartitionOffsets("events", 1, 7, 7),
                    PartitionOffsets("rules", 0, 3, 3)])
    assert exported("unit-lag") == {("events", "0"): (15.0, 10.0), ("events", "1"): (0.0, 7.0),
                                    ("rules", "0"): (0.0, 3.0)}
    export.publish([PartitionOffsets("events", 0, 20, 25)])  # the rebalance left it events[0] only
    assert exported("unit-lag") == {("events", "0"): (5.0, 20.0)}
    export.forget([("events", 0)])  # revoked
    assert exported("unit-lag") == {}
    assert export.exported == frozenset()


def test_unknown_offsets_are_not_guessed() -> None:
    export = LagExport("unit-unknown")
    export.publish([PartitionOffsets("events", 0, None, 0),  # never written: nothing waits
                    PartitionOffsets("events", 1, None, 40),  # no commit known: lag unknown
                    PartitionOffsets("events", 2, 5, None)])  # nothing fetched yet
    assert exported("unit-unknown") == {("events", "0"): (0.0, 0.0)}
