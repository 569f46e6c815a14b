from datetime import date

from ingestflow.agents.author_metrics import author_days_to_recompute
from ingestflow.tables.rule_catalog import resolve

D1, D2 = date(2026, 11, 20), date(2026, 11, 21)


def test_counted_days_of_rules_with_a_known_author_are_recomputed() -> None:
    pairs = author_days_to_recompute([("r1", D1), ("r2", D1)], {"r1": "alice", "r2": None}, [], {})
    assert pairs == {("alice", D1)}


def test_an_author_change_recomputes_every_day_of_the_rule_for_old_and_new_author() -> None:
    pairs = author_days_to_recompute([], {"r1": "alice"}, [("r1", D1), ("r1", D2)], {"r1": "bob"})
    assert pairs == {("alice", D1), ("alice", D2), ("bob", D1), ("bob", D2)}


def test_a_deleted_rule_recomputes_its_former_author_only() -> None:
    pairs = author_days_to_recompute([], {"r1": None}, [("r1", D1)], {"r1": "bob"})
    assert pairs == {("bob", D1)}


def test_an_event_author_fills_an_unknown_rule_but_never_overrides_the_catalog() -> None:
    assert resolve(None, "alice") == {"authorId": "alice", "source": "event", "title": None}
    assert resolve({"authorId": "bob", "source": "catalog", "title": "t"}, "alice") is None
    assert resolve({"authorId": "alice", "source": "event", "title": None}, "alice") is None
    assert resolve(None, None) is None
