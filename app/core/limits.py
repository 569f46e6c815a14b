"""Sizes every process agrees on."""
from __future__ import annotations

__all__ = ["MAX_RECORD_BYTES", "MAX_EVENT_AGE_DAYS", "EVENTS_RETENTION_DAYS"]

# The largest Kafka record any process of ours produces (the worker's producer max request size, as aiokafka
# measures a one-record batch): one ingested item, a table changelog value, a dead letter. Below the broker's
# default message.max.bytes (1,048,588), so every topic accepts it.
MAX_RECORD_BYTES = 1_000_000

# The UTC days an analytics event can still be counted on, today included: the daily counts (table
# `rule-daily`) keep this many days of windows. An older event is refused by the gateway and the importer
# and dropped as late by the worker: counting it into a window already expired would start that day's total
# again from zero and overwrite the complete total in PostgreSQL.
MAX_EVENT_AGE_DAYS = 35
# `events` records are stamped with their event time, and a broker deletes a record once its timestamp is
# older than the topic's retention, read or not: the topic keeps a week past the oldest event accepted,
# so an accepted event is deleted only after a worker had a week to count it.
EVENTS_RETENTION_DAYS = MAX_EVENT_AGE_DAYS + 7
