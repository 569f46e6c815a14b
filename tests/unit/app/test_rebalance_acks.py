"""Acks recorded for a commit: only those of the current consumer generation, and none mid-rebalance."""
from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from ingestflow.app.rebalance_acks import counts_for_commit, current_generation_acks


class RecordingConsumer:
    def __init__(self, app: Any) -> None:
        self.app = app
        self.recorded: list[int] = []

    def ack(self, message: Any) -> bool:
        self.recorded.append(message.offset)
        return True


def test_only_acks_of_the_current_generation_outside_a_rebalance_are_recorded() -> None:
    app = SimpleNamespace(rebalancing=False, consumer_generation_id=3)
    consumer = current_generation_acks(RecordingConsumer)(app)
    assert consumer.ack(SimpleNamespace(offset=10, generation_id=3)) is True
    assert consumer.ack(SimpleNamespace(offset=11, generation_id=2)) is False  # fetched before the rebalance
    app.rebalancing = True
    assert consumer.ack(SimpleNamespace(offset=12, generation_id=3)) is False  # a batch finishing mid-rebalance
    app.rebalancing = False
    assert consumer.ack(SimpleNamespace(offset=13, generation_id=3)) is True
    assert consumer.recorded == [10, 13]


def test_a_message_without_a_generation_is_acked_normally() -> None:
    assert counts_for_commit(False, None, 5)
    assert not counts_for_commit(True, None, 5)
