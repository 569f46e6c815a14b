"""Backfill: the rollup (app/ops/rollup.py) for each of the past N days, oldest first, one day at a time, so a
long backfill shows progress, stops cleanly after the current day on Ctrl-C, and resumes from its
checkpoint. Every write is an absolute recomputation: running it again, or beside the workers, is harmless.
To rebuild the day totals themselves from the input, replay the topic (`ingestflow replay`)."""
from __future__ import annotations

import asyncio
from datetime import date, timedelta
from typing import Any

from ingestflow.app.clients.db import Database
from ingestflow.app.stores.donation_store import DonationStore
from ingestflow.app.stores.leaderboard_store import LeaderboardStore
from ingestflow.app.stores.metrics_store import MetricsStore

from .progress import Checkpoint, Progress
from .rollup import RollupRequest, run_rollup

__all__ = ["backfill_days", "backfill"]


def backfill_days(until: date, days: int) -> list[date]:
    return [until - timedelta(days=i) for i in range(days - 1, -1, -1)]


async def backfill(db: Database, boards: LeaderboardStore, weights: dict[str, float], *, until: date, days: int,
                   dry_run: bool, checkpoint: Checkpoint, stop: asyncio.Event,
                   progress: Progress | None = None) -> dict[str, Any]:
    span = backfill_days(until, days)
    state = checkpoint.load()
    done_through = date.fromisoformat(state["doneThrough"]) if state.get("until") == until.isoformat() \
        and not dry_run and state.get("doneThrough") else None
    todo = [d for d in span if done_through is None or d > done_through]
    if progress is not None:
        progress.total, progress.done = len(span), len(span) - len(todo)
    metrics, donations = MetricsStore(db, weights), DonationStore(db)
    totals = {"ruleMetricRows": 0, "authorMetricRows": 0, "snapshotRows": 0}
    processed: list[str] = []
    for day in todo:
        if stop.is_set():
            break
        result = await run_rollup(db, metrics, donations, boards, weights,
                                  RollupRequest(day=day, dry_run=dry_run, days=1), actor="backfill")
        for key in totals:
            totals[key] += result["totals"][key]
        processed.append(day.isoformat())
        if not dry_run:
            checkpoint.save({"until": until.isoformat(), "doneThrough": day.isoformat()})
        if progress is not None:
            progress.advance()
    complete = len(processed) == len(todo)
    if complete and not dry_run:
        checkpoint.clear()
    return {"dryRun": dry_run, "from": span[0].isoformat(), "to": span[-1].isoformat(),
            "processed": processed, "skippedAsDone": len(span) - len(todo), "totals": totals,
            "complete": complete}
