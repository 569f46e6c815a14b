"""Consumer lag of the partitions this worker owns now, on its /metrics.

Each worker exports only its current assignment, and drops a partition's series the moment it is revoked:
after a rebalance the old owner no longer reports a frozen figure beside the new owner's, so a panel or an
alert reads one value per partition, the owner's. Lag is the partition's end (the last stable offset, as
the worker reads with read_committed) minus the group's committed offset, both as this worker knows them.
"""
from __future__ import annotations

from collections.abc import Collection, Iterable
from dataclasses import dataclass
from typing import Any

from ingestflow.app.core.observability import CONSUMER_COMMITTED, CONSUMER_LAG

__all__ = ["PartitionOffsets", "LagExport", "export_consumer_lag"]


@dataclass(frozen=True, slots=True)
class PartitionOffsets:
    topic: str
    partition: int
    committed: int | None  # the next offset the group will read; None when unknown (see publish)
    end: int | None  # None until the worker has fetched from the partition


class LagExport:
    """The lag series of one consumer group in this process: set for what is owned, removed otherwise."""

    def __init__(self, group: str) -> None:
        self._group = group
        self._exported: set[tuple[str, int]] = set()

    @property
    def exported(self) -> frozenset[tuple[str, int]]:
        return frozenset(self._exported)

    def publish(self, owned: Iterable[PartitionOffsets]) -> None:
        """Export every owned partition whose offsets are known; drop the series of every other one.

        Faust reports a committed offset of 0 as unknown, like a group that never committed: an empty
        partition (end 0) is then known to have nothing waiting; any other stays unreported until the
        group's first commit there, rather than be shown with a lag counted from an offset it never had."""
        current: set[tuple[str, int]] = set()
        for p in owned:
            committed = 0 if p.committed is None and p.end == 0 else p.committed
            if committed is None or p.end is None:
                continue
            labels = (self._group, p.topic, str(p.partition))
            CONSUMER_LAG.labels(*labels).set(max(0, p.end - committed))
            CONSUMER_COMMITTED.labels(*labels).set(committed)
            current.add((p.topic, p.partition))
        self.forget(self._exported - current)
        self._exported = current

    def forget(self, partitions: Iterable[tuple[str, int]]) -> None:
        for topic, partition in list(partitions):
            if (topic, partition) in self._exported:
                CONSUMER_LAG.remove(self._group, topic, str(partition))
                CONSUMER_COMMITTED.remove(self._group, topic, str(partition))
                self._exported.discard((topic, partition))


def export_consumer_lag(app: Any, topic_names: Collection[str], interval_s: float = 5.0) -> LagExport:
    """Wire a LagExport into a Faust app: refreshed on a timer, and a revoked partition dropped at once."""
    export = LagExport(app.conf.id)
    names = frozenset(topic_names)

    async def refresh() -> None:
        if app.rebalancing:  # no owner until the new assignment is in place
            return
        consumer = app.consumer
        # Faust keeps the group's committed offsets per owned partition (seeded from Kafka on assignment,
        # updated on each commit); reading them here costs no request to the broker.
        committed = consumer._committed_offset
        export.publish(PartitionOffsets(tp.topic, tp.partition, committed.get(tp), consumer.highwater(tp))
                       for tp in consumer.assignment() if tp.topic in names)

    async def revoked(sender: Any, revoked: Collection[Any], **kwargs: Any) -> None:
        export.forget((tp.topic, tp.partition) for tp in revoked)

    app.timer(interval_s, name="export-consumer-lag")(refresh)
    app.on_partitions_revoked.connect(revoked)
    return export
