import math

from ingestflow.agents.trending import EPOCH, add_event, decayed, log_sum

H = 3600.0


def test_a_fresh_event_scores_its_weight_and_halves_every_half_life() -> None:
    score = add_event(None, EPOCH + 1000, 4.0, H)
    assert score is not None
    assert math.isclose(decayed(score, EPOCH + 1000, H), 4.0)
    assert math.isclose(decayed(score, EPOCH + 1000 + H, H), 2.0)
    assert math.isclose(decayed(score, EPOCH + 1000 + 3 * H, H), 0.5)


def test_scores_add_up_with_each_event_decayed_from_its_own_time() -> None:
    score = add_event(add_event(None, EPOCH, 2.0, H), EPOCH + H, 3.0, H)
    assert score is not None
    assert math.isclose(decayed(score, EPOCH + H, H), 2.0 / 2 + 3.0)


def test_a_zero_weight_event_changes_nothing() -> None:
    assert add_event(None, EPOCH, 0.0, H) is None
    assert add_event(5.0, EPOCH, 0.0, H) == 5.0


def test_recent_activity_outranks_older_activity_of_the_same_size() -> None:
    old = add_event(None, EPOCH, 10.0, H)
    new = add_event(None, EPOCH + 2 * H, 5.0, H)
    assert old is not None and new is not None and new > old  # 10 halved twice = 2.5 < 5


def test_log_sum_of_far_apart_values_does_not_overflow() -> None:
    assert math.isclose(log_sum([5000.0, 5000.0]), 5001.0)
    assert math.isclose(log_sum([3.0]), 3.0)
