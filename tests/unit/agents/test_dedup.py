from ingestflow.agents.dedup import VIEW_CAP_PER_DAY, ViewState, counted_view, key_seen, view_drop_reason

DAY = 86400.0
T0 = 1_763_600_000.0


def test_a_key_seen_within_retention_is_a_duplicate_on_either_side_of_it() -> None:
    assert key_seen([T0], T0, 7 * DAY)
    assert key_seen([0.0, T0 - 6 * DAY], T0, 7 * DAY)
    assert key_seen([T0 + 60], T0, 7 * DAY)  # a later sighting arrived first


def test_a_key_older_than_retention_or_never_seen_is_new() -> None:
    assert not key_seen([0.0, 0.0], T0, 7 * DAY)
    assert not key_seen([T0 - 8 * DAY], T0, 7 * DAY)
    assert not key_seen([None], T0, 7 * DAY)


def test_a_view_within_ten_minutes_of_the_last_counted_one_is_a_repeat() -> None:
    today = counted_view(ViewState(), T0)
    assert view_drop_reason(today, today, T0 + 599) == "repeat"
    assert view_drop_reason(today, today, T0 + 600) is None


def test_the_repeat_check_looks_into_the_previous_day_after_midnight() -> None:
    yesterday = counted_view(ViewState(), T0 - 120)
    assert view_drop_reason(ViewState(), yesterday, T0) == "repeat"


def test_the_sixth_view_of_a_day_is_capped() -> None:
    state = ViewState()
    counted = 0
    for k in range(8):
        ts = T0 + k * 660
        if view_drop_reason(state, state, ts) is None:
            state = counted_view(state, ts)
            counted += 1
        elif k >= VIEW_CAP_PER_DAY:
            assert view_drop_reason(state, state, ts) == "cap"
    assert counted == VIEW_CAP_PER_DAY


def test_view_state_round_trips_through_its_table_value() -> None:
    state = counted_view(counted_view(ViewState(), T0), T0 + 700)
    assert ViewState.from_json(state.to_json()) == state
    assert ViewState.from_json({}) == ViewState()
