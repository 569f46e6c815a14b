"""A Faust app with the worker's own settings and consumer (app/worker/faust_app.py new_app) whose one agent
appends "partition offset" of every record it is given to a file, with one fault forced deterministically:

    python -m tests.integration.delivery_app <topic> <partitions> <out-file> <fault>

- `seek-mid-batch`: records take 5 ms each; once 100 are processed, the next rebalance (a second instance
  joining the group) has its table recovery's seek to the committed offsets land once 20 records of a
  fetched batch were delivered, and the next record's delivery wait for that seek (at most 3 s).
- `lose-one`: the record at offset 50 of partition 0 never reaches the stream, once (a delivery lost for
  whatever reason).
- `lose-first`: the same for the record at offset 0, before the group has committed anything.
- `raise-once`: the agent takes batches and counts each record in a table, under the worker's commit gate;
  once, the batch holding offset 50 of partition 0 raises after its table writes. Each batch handled
  appends "count <partition> <table count>" too.
- `none`: no fault (the second instance).

Settings come from the environment like the worker's (WORKER_APP_ID, WORKER_PORT, STALL_CHECK_S, ...).
"""
from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from typing import Any

from ingestflow.app.core.settings import Settings
from ingestflow.app.worker.commit_gate import CommitGate, gated_transactions
from ingestflow.app.worker.consumer import delivered_now
from ingestflow.app.worker.failed_batches import FailedBatches
from ingestflow.app.worker.faust_app import QuietWorker, new_app, prometheus_sensors
from ingestflow.app.worker.table_event import for_tables

DELIVERED_BEFORE_SEEK = 20
LOST_OFFSETS = {"lose-one": 50, "lose-first": 0}
ARM_AFTER = 100

topic_name, partitions, out_path, fault = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
settings = Settings.from_env()
app = new_app(settings)
prometheus_sensors(app)
gate = CommitGate(lambda: app.producer.buffer.flush(), current=lambda event: delivered_now(app, event))
setattr(app.transport, "TransactionManager", gated_transactions(gate))  # as the worker (app/worker/app.py)
source = app.topic(topic_name, partitions=partitions, key_type=bytes, value_type=bytes, key_serializer="raw",
                   value_serializer="raw")
marks = app.Table("marks", default=int, partitions=partitions)  # a table: recovery runs as in the worker
out = Path(out_path)
base: Any = app.transport.Consumer


class ForcingConsumer(base):  # type: ignore[misc,valid-type]
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.delivered = 0
        self.armed = False  # the app triggered its rebalance: the next seek is forced mid-batch
        self.forcing = False
        self.seek_done = asyncio.Event()
        self.lost = False
        deliver = self.callback

        async def callback(message: Any) -> Any:
            if message.topic == topic_name:
                if (message.partition, message.offset) == (0, LOST_OFFSETS.get(fault)) and not self.lost:
                    self.lost = True
                    return None
                self.delivered += 1
                if self.forcing and self.delivered == DELIVERED_BEFORE_SEEK + 1:
                    try:
                        await asyncio.wait_for(self.seek_done.wait(), 3.0)
                    except asyncio.TimeoutError:
                        pass  # the seek waits for this batch
            return await deliver(message)
        self.callback = callback

    async def perform_seek(self) -> None:
        if self.armed and not self.forcing:  # the seek of the first rebalance after 100 records
            self.forcing, self.delivered = True, 0
            for _ in range(2000):
                if self.delivered >= DELIVERED_BEFORE_SEEK:
                    break
                await asyncio.sleep(0.01)
            await super().perform_seek()
            self.seek_done.set()
            print(f"forced: seek after {self.delivered} deliveries of the batch", flush=True)
            return
        await super().perform_seek()


setattr(app.transport, "Consumer", ForcingConsumer)
processed = 0


async def record_batches(stream: Any) -> None:
    failed_batches = FailedBatches(app, "record")
    raised = False
    async for events in stream.take_events(100, within=0.2):
        async with failed_batches.read_again_on_error(events):
            async with gate.writes() as current:
                events = [event for event in events if current(event)]
                for event in events:
                    for_tables(event)
                    marks[str(event.message.partition)] += 1
            if not raised and any((e.message.partition, e.message.offset) == (0, 50) for e in events):
                raised = True
                raise RuntimeError("forced failure after the batch's table writes")
            with out.open("a") as f:
                for event in events:
                    f.write(f"{event.message.partition} {event.message.offset}\n")
                for partition in sorted({event.message.partition for event in events}):
                    for_tables(next(e for e in events if e.message.partition == partition))
                    f.write(f"count {partition} {marks[str(partition)]}\n")


async def record_each(stream: Any) -> None:
    global processed
    async for event in stream.events():
        with out.open("a") as f:
            f.write(f"{event.message.partition} {event.message.offset}\n")
        processed += 1
        if fault == "seek-mid-batch":
            await asyncio.sleep(0.005)
            if processed == ARM_AFTER:
                consumer: Any = app.consumer
                consumer.armed = True


app.agent(source, name="record")(record_batches if fault == "raise-once" else record_each)

if __name__ == "__main__":
    QuietWorker(app, loglevel="INFO", redirect_stdouts=False).execute_from_commandline()
