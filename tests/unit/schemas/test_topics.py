from __future__ import annotations

from ingestflow.schemas import topics


def test_events_is_created_to_keep_its_records_a_week_past_the_oldest_event_counted() -> None:
    assert topics.EVENTS.configs() == {"retention.ms": str(42 * 86_400_000)}
    assert topics.RULES.configs() == {"cleanup.policy": "compact"}
    assert topics.CRAWL.configs() == {}  # stamped when produced: the broker's retention
