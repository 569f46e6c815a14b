"""A batch write that fails for its content: exactly the units at fault are rejected, the others written;
an outage is retried, never rejected."""
from __future__ import annotations

from collections.abc import Sequence

from ingestflow.agents.isolate import write_isolating


class Store:
    """Refuses any write holding a bad unit (as PostgreSQL refuses a whole statement); fails `outages` times
    with a lost connection first."""

    def __init__(self, bad: set[int], outages: int = 0) -> None:
        self.bad, self.outages = bad, outages
        self.rows: list[int] = []
        self.writes = 0

    async def write(self, units: Sequence[int]) -> None:
        self.writes += 1
        if self.outages:
            self.outages -= 1
            raise ConnectionResetError(104, "Connection reset by peer")
        if self.bad & set(units):
            raise ValueError(f"refused: {sorted(self.bad & set(units))}")
        self.rows.extend(units)


async def test_only_the_bad_units_are_rejected_and_every_good_one_is_written() -> None:
    store = Store(bad={3, 17, 18})
    rejected: list[tuple[int, str]] = []

    async def reject(unit: int, error: BaseException) -> None:
        rejected.append((unit, str(error)))
    await write_isolating(list(range(32)), store.write, reject, what="test write")
    assert sorted(store.rows) == [u for u in range(32) if u not in {3, 17, 18}]
    assert rejected == [(3, "refused: [3]"), (17, "refused: [17]"), (18, "refused: [18]")]
    assert store.writes <= 1 + 2 * 3 * 5  # about 2k·log2(n), not n


async def test_an_outage_is_retried_and_nothing_is_rejected() -> None:
    store = Store(bad=set(), outages=2)

    async def reject(unit: int, error: BaseException) -> None:
        raise AssertionError(f"{unit} rejected for {error!r}")
    await write_isolating([1, 2, 3], store.write, reject, what="test write")
    assert store.rows == [1, 2, 3] and store.writes == 3
