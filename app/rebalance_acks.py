"""Only acknowledgements of the current consumer generation count towards a commit.

Faust acks an event when its stream is done with it, and it also acks the events a stream *skips*: those
fetched before a rebalance and delivered after it, or delivered while the rebalance has paused the flow.
Its `Consumer.ack` records every one of them, whatever its generation. So a skipped event's offset could be
committed without the event ever being counted. A batch in flight across a rebalance could also have its
acks committed by the next transaction, while its changelog records went down with the old one. Both were
seen: `test_analytics_reads.py` found a rule-day one event short, with no dedup key and no count for the
event in either worker's tables.

An ack that arrives while the group is rebalancing, or that belongs to an earlier generation, is not
recorded. Its event stays uncommitted, so the seek to the committed offsets after the rebalance delivers it
again, and the event-id dedup makes the second pass count it at most once.
"""
from __future__ import annotations

from typing import Any

__all__ = ["counts_for_commit", "current_generation_acks"]


def counts_for_commit(rebalancing: bool, message_generation: int | None, current_generation: int) -> bool:
    return not rebalancing and (message_generation is None or message_generation == current_generation)


def current_generation_acks(base: type[Any]) -> type[Any]:
    """The transport's consumer class with `ack` refusing acks of other generations (set on the transport)."""

    class CurrentGenerationConsumer(base):  # type: ignore[misc]
        def ack(self, message: Any) -> bool:
            app = self.app
            if not counts_for_commit(app.rebalancing, message.generation_id, app.consumer_generation_id):
                return False
            return bool(super().ack(message))

    return CurrentGenerationConsumer
