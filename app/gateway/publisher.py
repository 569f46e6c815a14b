"""Where the gateway hands accepted input: Kafka, or the fsynced disk spool when Kafka cannot take it.

The guarantee behind a `202`: every message is acknowledged by Kafka (acks=all, idempotent producer) or
fsynced to the spool. What is spooled is replayed to Kafka in FIFO order by one background task, at
start-up first. While anything is pending in the spool, new messages go to the spool too, so a key's
messages keep their order. When the spool cannot take them either (its size bound, a full disk) the request
is refused with 503 and Retry-After, and none of its messages is ever delivered; the spool takes appends again
by itself once it has room.

Delivery is at-least-once, not exactly-once: a send that timed out may still land after we spooled it, and a
crash between Kafka's ack and the spool's checkpoint re-sends one batch. Every message carries its event id
(the idempotency key when given), which consumers dedup on; counting first occurrences, every acknowledged
message arrives exactly once and in order per key. The replay uses its own producer, and a failed send drops
that producer (a fresh one, with a new producer id, makes the next attempt), so a batch the old producer is
still retrying cannot interleave with the replay.
"""
from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass

from ingestflow.app.clients.kafka import OutgoingMessage, Producer
from ingestflow.app.core.errors import PayloadTooLarge, Unavailable
from ingestflow.app.core.limits import MAX_RECORD_BYTES
from ingestflow.app.core.observability import (SPOOL_BYTES, SPOOL_FAILED, SPOOL_MAX_BYTES, SPOOL_PENDING,
                                               SPOOL_REPLAYED, SPOOLED)
from ingestflow.app.core.retry import backoff_delay

from .spool import Spool

