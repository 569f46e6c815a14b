"""`backfill` recomputes past days' scores, author sums and leaderboard snapshots, and resumes after an
interruption without redoing finished days."""
from __future__ import annotations

import asyncio
from datetime import date, timedelta
from pathlib import Path

import asyncpg

from ingestflow.app.clients.db import Database
from ingestflow.app.ops.backfill import backfill
from ingestflow.app.ops.progress import Checkpoint
from ingestflow.app.stores.leaderboard_store import LeaderboardStore

from .conftest import DSN, interrupted_after_first_step

UNTIL = date(2026, 9, 3)
WEIGHTS = {"VIEW": 1.0, "COPY": 3.0, "SAVE": 2.0, "FORK": 4.0, "VOTE": 2.0}


async def test_backfill_recomputes_days_and_resumes(pg: asyncpg.Connection, unique: str, tmp_path: Path) -> None:
    rule, author = f"bf-{unique}", f"bf-author-{unique}"
    await pg.execute("INSERT INTO rule_authors (rule_id, author_id, source) VALUES ($1, $2, 'catalog')", rule, author)
    for i in range(3):
        await pg.execute("INSERT INTO rule_metric_daily (rule_id, day, views, copies, score) VALUES ($1, $2, $3, 1, 0)",
                         rule, UNTIL - timedelta(days=i), 10 * (i + 1))
    db = Database(DSN)
    await db.start()
    boards = LeaderboardStore(db, None, size=100000)
    checkpoint = Checkpoint(tmp_path / "bf.json")
    stop = asyncio.Event()
    try:
        dry = await backfill(db, boards, WEIGHTS, until=UNTIL, days=3, dry_run=True, checkpoint=checkpoint,
                             stop=asyncio.Event())
        assert dry["complete"] and await pg.fetchval(
            "SELECT max(score) FROM rule_metric_daily WHERE rule_id = $1", rule) == 0
        first = await backfill(db, boards, WEIGHTS, until=UNTIL, days=3, dry_run=False, checkpoint=checkpoint,
                               stop=stop, progress=interrupted_after_first_step("backfill", stop))
        assert first["processed"] == [(UNTIL - timedelta(days=2)).isoformat()] and not first["complete"]
        second = await backfill(db, boards, WEIGHTS, until=UNTIL, days=3, dry_run=False, checkpoint=checkpoint,
                                stop=asyncio.Event())
        assert second["skippedAsDone"] == 1 and len(second["processed"]) == 2 and second["complete"]
    finally:
        await db.stop()
    scores = await pg.fetch("SELECT day, score FROM rule_metric_daily WHERE rule_id = $1 ORDER BY day", rule)
    assert [(r["day"], r["score"]) for r in scores] == [
        (UNTIL - timedelta(days=2), 30 + 3.0), (UNTIL - timedelta(days=1), 20 + 3.0), (UNTIL, 10 + 3.0)]
    authors = await pg.fetch("SELECT day, views, copies FROM author_metric_daily WHERE author_id = $1 ORDER BY day",
                             author)
    assert [tuple(r) for r in authors] == [(UNTIL - timedelta(days=2), 30, 1), (UNTIL - timedelta(days=1), 20, 1),
                                           (UNTIL, 10, 1)]
    snap = await pg.fetch("SELECT DISTINCT day FROM leaderboard_snapshot WHERE subject_id = $1 AND scope = 'rules'"
                          " ORDER BY day", rule)
    assert [r["day"] for r in snap] == [UNTIL - timedelta(days=i) for i in (2, 1, 0)]
