from ingestflow.tables.rule_daily import add_counts, day_of_window, window_start


def test_a_batch_of_counts_adds_up_like_the_same_events_one_by_one() -> None:
    one_by_one: dict[str, int] = {"VIEW": 2}
    for kind in ("VIEW", "COPY", "VIEW"):
        one_by_one = add_counts(one_by_one, {kind: 1})
    assert add_counts({"VIEW": 2}, {"VIEW": 2, "COPY": 1}) == one_by_one == {"VIEW": 4, "COPY": 1}


def test_windows_are_utc_days() -> None:
    ts = 1_763_683_200.0 + 3600 * 23.5  # 2025-11-21T23:30Z
    assert day_of_window(window_start(ts)).isoformat() == "2025-11-21"
