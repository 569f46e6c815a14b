"""Author metrics: which author-days to recompute after a batch, and why this is done in PostgreSQL.

An author's day = the sums over the author's rules of their day totals. The rule -> author mapping is the
stream-table join (tables/rule_catalog.py, fed by the `rules` topic, co-partitioned with `events`); each
resolved mapping is written to `rule_authors`, and the author-day rows are recomputed in PostgreSQL with a
GROUP BY from the per-rule absolute totals (app/metrics_store.recompute_author_days).

Why not a Kafka repartition by author (group_by / intermediate topic): in faust-streaming 0.15.3's
exactly-once mode, Consumer.send (faust/transport/consumer.py) picks the transactional producer from the
*destination* partition, not the source partition being processed. A record sent to a repartition topic is
therefore not in the transaction that commits the source offsets (a crash could both lose and repeat it),
and when another worker owns that destination partition the send fails (ProducerSendError: no transaction
producer). Recomputing absolute sums from absolute inputs keeps the exactly-once result without it.

Catalog entries that arrive after the events (or change a rule's author) recompute every day of that rule
for the new and the old author, which is how late authors get their totals filled in.
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import date

__all__ = ["author_days_to_recompute"]


def author_days_to_recompute(
        touched: Iterable[tuple[str, date]], authors: Mapping[str, str | None],
        moved_rule_days: Iterable[tuple[str, date]], old_authors: Mapping[str, str]) -> set[tuple[str, date]]:
    """(authorId, day) pairs whose totals may have changed.

    touched: (rule, day) counted in the batch; authors: rule -> current author (None when unknown);
    moved_rule_days: every (rule, day) of rules whose author changed; old_authors: their previous author.
    """
    pairs: set[tuple[str, date]] = set()
    for rule, day in touched:
        author = authors.get(rule)
        if author:
            pairs.add((author, day))
    for rule, day in moved_rule_days:
        for author in (authors.get(rule), old_authors.get(rule)):
            if author:
                pairs.add((author, day))
    return pairs
