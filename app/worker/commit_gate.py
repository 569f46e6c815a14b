"""Keeps each batch's table writes inside one Kafka transaction under exactly-once.

A batch's table writes are sent to the changelogs in the partition's transaction once the batch has made
them (`send_changes`, app/worker/changelog_batches.py), in the background, one send after the other per
transaction; records an agent sends to other topics go through the app's producer buffer, which a
background task hands to the transactional producer later, and Faust's exactly-once commit
(`TransactionManager.commit`) does not empty that buffer first (its at-least-once path does flush). The
gate keeps both whole: an agent writes a batch's tables and hands its changes and records over under the
gate, and a commit takes the gate, empties the buffer and waits for every change sent before committing.
So a commit sees every write and record of a batch or none: never a dedup key without its counts.

The commit is also where table state follows Kafka (app/worker/state_store.py): after a partition's
transaction commits, its writes reach RocksDB with their changelog offset; a fenced transaction's writes
are dropped. Window expiry (`expire_windows`, every TABLE_EXPIRY_INTERVAL_S) writes its tombstones and
deletes into the partition's transaction and commits it with the partition's committed offsets.

A rebalance ends a partition's transactions on this worker: from then on its records are read again by its
new owner, and a table write for it here would go into a transaction the owner fences. So `writes` yields a
test of whether an event is still this worker's (delivered since its partition's last revocation or seek,
app/worker/consumer.py), and agents write only those; and the producers of revoked partitions are stopped
at the rebalance. Faust 0.15.3 stops them only when the partition is not made a standby here, which with two
workers and one standby replica it always is: the revoked partition's producer stayed open, a batch taken
before the rebalance was written through it after, and the new owner's producer fenced it, crashing the
worker.

A batch an agent fails to handle is rolled back (`read_again`, app/worker/failed_batches.py): its
partitions' transactions are aborted with everything written since their commit, and the consumer reads
them again from it; a commit whose offsets were computed before that leaves those partitions out.

The partitions' transactions commit concurrently: they are independent (one producer each), and a commit
holds the gate, so its length is time no batch is written.
"""
from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from contextlib import asynccontextmanager
from typing import Any, cast

from aiokafka import TopicPartition
from aiokafka.errors import ProducerFenced
from faust.transport.consumer import TransactionManager

from .changelog_batches import send_changes
from .state_store import StateStore
from .state_table import expire_partition, stores_of_group

__all__ = ["CommitGate", "Current", "all_current", "gated_transactions"]

log = logging.getLogger(__name__)

Current = Callable[[Any], bool]  # is this event still this worker's to write tables for?


def all_current(event: Any) -> bool:
    """The test of a gate with no consumer behind it (unit tests): every event is current."""
    return True


class CommitGate:
    def __init__(self, flush: Callable[[], Awaitable[Any]], current: Current = all_current) -> None:
        self._lock = asyncio.Lock()
        self._flush = flush
        self._current = current

    @asynccontextmanager
    async def writes(self) -> AsyncIterator[Current]:
        """Around a batch's table writes, yielding the test of which events may still be written (a rebalance
        cannot happen between the test and a write made without an await); on exit the batch's records are
        with the producer and its table changes on their way to the changelogs."""
        async with self._lock:
            yield self._current
            await self._flush()

    @asynccontextmanager
    async def committing(self) -> AsyncIterator[None]:
        """Around a commit: no batch is half written, nothing written is left in the buffer, and every
        table change is on its way (the commit waits for it to arrive)."""
        async with self._lock:
            await self._flush()
            yield

    async def flush(self) -> None:
        """Hands what was written since to the producer (within `committing`)."""
        await self._flush()


