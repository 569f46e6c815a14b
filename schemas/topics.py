"""Every Kafka topic the system uses, with its key and partition count.

A service may produce to these directly instead of going through the HTTP gateway; each topic's value
format is in the schema module named beside it and in `schemas/json/`.

Headers: every record the gateway produces carries `trace-id` (TRACE_ID_HEADER), the id of the HTTP request
that brought it: the trace id of the request's W3C `traceparent` header when it had a valid one, else its
`x-request-id` when that is a valid id, else one the gateway made (32 lowercase hex digits, also answered in
the `x-request-id` response header). A valid id is 1 to 64 characters of `A-Z a-z 0-9 . _ : -`, as ASCII
bytes; a worker ignores a `trace-id` that is not one. The worker logs it with the lines about the record or
its batch, stores it with the rows it writes (crawl_items.trace_id, transfer_logs.trace_ids) and passes it
on to what the record produces (notifications); a dead letter keeps it with the record's other headers.
Producers writing to the topics directly may set it the same way.
`events` and its co-partitioned `rules` catalog get their partition count from EVENTS_PARTITIONS when
they are created (`specs`): it caps how many workers share the analytics (docs/scaling.md). The other
topics keep 4. `events` is created with a retention of EVENTS_RETENTION_DAYS (its records carry event times,
which a shorter retention would delete before they are counted); the others take the broker's.
"""
from __future__ import annotations

from dataclasses import dataclass, replace

from ingestflow.app.core.limits import EVENTS_RETENTION_DAYS

__all__ = ["TopicSpec", "TRACE_ID_HEADER", "EVENTS", "STRIPE", "CRAWL", "RECORDS", "RULES", "NOTIFICATIONS", "DEAD_LETTERS", "ALL",
           "CONSUMED", "specs"]

TRACE_ID_HEADER = "trace-id"


@dataclass(frozen=True)
class TopicSpec:
    name: str
    key: str
    partitions: int = 4
    compacted: bool = False
    schema: str = ""
    retention_days: int | None = None  # None: the broker's log.retention

    def configs(self) -> dict[str, str]:
        """The topic configs it is created with."""
        configs = {"cleanup.policy": "compact"} if self.compacted else {}
        if self.retention_days is not None:
            configs["retention.ms"] = str(self.retention_days * 86_400_000)
        return configs


EVENTS = TopicSpec("events", key="ruleId", schema="events.schema.json", retention_days=EVENTS_RETENTION_DAYS)
STRIPE = TopicSpec("stripe-webhooks", key="Stripe event id", schema="stripe.schema.json")
CRAWL = TopicSpec("crawl-items", key="sourceId:externalId", schema="crawl.schema.json")
RECORDS = TopicSpec("website-records", key="user_id", schema="records.schema.json")
RULES = TopicSpec("rules", key="ruleId", compacted=True, schema="rules.schema.json")
NOTIFICATIONS = TopicSpec("notifications", key="authorId", schema="notifications.schema.json")
# Records that failed for their own content, byte for byte, with their source and error in headers
# (schemas/dead_letters.py has the header contract).
DEAD_LETTERS = TopicSpec("dead-letters", key="the original record's key", schema="dead-letter.schema.json")
ALL = (EVENTS, STRIPE, CRAWL, RECORDS, RULES, NOTIFICATIONS, DEAD_LETTERS)
# What a worker's consumer group reads (it only produces to notifications and dead-letters).
CONSUMED = (EVENTS, RULES, STRIPE, CRAWL, RECORDS)


def specs(events_partitions: int) -> tuple[TopicSpec, ...]:
    """Every topic, with `events` and `rules` at the given partition count."""
    return tuple(replace(spec, partitions=events_partitions) if spec in (EVENTS, RULES) else spec for spec in ALL)
