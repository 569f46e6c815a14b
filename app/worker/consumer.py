"""The worker's Kafka consumer: Faust's, with its delivery loop, seeks, acks, commits and recovery ends kept
consistent, so that a record handed out by the fetcher is either processed and committed or read again,
and a partition whose commits stop moving is noticed and repaired.

What left a partition of the backlog benchmark "short of the end, idle": its records were stamped with an
event time older than the broker's retention, so the broker deleted them at its next retention check while
they waited unread; the fetch position was reset past them and the group's committed offset stayed below
the topic's first offset, a lag that could never drain. The watchdog below commits past such records,
logs how many were lost and counts them (`ingestflow_records_deleted_unprocessed_total`).

Faust 0.15.3 defects met on the way, fixed here:

- Its delivery loop races every record against `suspend_flow` (`wait_first`); when the flow is suspended
  the record is dropped yet marked read. Here an undelivered record is not marked read.
- A seek could land between a fetch and the delivery of its records, which then moved the read offset past
  the seek's target. Here a fetch and the delivery of its records hold one lock every seek takes too.
- An ack is worth committing only for a record delivered since its partition's last seek or revocation
  (anything earlier is read again). Each delivery carries its partition's *delivery epoch*, and only acks
  of the current epoch count (refusing every ack during a rebalance, as this worker did, also refused acks
  of records delivered after the rebalance's final seek, which nothing reads again).
- Its commit goes past one missing offset at the head of a partition's acks, so a single record lost right
  after a commit was committed over. Here the head must be acked or a known gap (a transaction marker, a
  compacted record), and gaps are recorded from the last offset read.
- Under exactly-once its table recovery takes each changelog's end from the consumer's cached last stable
  offset, unknown until the partition was fetched once: at start-up such a partition looked empty and was
  not restored. Here the ends come from the broker.
- A revoked partition's records mid-batch made `highwater()` fail an assertion and crashed the fetcher.
- A partition whose stream buffer is under pressure leaves the fetch's active set (`on_buffer_full`), and
  its records wait in aiokafka's fetcher. When the buffer drains it rejoins the set, but the delivery loop
  was by then waiting in a fetch for the other partitions' records only, and it stayed there until that
  fetch's one-second timeout: on a backlog, where the buffer fills every few batches, the agent idled a
  third of the time. Here the partition's return wakes that fetch (`ShortPollThread.wake_fetch`).
- When no partition is in the active set (every input's buffer under pressure), its delivery loop sleeps a
  whole second, and a partition's return does not end the sleep. Here the loop waits for a partition to
  return (`on_buffer_drop`, `resume_partitions`, an assignment) for at most that second, then fetches.
- Its seek to the committed offsets (aiokafka's `seek_to_committed`) moves only partitions with a commit
  above 0, and it keeps no committed offset for the others: a partition the group had not committed yet
  kept its fetch position across a rebalance (past records delivered before it, which no one then wrote),
  and a commit could go past its first record unacked. Here such a partition is sought to its first offset,
  which is its commit head until the first commit.

- On an exception in an agent it acks the batch (`take_events`' `finally`) and commits: the batch's offsets
  were committed without its effects. Here a failed batch's partitions are read again from their commit
  (`read_again`, app/worker/failed_batches.py), and a commit computed before that leaves them out.

Faust commits on a timer only (`broker_commit_interval`), so the last records of a backlog, or of each
burst of light traffic, waited up to a whole interval for their commit, and with it their outputs for any
read_committed consumer. Here the timer also commits as soon as the worker has caught up (`caught_up`).

The watchdog also seeks back, logs and counts (`ingestflow_partition_stalls_total`) a partition whose
committed offset stays put for a whole check while the record at that offset is neither acked nor in
flight, although records at or past it were handed out: the safety net for any cause not known here.
"""
from __future__ import annotations

import asyncio
import itertools
import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from time import monotonic
from typing import Any, cast

from aiokafka import TopicPartition
from aiokafka.errors import IllegalStateError
from faust.transport.drivers.aiokafka import AIOKafkaConsumerThread
from faust.types import TP
from faust.types.tuples import ack_lock
from mode import Service
from mode.utils.futures import notify

