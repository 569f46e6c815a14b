"""Faust's own ceiling for bench_pipeline.py: a Faust app built with the worker's own settings
(app/worker/faust_app.py: exactly-once, raw bytes, producer linger, lean sensors) whose one agent takes
`events` the way Faust delivers a topic, one record at a time into batches of 1,000 (`take_events`), and
only decodes each event: no tables, no PostgreSQL.

Whatever this reaches is what Faust's per-record plumbing allows on this machine. The worker takes `events`
in chunks instead (app/worker/chunks.py), so its rate divided by this one shows what that delivery gains
net of everything the worker does on top.

    python bench/bare_faust.py      # started by bench_pipeline.py with the worker's environment
"""
from __future__ import annotations

from typing import Any

from ingestflow.agents.rule_metrics import BATCH_WITHIN_S
from ingestflow.app.core.clock import utc_from_ms
from ingestflow.app.core.settings import Settings
from ingestflow.app.worker.faust_app import QuietWorker, new_app, prometheus_sensors
from ingestflow.schemas import topics
from ingestflow.schemas.events import decode

settings = Settings.from_env()
app = new_app(settings, web=False)
prometheus_sensors(app)
BATCH_SIZE = 1000  # events per batch, as Faust's take_events counts them
events = app.topic(topics.EVENTS.name, key_type=bytes, value_type=bytes, key_serializer="raw",
                   value_serializer="raw")


@app.agent(events, name="bare")
async def bare(stream: Any) -> None:
    async for batch in stream.take_events(BATCH_SIZE, within=BATCH_WITHIN_S):
        for event in batch:
            decode(event.value, utc_from_ms(int(event.message.timestamp * 1000)))


if __name__ == "__main__":
    QuietWorker(app, loglevel="WARNING", redirect_stdouts=False).execute_from_commandline()
