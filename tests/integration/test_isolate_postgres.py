"""A batch write PostgreSQL refuses for one record's content (here a row that bypassed the topic's contract):
that record alone is rejected with PostgreSQL's own error, every other one is stored, and nothing is retried
forever. The refusal is the real server's, classified by errors.is_transient."""
from __future__ import annotations

import base64
import os
from collections.abc import AsyncIterator, Sequence

import asyncpg
import pytest

from ingestflow.agents.isolate import write_isolating
from ingestflow.app.clients.db import Database
from ingestflow.app.core.errors import is_transient
from ingestflow.app.stores.donation_store import DonationRow, DonationStore

from .analytics_data import recent_day
from .conftest import DSN


@pytest.fixture
async def db(services: None) -> AsyncIterator[Database]:
    database = Database(DSN, max_size=2)
    await database.start()
    yield database
    await database.stop()


def row(event_id: str, author: str) -> DonationRow:
    return DonationRow(stripe_event_id=event_id, event_type="payment_intent.succeeded", payment_ref=f"pi_{event_id}",
                       author_id=author, amount_cents=500, currency="usd", status="succeeded",
                       occurred_at=recent_day(2), payload={"id": event_id})


async def test_only_the_row_postgresql_refuses_is_rejected_and_the_rest_is_stored(
        db: Database, pg: asyncpg.Connection, unique: str) -> None:
    # An author id no btree index entry can hold (2704 bytes at most; random, so compression does not save it).
    too_long = base64.b64encode(os.urandom(12_000)).decode()
    rows = [row(f"evt_iso_{unique}_{i}", too_long if i in (2, 5) else f"au-{unique}") for i in range(8)]
    store = DonationStore(db)
    rejected: dict[str, BaseException] = {}

    async def write(batch: Sequence[DonationRow]) -> None:
        for r in batch:  # one statement per row, as the agent does per event; a batch fails on its first bad row
            await store.record(r)

    async def reject(r: DonationRow, error: BaseException) -> None:
        rejected[r.stripe_event_id] = error

    await write_isolating(rows, write, reject, what="record donations")
    assert sorted(rejected) == [f"evt_iso_{unique}_2", f"evt_iso_{unique}_5"]
    assert all(isinstance(e, asyncpg.ProgramLimitExceededError) and not is_transient(e) for e in rejected.values())
    stored = {r["stripe_event_id"] for r in await pg.fetch(
        "SELECT stripe_event_id FROM donations WHERE stripe_event_id LIKE $1", f"evt_iso_{unique}_%")}
    assert stored == {r.stripe_event_id for r in rows} - set(rejected)
