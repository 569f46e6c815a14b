"""The rollup (POST /cron/rollup): recompute a run of days' derived rows from the base data and snapshot
their leaderboards, or, with dryRun, report what it would write without writing.

For each UTC day from `date` − daysToProcess + 1 to `date`: rule_metric_daily scores (weighted counts with
the current EVENT_WEIGHTS), author_metric_daily (sums over each author's rules, and donation totals from
`donations`), and leaderboard_snapshot (every period and scope, top LEADERBOARD_SIZE). Every write is an
absolute recomputation, so running it twice, or alongside the workers, is harmless.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

from ingestflow.app.clients.db import Database
from ingestflow.app.core.errors import ValidationError
from ingestflow.app.stores import audit
from ingestflow.app.stores.donation_store import DonationStore
from ingestflow.app.stores.leaderboard_store import LeaderboardStore
from ingestflow.app.stores.metrics_store import COLUMNS, MetricsStore
from ingestflow.schemas import fields

__all__ = ["RollupRequest", "run_rollup", "MAX_DAYS", "DEFAULT_DAYS"]

DEFAULT_DAYS = 7
MAX_DAYS = 30


@dataclass(frozen=True)
class RollupRequest:
    day: date
    dry_run: bool = False
    days: int = DEFAULT_DAYS

    @classmethod
    def parse(cls, body: Any, today: date) -> RollupRequest:
        """`{"date"?: "YYYY-MM-DD", "dryRun"?: bool, "daysToProcess"?: 1..30}`; an empty body is allowed."""
        body = {} if body is None else fields.obj(body, "body")
        raw_day = body.get("date")
        day = today
        if raw_day is not None:
            if not isinstance(raw_day, str):
                raise ValidationError("date", "must be a string YYYY-MM-DD")
            day = fields.iso_day(raw_day, "date")
        dry_run = body.get("dryRun", False)
        if not isinstance(dry_run, bool):
            raise ValidationError("dryRun", "must be true or false")
        days = body.get("daysToProcess", DEFAULT_DAYS)
        if isinstance(days, bool) or not isinstance(days, int) or not 1 <= days <= MAX_DAYS:
            raise ValidationError("daysToProcess", f"must be a whole number between 1 and {MAX_DAYS}, got {days!r}")
        return cls(day=day, dry_run=dry_run, days=days)

    @property
    def span(self) -> list[date]:
        return [self.day - timedelta(days=i) for i in range(self.days - 1, -1, -1)]


async def run_rollup(db: Database, metrics: MetricsStore, donations: DonationStore, boards: LeaderboardStore,
                     weights: dict[str, float], req: RollupRequest, *, actor: str = "cron") -> dict[str, Any]:
    days = req.span
    score = " + ".join(f"{col} * ${i}" for i, col in enumerate(COLUMNS.values(), start=2))
    weight_args = [weights.get(kind, 0.0) for kind in COLUMNS]
    pairs = [(r["author_id"], r["day"]) for r in await db.fetch(
        "SELECT DISTINCT ra.author_id, m.day FROM rule_metric_daily m JOIN rule_authors ra USING (rule_id)"
        " WHERE m.day = ANY($1::date[])"
        " UNION SELECT author_id, day FROM author_metric_daily WHERE day = ANY($1::date[])", days)]
    donors = [r["author_id"] for r in await db.fetch(
        "SELECT DISTINCT author_id FROM donations WHERE author_id IS NOT NULL"
        " AND (occurred_at AT TIME ZONE 'UTC')::date = ANY($1::date[])", days)]
    report: list[dict[str, Any]] = []
    for day in days:
        rule_rows = await db.fetchval("SELECT count(*) FROM rule_metric_daily WHERE day = $1", day)
        snapshot = await boards.snapshot_rows(day) if req.dry_run else []
        report.append({"day": day.isoformat(), "ruleMetricRows": rule_rows,
                       "authorMetricRows": sum(1 for _, d in pairs if d == day),
                       "snapshotRows": len(snapshot)})
    if not req.dry_run:
        for day in days:
            await db.execute(f"UPDATE rule_metric_daily SET score = {score}, updated_at = NOW() WHERE day = $1",
                             day, *weight_args)
        await metrics.recompute_author_days(pairs)
        await donations.recompute_authors(donors)
        for entry, day in zip(report, days, strict=True):
            # Snapshots after the recomputation, so they rank the rows just written.
            entry["snapshotRows"] = await boards.snapshot(day)
    result = {"dryRun": req.dry_run, "from": days[0].isoformat(), "to": days[-1].isoformat(),
              "days": report, "donationAuthors": len(donors),
              "totals": {k: sum(d[k] for d in report) for k in ("ruleMetricRows", "authorMetricRows",
                                                                  "snapshotRows")}}
    await audit.record(db, "rollup.run", actor=actor, subject=req.day.isoformat(), detail=result)
    return result