def gated_transactions(gate: CommitGate) -> type[TransactionManager]:
    """Faust's transaction manager with its commit taken under the gate (set as the transport's class)."""

    class GatedTransactionManager(TransactionManager):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self._sending: dict[str, asyncio.Future[None]] = {}  # transactional id -> its changes on their way

        async def commit(self, offsets: Mapping[Any, int], start_new_transaction: bool = True) -> bool:
            return bool(await self.commit_current(offsets, start_new_transaction))

        async def commit_current(self, offsets: Mapping[Any, int],
                                 start_new_transaction: bool = True) -> dict[Any, int]:
            """Commits the offsets of partitions not rolled back since they were computed; returns those."""
            consumer: Any = self.consumer
            async with gate.committing():
                current: dict[Any, int] = consumer.unchanged_since_commit_began(offsets)
                if current:
                    await self._commit(current, start_new_transaction)
            return current

        async def read_again(self, tps: Iterable[Any]) -> dict[Any, int]:
            """Rolls back everything written since the last commit for these partitions' transactions: every
            source partition of them is read again from its committed offset (returned), the tables' pending
            writes are dropped, and each transaction's producer is replaced: registering the new one aborts the
            open transaction on the broker, whether or not the old one could still reach it."""
            app, consumer = self.app, cast(Any, self.consumer)
            async with gate.committing():
                tids = self._tids(tps)
                internal = app.tables.changelog_topics | consumer.randomly_assigned_topics  # the leader topic
                sources = [tp for tp in consumer.assignment() if tp.topic not in internal and self._tid(tp) in tids]
                offsets: dict[Any, int] = consumer.read_again(sources)
                for tp in sources:
                    for table in stores_of_group(app, app.assignor.group_for_topic(tp.topic)):
                        table.data.discard(tp.partition)
                self._drop_sending(tids)
                for tid in sorted(tids):
                    await self.producer.stop_transaction(tid)
                    await self.producer.maybe_begin_transaction(tid)
            return offsets

        async def on_rebalance(self, assigned: set[Any], revoked: set[Any], newly_assigned: set[Any]) -> None:
            """Stops the producer of every transaction no longer this worker's, and starts the missing ones
            (Faust's skips a revoked partition that became a standby here, see above)."""
            active = self._tids(tp for tp in assigned if not self.app.assignor.is_standby(tp))
            running = set(getattr(self.producer, "_transaction_producers", {}))
            stale = sorted((self._tids(revoked) & running) - active)
            if stale:
                log.info("stopping %d transactional producer(s) of revoked partitions: %s", len(stale), stale)
                self._drop_sending(stale)
                for tid in stale:
                    await self.producer.stop_transaction(tid)
            starting = sorted(active - running)
            if starting:
                log.info("starting %d transactional producer(s) for assigned partitions", len(starting))
            # Side by side: each is a round trip or more to the transaction coordinator (a tenth of a second
            # each, in a row, of every rebalance's pause).
            await asyncio.gather(*(self.producer.maybe_begin_transaction(tid) for tid in starting))

        def _tids(self, tps: Iterable[Any]) -> set[str]:
            return {self._tid(tp) for tp in tps}

        async def expire_windows(self) -> int:
            """Deletes the keys of closed windows from every assigned partition (store and changelog), each
            batch in the partition's transaction, committed with its current offsets; returns how many."""
            expired = 0
            while True:
                async with gate.committing():
                    offsets = self._expiring()
                    if not offsets:
                        return expired
                    expired += await self._commit(offsets, True, expire=True)
                await asyncio.sleep(0)  # batches go on between two expiry commits

        def _expiring(self) -> dict[Any, int]:
            """One source partition and its committed offset per transaction with closed windows to expire."""
            consumer: Any = self.consumer
            changelogs = self.app.tables.changelog_topics
            found: dict[str, tuple[Any, int]] = {}
            for tp in consumer.assignment():
                committed = consumer._committed_offset.get(tp)
                if tp.topic in changelogs or committed is None or self._tid(tp) in found:
                    continue
                group = self.app.assignor.group_for_topic(tp.topic)
                if any(t.has_expired(tp.partition) for t in stores_of_group(self.app, group)):
                    found[self._tid(tp)] = (TopicPartition(tp.topic, tp.partition), committed)
            return dict(found.values())

        # --- the tables' changes on their way to the changelogs -------------------------------------

        def send_changes(self) -> None:
            """Starts sending every table's unsent changes into its partition's open transaction, after the
            changes already on their way there (called under the gate, so no write is half made)."""
            app = self.app
            found: dict[str, tuple[int, list[tuple[Any, dict[bytes, bytes | None]]]]] = {}
            for table in app.tables.values():
                store = table.data
                if not isinstance(store, StateStore):
                    continue
                for partition in store.unsent_partitions():
                    changes = store.take_unsent(partition)
                    try:
                        group = app.assignor.group_for_topic(table.changelog_topic.get_topic_name())
                    except KeyError:  # no longer assigned here: the partition's writes are discarded
                        continue
                    tid = f"{app.conf.id}-{group}-{partition}"
                    found.setdefault(tid, (partition, []))[1].append((table, changes))
            for tid, (partition, tables_changes) in found.items():
                self._sending[tid] = asyncio.ensure_future(
                    self._send_after(self._sending.get(tid), tid, partition, tables_changes))

        async def _send_after(self, before: asyncio.Future[None] | None, tid: str, partition: int,
                              changes: list[tuple[Any, dict[bytes, bytes | None]]]) -> None:
            if before is not None:
                await before  # a failed send fails those after it: the commit sees the first error
            producer: Any = self.producer
            lock = producer._trn_locks.get(tid)  # Faust's own: no begin or commit meanwhile
            if lock is None:
                raise RuntimeError(f"transaction {tid}: not begun, so table changes cannot be sent in it")
            async with lock:
                transaction_producer = producer._transaction_producers.get(tid)
                if transaction_producer is None:
                    raise RuntimeError(f"transaction {tid}: no producer to send table changes with")
                await send_changes(transaction_producer, changes, partition)

        async def _changes_sent(self, tid: str) -> None:
            """Every change sent for this transaction has reached Kafka (raises the first failure)."""
            sending = self._sending.pop(tid, None)
            if sending is not None:
                await sending

        def _drop_sending(self, tids: Iterable[str]) -> None:
            """The transactions are being aborted: their sends are cancelled and their outcome ignored."""
            for tid in tids:
                sending = self._sending.pop(tid, None)
                if sending is not None:
                    sending.cancel()
                    sending.add_done_callback(lambda f: f.cancelled() or f.exception())

        def _tid(self, tp: Any) -> str:
            return f"{self.app.conf.id}-{self.app.assignor.group_for_topic(tp.topic)}-{tp.partition}"

        async def _commit(self, offsets: Mapping[Any, int], start_new_transaction: bool, expire: bool = False) -> int:
            """Faust's commit, one transactional id at a time, the tables' state following each (and, with
            `expire`, closed windows expired into each); returns the keys expired."""
            app = self.app
            transactions: dict[str, tuple[int, dict[Any, int]]] = {}
            for tp, offset in offsets.items():
                transactions.setdefault(self._tid(tp), (tp.partition, {}))[1][tp] = offset
            tables = {tid: stores_of_group(app, app.assignor.group_for_topic(next(iter(tp_offsets)).topic))
                      for tid, (_, tp_offsets) in transactions.items()}
            expired = 0
            if expire:
                expired = sum(expire_partition(tables[tid], partition) for tid, (partition, _) in transactions.items())
                await gate.flush()

            async def commit_one(tid: str, partition: int, tp_offsets: dict[Any, int]) -> ProducerFenced | None:
                try:
                    await self._changes_sent(tid)
                    await self.producer.commit_transactions({tid: tp_offsets}, app.conf.id,
                                                            start_new_transaction=start_new_transaction)
                except ProducerFenced as exc:
                    for table in tables[tid]:
                        table.data.discard(partition)
                    log.warning("transaction %s fenced: %s", tid, exc)
                    return exc
                for table in tables[tid]:
                    table.data.commit(partition)
                return None

            fenced = [exc for exc in await asyncio.gather(*(commit_one(tid, partition, tp_offsets)
                                                            for tid, (partition, tp_offsets) in transactions.items()))
                      if exc is not None]
            if fenced:  # another process holds this worker's transactional id: this one is a zombie
                await app.crash(fenced[0])
            return expired

    return GatedTransactionManager
