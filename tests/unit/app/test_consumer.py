"""The consumer's rules: which acks count for a commit, and when a partition counts as stalled."""
from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

import faust
from faust.types import TP
from aiokafka.errors import IllegalStateError
from intervaltree import Interval

from ingestflow.app.worker.consumer import (FETCH_MAX_WAIT_MS, PartitionState, consistent_delivery, counts_for_commit,
                                            deleted_unprocessed, gap_covers, is_stalled)

EVENTS0 = TP("events", 0)


class RecordingConsumer:
    def __init__(self, app: Any) -> None:
        self.app = app
        self.recorded: list[int] = []
        self._unacked_messages: set[Any] = set()

    def ack(self, message: Any) -> bool:
        self.recorded.append(message.offset)
        return True

    async def on_partitions_revoked(self, revoked: set[TP]) -> None:
        pass


class Message:
    def __init__(self, offset: int, epoch: int | None, generation: int | None) -> None:
        self.tp, self.offset, self.generation_id, self.delivery_epoch = EVENTS0, offset, generation, epoch


def message(offset: int, epoch: int | None, generation: int | None = 3) -> Any:
    return Message(offset, epoch, generation)


async def test_only_acks_of_records_delivered_since_the_last_seek_or_revocation_count() -> None:
    consumer = consistent_delivery(RecordingConsumer, stall_check_s=30.0)(SimpleNamespace(consumer_generation_id=3))
    assert consumer.ack(message(10, 0)) is True
    consumer._new_epoch([EVENTS0])  # a seek
    stale = message(11, 0)
    consumer._unacked_messages.add(stale)
    assert consumer.ack(stale) is False  # delivered before the seek: read again after it
    assert stale not in consumer._unacked_messages  # and no longer waited for
    current = consumer._epochs[EVENTS0]
    assert consumer.ack(message(11, current)) is True
    await consumer.on_partitions_revoked({EVENTS0})
    assert consumer.ack(message(12, current)) is False  # finishing after the revocation started
    assert consumer.recorded == [10, 11]


def test_the_generation_must_match_when_the_record_has_one() -> None:
    assert counts_for_commit(4, 4, None, 5)
    assert counts_for_commit(4, 4, 5, 5)
    assert not counts_for_commit(4, 4, 4, 5)
    assert not counts_for_commit(None, 0, 5, 5)


def state(committed: int | None = 100, read: int | None = 150, position: int | None = 151,
          in_flight: frozenset[int] = frozenset(), acked: bool = False, in_gap: bool = False,
          pending: bool = False, log_start: int | None = 0) -> PartitionState:
    return PartitionState(committed, read, position, in_flight, acked, in_gap, pending, log_start)


def test_a_committed_offset_that_stays_put_while_later_records_were_delivered_is_a_stall() -> None:
    assert is_stalled(state(), state())
    assert is_stalled(state(), state(in_flight=frozenset({140})))  # later records still in flight


def test_progress_or_a_record_still_owed_to_the_streams_is_not_a_stall() -> None:
    assert not is_stalled(state(committed=90), state())  # the offset moved since the last check
    assert not is_stalled(state(), state(in_flight=frozenset({100})))  # the record is being processed
    assert not is_stalled(state(), state(acked=True))  # acked, committed with the next commit
    assert not is_stalled(state(), state(in_gap=True))  # a marker or compacted offset
    assert not is_stalled(state(), state(pending=True))  # its batch is still being delivered
    assert not is_stalled(state(committed=None), state(committed=None))


def test_records_fetched_and_never_delivered_are_a_stall_unless_only_a_marker_follows() -> None:
    assert is_stalled(state(read=99, position=120), state(read=99, position=120))
    assert not is_stalled(state(read=99, position=101), state(read=99, position=101))
    assert not is_stalled(state(read=99, position=100), state(read=99, position=100))  # caught up


def test_records_deleted_before_the_committed_offset_was_reached_are_counted_as_lost() -> None:
    assert deleted_unprocessed(state(committed=10, log_start=300)) == 290
    assert deleted_unprocessed(state(committed=300, log_start=300)) == 0
    assert deleted_unprocessed(state(committed=None, log_start=300)) == 0
    assert deleted_unprocessed(state(log_start=None)) == 0


def test_a_gap_covers_a_head_only_when_every_offset_of_it_is_in_some_interval() -> None:
    assert gap_covers([Interval(10, 12), Interval(12, 20)], 10, 20)
    assert not gap_covers([Interval(10, 12), Interval(13, 20)], 10, 20)
    assert not gap_covers([], 10, 11)
    assert gap_covers([], 10, 10)


class RevokedUnderTheWatchdog(RecordingConsumer):
    """A consumer whose partition the consumer thread revoked while the watchdog was checking it."""

    flow_active = True
    should_stop = False

    def __init__(self, app: Any) -> None:
        super().__init__(app)
        self._committed_offset = {EVENTS0: 100}
        self._read_offset = {EVENTS0: 150}
        self._gap: dict[TP, Any] = {}
        self._acked_index: dict[TP, Any] = {}

    def assignment(self) -> set[TP]:
        return {EVENTS0}

    def _get_active_partitions(self) -> set[TP]:
        return {EVENTS0}

    async def earliest_offsets(self, *tps: TP) -> dict[TP, int]:
        return {tp: 0 for tp in tps}

    async def position(self, tp: TP) -> int:
        raise IllegalStateError(f"No current assignment for partition {tp}")


async def test_the_watchdog_skips_a_partition_revoked_during_its_check() -> None:
    app = SimpleNamespace(rebalancing=False, tables=SimpleNamespace(changelog_topics=set()),
                          topics=SimpleNamespace(acks_enabled_for=lambda topic: True, _tp_index={}))
    consumer = consistent_delivery(RevokedUnderTheWatchdog, stall_check_s=30.0)(app)
    assert await consumer.check_stalls() == []


async def test_the_consumer_threads_fetches_wait_briefly_so_offset_lookups_are_not_queued_behind_them() -> None:
    """The broker answers a connection's requests in order: with Faust's 1.5 s fetch wait, each offset lookup
    of a start or rebalance waited up to 1.5 s behind an idle fetch."""
    app = faust.App("fetch-wait-test", broker="kafka://127.0.0.1:1", autodiscover=False)
    setattr(app.transport, "Consumer", consistent_delivery(app.transport.Consumer, stall_check_s=30.0))
    consumer: Any = app.consumer
    kafka_consumer = consumer._thread._create_worker_consumer(app.transport)
    assert kafka_consumer._fetch_max_wait_ms == FETCH_MAX_WAIT_MS <= 100


def test_a_buffer_drain_after_the_consumer_thread_stopped_wakes_nothing_and_raises_nothing() -> None:
    """on_buffer_drop runs on the app's loop; at shutdown the consumer thread's loop may already be closed."""
    app = faust.App("fetch-wake-test", broker="kafka://127.0.0.1:1", autodiscover=False)
    setattr(app.transport, "Consumer", consistent_delivery(app.transport.Consumer, stall_check_s=30.0))
    thread: Any = app.consumer._thread
    thread.wake_fetch()  # not started: no aiokafka consumer yet
    closed = asyncio.new_event_loop()
    closed.close()
    thread._consumer, thread.thread_loop = SimpleNamespace(_fetcher=SimpleNamespace(_fetch_waiters=set())), closed
    thread.wake_fetch()
