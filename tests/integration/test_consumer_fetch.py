"""The worker's consumer (app/worker/consumer.py) against the real broker: a partition Faust took out of the
fetch because its stream buffer was under pressure rejoins a fetch already waiting, instead of waiting for
that fetch's timeout (on a backlog, a third of the worker's time went to that wait), and one rejoining an
empty active set is fetched at once, instead of after Faust's one-second sleep."""
from __future__ import annotations

import asyncio
from typing import Any

import faust
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from faust.types import TP

from ingestflow.app.clients.kafka import ensure_topics
from ingestflow.app.worker.consumer import consistent_delivery
from ingestflow.schemas.topics import TopicSpec

from ..conftest import BASE_ENV, plaintext_kafka
from .conftest import eventually

KAFKA = BASE_ENV["KAFKA_BOOTSTRAP_SERVERS"]
FETCH_TIMEOUT_S = 30.0  # a fetch not woken returns nothing after this; a woken one returns at once


RECORDS = [f"record {n}".encode() for n in range(10)]


async def topic_with_records(topic: str, partitions: int, busy: int) -> None:
    """A topic with RECORDS in partition `busy` and nothing in the others."""
    await ensure_topics(plaintext_kafka(KAFKA), [TopicSpec(topic, key="k", partitions=partitions)])
    producer = AIOKafkaProducer(bootstrap_servers=KAFKA)
    await producer.start()
    try:
        for value in RECORDS:
            await producer.send_and_wait(topic, value, partition=busy)
    finally:
        await producer.stop()


def worker_consumer(app_id: str) -> Any:
    """The worker's consumer class on an app that is never started: its thread is bound to a test's loop."""
    app = faust.App(app_id, broker=f"kafka://{KAFKA}", autodiscover=False)
    setattr(app.transport, "Consumer", consistent_delivery(app.transport.Consumer, stall_check_s=30.0))
    return app.consumer


async def test_a_partition_back_from_buffer_pressure_is_taken_by_the_fetch_already_waiting(
        services: None, unique: str) -> None:
    topic = f"fetch-wake-{unique}"
    busy, idle = TP(topic, 0), TP(topic, 1)
    await topic_with_records(topic, 2, busy.partition)
    consumer = worker_consumer(topic)
    kafka = AIOKafkaConsumer(bootstrap_servers=KAFKA, enable_auto_commit=False)
    await kafka.start()
    try:
        thread = consumer._thread  # the consumer thread, run here on this test's loop
        thread._consumer, thread.thread_loop = kafka, asyncio.get_running_loop()
        kafka.assign([TopicPartition(*busy), TopicPartition(*idle)])
        await kafka.seek_to_beginning()
        fetcher = kafka._fetcher
        await eventually(lambda: busy in fetcher._records, timeout=60)  # its records wait in the fetcher

        consumer._set_active_tps({busy, idle})
        consumer.on_buffer_full(busy)  # its stream buffer is under pressure: Faust fetches the others only
        active = consumer._get_active_partitions()
        assert active == {idle}
        fetch = asyncio.ensure_future(fetcher.fetched_records(active, timeout=FETCH_TIMEOUT_S))
        await eventually(lambda: bool(fetcher._fetch_waiters), timeout=60)  # waiting for the idle partition

        consumer.on_buffer_drop(busy)  # the buffer drained
        records = await fetch
        assert [r.value for r in records.get(TopicPartition(*busy), [])] == RECORDS
    finally:
        await kafka.stop()


async def test_a_delivery_that_began_with_every_partition_under_pressure_takes_the_first_one_back(
        services: None, unique: str) -> None:
    """Faust's loop, finding no partition active, slept a whole second and fetched nothing; ours waits for a
    partition to rejoin and delivers its records in the same step."""
    topic = f"fetch-idle-{unique}"
    only = TP(topic, 0)
    await topic_with_records(topic, 1, only.partition)
    consumer = worker_consumer(topic)
    delivered: list[bytes] = []

    async def callback(message: Any) -> None:
        delivered.append(message.value)

    consumer.callback = callback
    kafka = AIOKafkaConsumer(bootstrap_servers=KAFKA, enable_auto_commit=False)
    await kafka.start()
    try:
        thread = consumer._thread  # the consumer thread, run here on this test's loop

        async def call_here(fun: Any, *args: Any, **kwargs: Any) -> Any:
            return await fun(*args, **kwargs)

        thread._consumer, thread.thread_loop, thread.call_thread = kafka, asyncio.get_running_loop(), call_here
        kafka.assign([TopicPartition(*only)])
        await kafka.seek_to_beginning()
        await eventually(lambda: only in kafka._fetcher._records, timeout=60)

        consumer._set_active_tps({only})
        consumer.on_buffer_full(only)  # the only partition's stream buffer is under pressure
        assert not consumer._get_active_partitions()
        step = asyncio.ensure_future(consumer._fetch_and_deliver())
        for _ in range(10):
            await asyncio.sleep(0)  # the step is waiting: no partition to fetch from
        assert not step.done()

        consumer.on_buffer_drop(only)  # the buffer drained
        await asyncio.wait_for(step, timeout=60)
        assert delivered == RECORDS
    finally:
        await kafka.stop()
