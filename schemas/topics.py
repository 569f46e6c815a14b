"""Every Kafka topic the system uses, with its key and partition count.

A service may produce to these directly instead of going through the HTTP gateway; each topic's value
format is in the schema module named beside it and in `schemas/json/`.
"""
from __future__ import annotations

from dataclasses import dataclass

__all__ = ["TopicSpec", "EVENTS", "STRIPE", "CRAWL", "RECORDS", "RULES", "NOTIFICATIONS", "DEAD_LETTERS", "ALL"]


@dataclass(frozen=True)
class TopicSpec:
    name: str
    key: str
    partitions: int = 4
    compacted: bool = False
    schema: str = ""


EVENTS = TopicSpec("events", key="ruleId", schema="events.schema.json")
STRIPE = TopicSpec("stripe-webhooks", key="Stripe event id", schema="stripe.schema.json")
CRAWL = TopicSpec("crawl-items", key="sourceId:externalId", schema="crawl.schema.json")
RECORDS = TopicSpec("website-records", key="user_id", schema="records.schema.json")
RULES = TopicSpec("rules", key="ruleId", compacted=True, schema="rules.schema.json")
NOTIFICATIONS = TopicSpec("notifications", key="authorId", schema="notifications.schema.json")
DEAD_LETTERS = TopicSpec("dead-letters", key="source topic:partition:offset", schema="dead-letter.schema.json")
ALL = (EVENTS, STRIPE, CRAWL, RECORDS, RULES, NOTIFICATIONS, DEAD_LETTERS)