from ingestflow.app.core.observability import PARTITION_STALLS, RECORDS_DELETED_UNPROCESSED

from . import eager
from .chunks import CHUNK_RECORDS, Chunk, offsets_of

__all__ = ["counts_for_commit", "consistent_delivery", "delivered_now", "PartitionState", "is_stalled", "gap_covers",
           "deleted_unprocessed"]

log = logging.getLogger(__name__)

EPOCH = "delivery_epoch"  # the attribute each delivered message carries
FETCH_MAX_WAIT_MS = 100
CAUGHT_UP_CHECK_S = 0.1  # how soon a worker that caught up commits


def counts_for_commit(message_epoch: int | None, current_epoch: int, message_generation: int | None,
                      current_generation: int) -> bool:
    """An ack counts for a commit when its record was delivered in the partition's current epoch (no seek
    or revocation since) and, when the record knows it, in the current consumer generation."""
    return message_epoch == current_epoch and (message_generation is None or message_generation == current_generation)


def delivered_now(app: Any, event: Any) -> bool:
    """True while the event is the worker's to process (`ConsistentConsumer.delivered_now`)."""
    return bool(app.consumer.delivered_now(event.message))


@dataclass(frozen=True)
class PartitionState:
    """What the watchdog sees of one partition at one check."""

    committed: int | None  # the next offset a commit would cover
    read: int | None  # the last offset delivered
    position: int | None  # the next offset the fetcher hands out
    in_flight: frozenset[int]  # delivered and not acked, queued for a stream, or being delivered
    acked: bool  # the record at `committed` is acked, waiting for the next commit
    in_gap: bool  # `committed` is a known gap (a transaction marker, a compacted record)
    pending: bool  # records of the partition wait in the batch being delivered
    log_start: int | None = None  # the first offset the broker still holds


def deleted_unprocessed(state: PartitionState) -> int:
    """How many records from the committed offset on the broker deleted before they were processed (the
    topic's retention reached them first): nothing can read them again, so they only hold the commit back."""
    if state.committed is None or state.log_start is None:
        return 0
    return max(0, state.log_start - state.committed)


def is_stalled(before: PartitionState, now: PartitionState) -> bool:
    """True when nothing will ever move this partition's committed offset: it stayed put for a whole
    check, the record at it is not acked, not a gap and not in flight, and the fetcher handed out records
    at or past it (delivered, or fetched and never delivered)."""
    committed = now.committed
    if committed is None or before.committed != committed or now.acked or now.in_gap or now.pending:
        return False
    if committed in now.in_flight:
        return False
    if now.read is not None and now.read >= committed:
        return True
    # Fetched and never delivered; a single trailing offset is most likely a transaction's commit marker.
    return not now.in_flight and now.position is not None and now.position - committed >= 2


def gap_covers(intervals: Iterable[Any], start: int, end: int) -> bool:
    """True when the gap intervals ([begin, end) each) cover every offset from `start` to `end` (exclusive)."""
    reached = start
    for interval in sorted(intervals, key=lambda i: i.begin):
        if interval.begin > reached:
            break
        reached = max(reached, interval.end)
    return reached >= end


class ShortPollThread(AIOKafkaConsumerThread):
    """Faust's consumer thread, with the broker's wait for a fetch with no new records (`fetch.max.wait.ms`)
    at 0.1 s instead of Faust's 1.5 s. The broker answers one connection's requests in order, so every
    offset lookup of a rebalance (the changelogs' ends, the first offsets of partitions with no commit)
    waited behind an idle fetch: up to 1.5 s each, seconds of every start and rebalance. An idle worker
    sends ten small fetch requests a second instead of one."""

    def _create_worker_consumer(self, transport: Any) -> Any:
        consumer = super()._create_worker_consumer(transport)
        consumer._fetch_max_wait_ms = FETCH_MAX_WAIT_MS  # read by the fetcher aiokafka makes at start
        return consumer

    def wake_fetch(self) -> None:
        """Wakes a fetch waiting for records (from any thread): it looks again at the active partitions,
        which the caller changed, and returns what the fetcher holds of them without waiting longer."""
        consumer, loop = self._consumer, self.thread_loop
        fetcher = None if consumer is None else consumer._fetcher
        if fetcher is not None and loop is not None and not loop.is_closed():  # not before start, after stop
            loop.call_soon_threadsafe(_wake_waiters, fetcher)