__all__ = ["Publisher", "BufferStatus", "Qos"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Qos:
    """Fire-and-forget (QoS 0): answer after the local append; send when `buffer_max` messages wait or
    `buffer_ms` passed, whichever comes first."""

    buffer_ms: int
    buffer_max: int


@dataclass(frozen=True)
class BufferStatus:
    pending: int
    failed: int
    kafka_healthy: bool
    spool_bytes: int
    spool_problem: str | None  # why the spool refuses appends now (full, disk full, disk failing)
    spool_max_bytes: int

    @property
    def spool_writable(self) -> bool:
        return self.spool_problem is None

    def to_json(self) -> dict[str, object]:
        return {"pending": self.pending, "failed": self.failed, "kafkaHealthy": self.kafka_healthy,
                "spoolBytes": self.spool_bytes, "spoolMaxBytes": self.spool_max_bytes,
                "spoolWritable": self.spool_writable, "spoolProblem": self.spool_problem}


class Publisher:
    def __init__(self, producer: Producer, spool: Spool, replay_producer: Producer, *,
                 replay_batch: int = 2000, handover_max: int = 10_000, handover_wait_s: float = 1.0) -> None:
        self._producer = producer
        self._spool = spool
        self._replay_producer = replay_producer
        self._replay_batch = replay_batch
        self._handover_max = handover_max
        self._handover_wait_s = handover_wait_s
        self._kafka_healthy = False
        self._wake = asyncio.Event()
        self._empty = asyncio.Event()
        self._replayer: asyncio.Task[None] | None = None
        self._timers: set[asyncio.TimerHandle] = set()
        self._ping: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Open the spool (a failure here stops start-up: without it a 202 could not be honoured), start the
        replay task, then try Kafka (not required to start)."""
        await self._spool.open()
        self._publish_gauges()
        if not self._spool.pending:
            self._empty.set()
        if self._replayer is None:
            self._replayer = asyncio.create_task(self._replay_loop(), name="spool-replay")
        self._wake.set()
        try:
            await self._producer.start()
            self._kafka_healthy = True
        except Unavailable as exc:
            log.warning("kafka not reachable at start-up: %s", exc.message)

    async def stop(self) -> None:
        for timer in self._timers:
            timer.cancel()
        self._timers.clear()
        if self._replayer is not None:
            self._replayer.cancel()
            await asyncio.gather(self._replayer, return_exceptions=True)
            self._replayer = None
        await self._producer.stop()
        await self._replay_producer.stop()
        await self._spool.close()

    async def publish(self, messages: Sequence[OutgoingMessage], qos: Qos | None = None) -> str:
        """Return "kafka" or "spool": where the messages are durably held. Raises SpoolFull / Unavailable."""
        for m in messages:
            if m.size > MAX_RECORD_BYTES:
                raise PayloadTooLarge(f"one item encodes to {m.size} bytes; "
                                      f"the limit per item is {MAX_RECORD_BYTES}")
        if qos is not None:
            await self._to_spool(messages)
            self._schedule(qos)
            return "spool"
        if self._spool.pending and self._kafka_healthy and self._spool.pending <= self._handover_max:
            await self._handover()
        if self._spool.pending or not self._kafka_healthy:
            await self._to_spool(messages)
            self._wake.set()
            return "spool"
        try:
            await self._producer.send_many(messages)
        except Unavailable as exc:
            self._kafka_healthy = False
            log.warning("kafka unavailable, spooling %d messages: %s", len(messages), exc.message)
            await self._to_spool(messages)
            self._wake.set()
            return "spool"
        self._kafka_healthy = True
        return "kafka"

    async def _handover(self) -> None:
        """Kafka is back and the replay is close to done: wait (briefly) for the spool to empty instead of
        adding to it, so that under steady load the gateway returns to answering from Kafka. Whoever waits
        sends after everything spooled before it, so order per key holds."""
        self._wake.set()
        try:
            await asyncio.wait_for(self._empty.wait(), self._handover_wait_s)
        except asyncio.TimeoutError:
            pass

    async def _to_spool(self, messages: Sequence[OutgoingMessage]) -> None:
        self._empty.clear()
        try:
            await self._spool.append(messages)
        except Unavailable:
            self._wake.set()  # nothing was added: the replay loop tells whether the spool is empty again
            raise
        SPOOLED.inc(len(messages))
        self._publish_gauges()

    def _schedule(self, qos: Qos) -> None:
        if self._spool.pending >= qos.buffer_max or qos.buffer_ms == 0:
            self._wake.set()
            return
        timer = asyncio.get_running_loop().call_later(qos.buffer_ms / 1000, self._wake_from_timer)
        self._timers.add(timer)

    def _wake_from_timer(self) -> None:
        self._timers = {t for t in self._timers if not t.cancelled() and t.when() > time.monotonic()}
        self._wake.set()

    async def _replay_loop(self) -> None:
        """Drain the spool whenever it has something; back off while Kafka refuses, and while messages are
        counted that no drain finds (it never spins)."""
        attempt = 0
        while True:
            await self._wake.wait()
            self._wake.clear()
            if not self._spool.pending and not self._spool.status().segments:
                self._empty.set()
                continue
            try:
                started = time.perf_counter()
                sent = await self._spool.drain(self._replay_send, batch=self._replay_batch)
            except Unavailable as exc:
                self._kafka_healthy = False
                attempt += 1
                delay = backoff_delay(attempt, base=0.2, cap=2.0)
                log.warning("spool replay paused (%s); %d pending, retrying in %.1fs", exc.message,
                            self._spool.pending, delay)
                self._publish_gauges()
                await asyncio.sleep(delay)
                self._wake.set()
                continue
            except Exception:  # a bug must not end replay for good: log, back off, go on
                log.exception("spool replay failed")
                attempt += 1
                await asyncio.sleep(backoff_delay(attempt, base=0.2, cap=5.0))
                self._wake.set()
                continue
            self._publish_gauges()
            if self._spool.pending and not sent:
                attempt += 1
                delay = backoff_delay(attempt, base=0.2, cap=5.0)
                log.warning("spool: %d messages counted but none found to replay; retrying in %.1fs",
                            self._spool.pending, delay)
                await asyncio.sleep(delay)
                self._wake.set()
                continue
            attempt = 0
            if sent:
                log.info("spool replayed %d messages in %.2fs", sent, time.perf_counter() - started)
            if self._spool.pending:
                self._wake.set()
            elif not self._spool.status().segments:
                self._empty.set()

    async def _replay_send(self, batch: Sequence[OutgoingMessage]) -> None:
        await self._replay_producer.send_many(batch)
        self._kafka_healthy = True  # acknowledged: Kafka takes messages again
        SPOOL_REPLAYED.inc(len(batch))

    def _publish_gauges(self) -> None:
        status = self._spool.status()
        SPOOL_PENDING.set(status.pending)
        SPOOL_FAILED.set(status.failed)
        SPOOL_BYTES.set(status.bytes)
        SPOOL_MAX_BYTES.set(self._spool.max_bytes)

    def status(self) -> BufferStatus:
        s = self._spool.status()
        return BufferStatus(pending=s.pending, failed=s.failed, kafka_healthy=self._kafka_healthy,
                            spool_bytes=s.bytes, spool_problem=s.problem, spool_max_bytes=self._spool.max_bytes)

    async def ping(self) -> None:
        """One probe at a time, shielded: a health check that gives up (its own timeout) must not cancel
        a producer half-way through start-up, which would leak its connections."""
        if self._ping is None or self._ping.done():
            self._ping = asyncio.create_task(self._producer.ping())
            self._ping.add_done_callback(lambda t: t.cancelled() or t.exception())
        try:
            await asyncio.shield(self._ping)
        except Exception:  # whatever the failure, Kafka cannot take messages now
            self._kafka_healthy = False
            raise
        self._kafka_healthy = True