def _wake_waiters(fetcher: Any) -> None:
    for waiter in list(fetcher._fetch_waiters):  # aiokafka's fetched_records waits on these
        if not waiter.done():
            waiter.set_result(None)


def consistent_delivery(base: type[Any], *, stall_check_s: float) -> type[Any]:
    """The transport's consumer class with the delivery loop, seeks, acks and watchdog described above."""

    class ConsistentConsumer(base):  # type: ignore[misc]
        _n_acked: int

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self._epochs: dict[TP, int] = {}
            self._next_epoch = itertools.count(1)
            self._delivery_lock = asyncio.Lock()
            self._pending_tps: set[TP] = set()
            self._delivering: Any = None
            self._watch: dict[TP, PartitionState] = {}
            self._seeks: dict[TP, int] = {}  # partitions to read again, sought by the delivery loop
            self._commit_epochs: dict[TP, int] | None = None  # the epochs when the running commit began
            self._partitions_back = asyncio.Event()  # set when a partition rejoins the active set
            self._ends: dict[TP, int] = {}  # each input partition's end offset, as its last fetch saw it

        # --- epochs -----------------------------------------------------------------------------------

        def _new_epoch(self, tps: Iterable[Any]) -> None:
            epoch = next(self._next_epoch)
            for tp in tps:
                self._epochs[TP(tp.topic, tp.partition)] = epoch

        def delivered_now(self, message: Any) -> bool:
            """True while the record is this worker's to process: delivered in its partition's current epoch
            and generation. Anything else is read again after the seek that follows, by whoever then owns
            the partition, so an agent writes no table for it (app/worker/commit_gate.py)."""
            return counts_for_commit(getattr(message, EPOCH, None), self._epochs.get(message.tp, 0),
                                     message.generation_id, self.app.consumer_generation_id)

        def on_buffer_drop(self, tp: TP) -> None:
            """Faust's, and the fetch waiting without this partition wakes to take its records."""
            returning = tp in self._buffered_partitions
            super().on_buffer_drop(tp)
            if returning:
                self._partitions_back.set()
                self._thread.wake_fetch()

        def resume_partitions(self, tps: Iterable[TP]) -> None:
            super().resume_partitions(tps)
            self._partitions_back.set()

        def _set_active_tps(self, tps: set[TP]) -> set[TP]:
            active = cast(set[TP], super()._set_active_tps(tps))
            if active:
                self._partitions_back.set()
            return active

        async def _wait_for_active(self, timeout: float) -> bool:
            """Waits, for at most `timeout`, until a partition is in the fetch's active set (Faust sleeps the
            whole timeout instead); True when one is."""
            if self.app.client_only or self._get_active_partitions():
                return True
            self._partitions_back.clear()
            await self.wait(self._partitions_back, timeout=timeout)
            return bool(self._get_active_partitions())

        def ack(self, message: Any) -> bool:
            if not self.delivered_now(message):
                self._unacked_messages.discard(message)  # done with, and read again after the seek
                return False
            if isinstance(message, Chunk):
                return self._ack_chunk(message)
            return bool(super().ack(message))

        def _ack_chunk(self, chunk: Chunk) -> bool:
            """Faust's ack, for every record of the chunk."""
            with ack_lock:
                if chunk.acked:
                    return False
                chunk.acked = True
                self._unacked_messages.discard(chunk)
                if not self.app.topics.acks_enabled_for(chunk.topic):
                    return False
                tp = chunk.tp
                committed = self._committed_offset[tp]
                index = self._acked_index[tp]
                new = [offset for offset in chunk.offsets
                       if (committed is None or offset >= committed) and offset not in index]
                index.update(new)
                self._acked[tp].extend(new)
                self._n_acked += len(new)
                notify(self._waiting_for_ack)
                return bool(new)

        async def on_partitions_revoked(self, revoked: set[TP]) -> None:
            self._new_epoch(revoked)
            await super().on_partitions_revoked(revoked)

        # --- commits: never past a record neither acked nor known to be a gap ------------------------

        @Service.task
        async def _commit_handler(self) -> None:
            """Faust's commit every `commit_interval`, and sooner once the worker has caught up."""
            interval = self.commit_interval
            due = monotonic() + interval
            while not self.should_stop:
                await self.sleep(min(CAUGHT_UP_CHECK_S, interval))
                if self.should_stop:
                    return
                if monotonic() >= due or self.caught_up():
                    await self.commit()
                    due = monotonic() + interval

        def caught_up(self) -> bool:
            """True when acks wait for a commit, nothing delivered is still being processed, and every
            partition fetched so far was read to its end (a transaction marker aside): a commit now covers
            everything there is. Under a backlog the streams' buffers always hold records, so this stays
            false and commits keep to the interval."""
            if self.app.rebalancing or self._unacked_messages or self._pending_tps or self._delivering is not None:
                return False
            if not any(self._acked.values()):
                return False
            assigned = self.assignment()
            for tp, end in self._ends.items():
                read = self._read_offset.get(tp)
                if tp in assigned and read is not None and end - (read + 1) > 1:
                    return False
            return True

        async def _commit_tps(self, tps: Iterable[TP], start_new_transaction: bool) -> bool:
            self._commit_epochs = dict(self._epochs)
            try:
                return bool(await super()._commit_tps(tps, start_new_transaction))
            finally:
                self._commit_epochs = None

        def unchanged_since_commit_began(self, offsets: Mapping[Any, int]) -> dict[Any, int]:
            """The offsets of partitions neither sought nor read again since the running commit computed them
            (called under the commit gate: a partition read again meanwhile had its transaction aborted)."""
            began = self._commit_epochs
            if began is None:
                return dict(offsets)
            return {tp: offset for tp, offset in offsets.items()
                    if self._epochs.get(TP(tp.topic, tp.partition), 0) == began.get(TP(tp.topic, tp.partition), 0)}

        async def _commit_offsets(self, offsets: Mapping[TP, int], start_new_transaction: bool = True) -> bool:
            """Faust's, with only what the transaction manager did commit recorded as committed (an app
            without the commit gate, such as the bench's bare Faust, commits the way Faust does)."""
            if not self.in_transaction or not hasattr(self.transactions, "commit_current"):
                return bool(await super()._commit_offsets(offsets, start_new_transaction))
            assignment = self.assignment()
            offsets = {tp: offset for tp, offset in offsets.items() if tp in assignment}
            committed = await self.transactions.commit_current(offsets, start_new_transaction) if offsets else {}
            if committed:
                self.app.tables.on_commit(committed)
                self._committed_offset.update(committed)
                self.app.monitor.on_tp_commit(committed)
            return bool(committed)

        def _new_offset(self, tp: TP) -> int | None:
            acked, committed = self._acked[tp], self._committed_offset[tp]
            if acked and committed is not None and min(acked) > committed \
                    and not gap_covers(self._gap[tp].overlap(committed, min(acked)), committed, min(acked)):
                return None  # Faust would commit past one missing record at the head
            return cast(int | None, super()._new_offset(tp))

        async def _add_gap(self, tp: TP, offset_from: int, offset_to: int) -> None:
            committed = self._committed_offset[tp]
            if committed is not None:
                offset_from = max(offset_from, committed)  # Faust's committed + 1 drops a gap at the head
            if offset_from <= offset_to:
                gap = self._gap[tp]
                gap.addi(offset_from, offset_to + 1)
                gap.merge_overlaps()

        # --- seeks: never in the middle of a fetched batch --------------------------------------------

        async def perform_seek(self) -> None:
            """Faust's seek to the committed offsets, with the read offset one before each (the last one
            read, as the delivery loop keeps it), so that a gap right at the committed offset is seen."""
            async with self._delivery_lock:
                self._seeks.clear()  # every partition is sought to its commit here
                sought = await self.seek_to_committed()
                committed = {TP(tp.topic, tp.partition): offset for tp, offset in sought.items()}
                for tp, offset in (await self._first_offsets(committed)).items():
                    await super().seek(tp, offset)  # aiokafka seeks only committed offsets above 0
                    committed[tp] = offset
                for tp, offset in committed.items():
                    self._read_offset[tp] = offset - 1 if offset else None
                    if offset is not None:
                        self._committed_offset[tp] = offset
                self._new_epoch(self.assignment())

        async def _first_offsets(self, committed: Mapping[TP, int | None]) -> dict[TP, int]:
            """Where each input partition with no commit above 0 starts: 0 when the group committed 0, else
            (nothing committed) the first offset the broker holds, as `auto_offset_reset=earliest` reads.
            Without the seek such a partition kept its fetch position across a rebalance, past records
            delivered before it that no one then wrote; without the offset Faust's commit had no head to
            hold, and went past a first record never acked."""
            changelogs = self.app.tables.changelog_topics
            fresh = [tp for tp, offset in committed.items() if not offset and tp.topic not in changelogs]
            if not fresh or self.app.conf.consumer_auto_offset_reset != "earliest":
                return {}
            unset = [tp for tp in fresh if committed[tp] is None]
            starts = await self.earliest_offsets(*unset) if unset else {}
            return {tp: 0 if committed[tp] == 0 else starts[tp] for tp in fresh}

        async def seek(self, partition: TP, offset: int) -> None:
            async with self._delivery_lock:
                await self._seek_held(partition, offset)

        async def _seek_held(self, partition: TP, offset: int) -> None:
            await super().seek(partition, offset)
            self._read_offset[TP(partition.topic, partition.partition)] = offset - 1 if offset else None
            self._new_epoch([partition])

        def read_again(self, tps: Iterable[Any]) -> dict[TP, int]:
            """Forgets what was delivered and acked of these partitions since their commit, at once, and has
            the delivery loop seek them back to it before its next fetch (the caller, the agent whose batch
            failed, may be what the loop waits on). Returns the offsets they are read again from."""
            assigned = self.assignment()
            offsets: dict[TP, int] = {}
            for tp in (TP(tp.topic, tp.partition) for tp in tps):
                committed = self._committed_offset.get(tp)
                if tp in assigned and committed is not None:
                    self._acked.pop(tp, None)
                    self._acked_index.pop(tp, None)
                    offsets[tp] = committed
            self._new_epoch(offsets)
            self._seeks.update(offsets)
            return offsets

        async def seek_wait(self, partitions: Mapping[TP, int]) -> None:
            async with self._delivery_lock:
                await super().seek_wait(partitions)
                self._new_epoch(partitions)

        # --- table recovery ---------------------------------------------------------------------------

        async def highwaters(self, *partitions: TP) -> Mapping[TP, int]:
            """The ends of these partitions as the broker has them (last stable offsets: the consumer reads
            committed records only). Faust takes the consumer's cached last stable offset instead, unknown
            until the partition was fetched once: at start-up a changelog partition not fetched yet looked
            empty, was not restored at all, and a store that had saved its offset failed the consistency
            check (saved offset past the end)."""
            consumer = self._thread._ensure_consumer()
            return cast(Mapping[TP, int], await self._thread.call_thread(consumer.end_offsets, list(partitions)))

        def delivering_any(self, tps: Iterable[Any]) -> bool:
            """True while records of these partitions are in the fetch being handed to the streams."""
            return not self._pending_tps.isdisjoint(TP(tp.topic, tp.partition) for tp in tps)

        # --- the consumer thread ----------------------------------------------------------------------

        def _new_consumer_thread(self) -> Any:
            return ShortPollThread(self, loop=self.loop, beacon=self.beacon)

        # --- the delivery loop ------------------------------------------------------------------------

        async def _drain_messages(self, fetcher: Any) -> None:
            consumer_stopped = self._stopped.is_set
            fetcher_stopped = fetcher._stopped.is_set
            try:
                while not (consumer_stopped() or fetcher_stopped()):
                    if not self.flow_active:
                        await self.wait(self.can_resume_flow)
                        continue
                    async with self._delivery_lock:
                        if self.flow_active and not self.should_stop:
                            await self._fetch_and_deliver()
                    await asyncio.sleep(0)
            except self.consumer_stopped_errors:
                if self.transport.app.should_stop:
                    self.log.info("Broker stopped consumer, shutting down...")
                    return
                raise
            except asyncio.CancelledError:
                if self.transport.app.should_stop:
                    self.log.info("Consumer shutting down for user cancel.")
                    return
                raise
            except Exception as exc:
                self.log.exception("Drain messages raised: %r", exc)
                raise

        async def _fetch_and_deliver(self) -> None:
            if self._seeks:
                seeks, self._seeks = self._seeks, {}
                assigned = self.assignment()
                for tp, offset in seeks.items():
                    if tp in assigned:
                        await self._seek_held(tp, offset)
            if not await self._wait_for_active(1.0):
                return
            epochs = dict(self._epochs)
            records, active = await self._wait_next_records(1.0)
            if not records or self.should_stop:
                return
            generation = self.app.consumer_generation_id
            chunked = getattr(self.app, "chunked_topics", ())
            self._pending_tps = set(records)
            try:
                for tp in [tp for tp in records if tp.topic in chunked]:
                    fetched = records.pop(tp)
                    for at in range(0, len(fetched), CHUNK_RECORDS):
                        go = self._may_deliver(tp, epochs, generation, active)
                        if go is None:
                            return
                        if not go:
                            break
                        if not await self._deliver_chunk(tp, fetched[at:at + CHUNK_RECORDS], epochs.get(tp, 0),
                                                         generation):
                            return
                for n, (tp, record) in enumerate(self.scheduler.iterate(
                        {tp: batch for tp, batch in records.items() if tp.topic not in chunked})):
                    go = self._may_deliver(tp, epochs, generation, active)
                    if go is None:
                        return
                    if not go:
                        continue
                    message = self._to_message(tp, record)
                    setattr(message, EPOCH, epochs.get(tp, 0))
                    if not await self._deliver(tp, message):
                        return
                    if n % 100 == 99:
                        await asyncio.sleep(0)
            finally:
                self._pending_tps = set()

        def _may_deliver(self, tp: TP, epochs: Mapping[TP, int], generation: int, active: set[TP] | None) -> bool | None:
            """True to deliver the partition's fetched records, False to skip them (paused), None to stop
            delivering the fetch: a rebalance or seek came first, and the rest is read again after it."""
            if (not self.flow_active or self.app.consumer_generation_id != generation
                    or self._epochs.get(tp, 0) != epochs.get(tp, 0)):
                return None
            if active is not None and tp not in active and tp not in self._buffered_partitions:
                return False
            try:
                highwater = self.highwater(tp)
            except AssertionError:  # revoked by the consumer thread before the flow stopped
                return None
            self.app.monitor.track_tp_end_offset(tp, highwater)
            self._ends[tp] = highwater
            return True

        async def _deliver(self, tp: TP, message: Any) -> bool:
            """Hands one record to the streams; False when the flow stopped first (it is not marked read)."""
            offset = message.offset
            read = self._read_offset[tp]
            if read is not None and offset < read:
                return True  # delivered before this batch was fetched again
            if read is not None and offset - read > 1 and self.app.topics.acks_enabled_for(message.topic):
                await self._add_gap(tp, read + 1, offset - 1)  # offsets with no record (markers, compaction)
            return await self._hand_over(tp, message)

        async def _deliver_chunk(self, tp: TP, records: list[Any], epoch: int, generation: int) -> bool:
            """Hands a partition's fetched records to the streams as one chunk (app/worker/chunks.py), with the
            offsets between them recorded as gaps; False when the flow stopped first."""
            read = self._read_offset[tp]
            if read is not None and records[0].offset <= read:
                records = [record for record in records if record.offset > read]  # delivered before a seek
                if not records:
                    return True
            if self.app.topics.acks_enabled_for(tp.topic):
                before = read
                if before is None or records[-1].offset - before != len(records):  # not consecutive from `read`
                    for record in records:
                        if before is not None and record.offset - before > 1:
                            await self._add_gap(tp, before + 1, record.offset - 1)
                        before = record.offset
            chunk = Chunk(tp, records, generation)
            setattr(chunk, EPOCH, epoch)
            return await self._hand_over(tp, chunk)

        async def _hand_over(self, tp: TP, message: Any) -> bool:
            if self._commit_every is not None and self._n_acked >= self._commit_every:
                self._n_acked = 0
                await self.commit()
            if not self.flow_active:  # suspended while committing or recording a gap
                return False
            self._delivering = message
            try:
                # A delivery that does not wait (the stream's buffer has room) costs no task; one that waits
                # races a suspended flow, as in Faust.
                delivered, rest = eager.start(self.callback(message))
                if not delivered:
                    results = await self.wait_first(rest, self.suspend_flow.wait())
                    if results.stopped or rest not in results.done:
                        return False
            finally:
                self._delivering = None
            self._read_offset[tp] = message.offset
            return True

        # --- the watchdog -----------------------------------------------------------------------------

        async def on_start(self) -> None:
            await super().on_start()
            self.add_future(self._stall_watchdog())

        async def _stall_watchdog(self) -> None:
            while not self.should_stop:
                await self.sleep(stall_check_s)
                if self.should_stop:
                    return
                try:
                    await self.check_stalls()
                except Exception as exc:  # a broker hiccup: the next check tries again
                    log.warning("stall watchdog: %s: %s", type(exc).__name__, exc)

        async def check_stalls(self) -> list[TP]:
            """Seeks back every stalled partition; returns them."""
            if self.app.rebalancing or not self.flow_active:
                self._watch.clear()
                return []
            changelogs = self.app.tables.changelog_topics
            assigned = self.assignment()
            watched = [tp for tp in self._get_active_partitions() if tp in assigned and tp.topic not in changelogs
                       and self.app.topics.acks_enabled_for(tp.topic)]
            stalled: list[TP] = []
            states: dict[TP, PartitionState] = {}
            starts = await self.earliest_offsets(*watched) if watched else {}
            for tp in watched:
                try:
                    states[tp] = state = await self._partition_state(tp, starts.get(tp))
                except IllegalStateError:  # revoked since the check began: its new owner watches it
                    continue
                if deleted_unprocessed(state):
                    await self._commit_past_deleted(tp, state)
                    continue
                before = self._watch.get(tp)
                if before is not None and is_stalled(before, state):
                    stalled.append(tp)
            self._watch = states
            for tp in stalled:
                committed = states[tp].committed
                assert committed is not None
                log.warning("partition %s[%d] stalled at committed offset %d (read up to %s, fetched up to %s, "
                            "nothing in flight): seeking back to it", tp.topic, tp.partition, committed,
                            states[tp].read, states[tp].position)
                PARTITION_STALLS.labels(topic=tp.topic, partition=str(tp.partition)).inc()
                await self.seek(tp, committed)
                self._watch.pop(tp, None)
            return stalled

        async def _commit_past_deleted(self, tp: TP, state: PartitionState) -> None:
            assert state.committed is not None and state.log_start is not None
            lost = deleted_unprocessed(state)
            log.error("partition %s[%d]: %d records (offsets %d to %d) were deleted by the topic's retention "
                      "before they were processed; committing past them", tp.topic, tp.partition, lost,
                      state.committed, state.log_start - 1)
            RECORDS_DELETED_UNPROCESSED.labels(topic=tp.topic, partition=str(tp.partition)).inc(lost)
            await self._add_gap(tp, state.committed, state.log_start - 1)
            offsets = {TopicPartition(tp.topic, tp.partition): state.log_start}
            if self.in_transaction:
                await self.transactions.commit(offsets)
            else:
                await self._commit(offsets)
            self._committed_offset[tp] = state.log_start
            self._watch.pop(tp, None)

        async def _partition_state(self, tp: TP, log_start: int | None = None) -> PartitionState:
            committed = self._committed_offset[tp]
            in_flight = {offset for m in list(self._unacked_messages) if m.tp == tp for offset in offsets_of(m)}
            for channel in self.app.topics._tp_index.get(tp, ()):
                in_flight.update(offset for event in list(channel.queue._queue) if event.message.tp == tp
                                 for offset in offsets_of(event.message))
            delivering = self._delivering
            if delivering is not None and delivering.tp == tp:
                in_flight.update(offsets_of(delivering))
            gap = self._gap.get(tp)
            return PartitionState(
                committed=committed, read=self._read_offset[tp], position=await self.position(tp),
                in_flight=frozenset(in_flight),
                acked=committed is not None and committed in self._acked_index.get(tp, ()),
                in_gap=committed is not None and gap is not None and bool(gap.at(committed)),
                pending=tp in self._pending_tps, log_start=log_start)

    return ConsistentConsumer
