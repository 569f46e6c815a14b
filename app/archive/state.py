"""The archive's state shared through PostgreSQL: the cron switch and schedule, and per-partition buffer
figures. Workers and gateways of one app id see the same rows, whichever process changed them."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

from croniter import croniter

from ingestflow.app.clients.db import Database
from ingestflow.app.core.errors import ValidationError

__all__ = ["CronState", "ArchiveState", "next_tick", "validate_schedule"]


@dataclass(frozen=True, slots=True)
class CronState:
    running: bool
    schedule: str
    last_tick: datetime

    def to_json(self, now: datetime) -> dict[str, Any]:
        return {"running": self.running, "schedule": self.schedule, "lastRun": self.last_tick.isoformat(),
                "nextRun": next_tick(self.schedule, max(self.last_tick, now)).isoformat() if self.running else None}


def validate_schedule(schedule: Any) -> str:
    if not isinstance(schedule, str) or not schedule.strip():
        raise ValidationError("schedule", "is required and must be a cron expression string")
    if not schedule.isascii() or not croniter.is_valid(schedule.strip()):  # croniter also reads "٣" as 3
        raise ValidationError("schedule", f"is not a valid cron expression: {schedule[:64]!r}")
    return schedule.strip()


def next_tick(schedule: str, after: datetime) -> datetime:
    return cast(datetime, croniter(schedule, after).get_next(datetime))


class ArchiveState:
    def __init__(self, db: Database, app_id: str, default_schedule: str) -> None:
        self._db = db
        self._app = app_id
        self._default = default_schedule

    async def cron(self) -> CronState:
        row = await self._db.fetchrow(
            "INSERT INTO archive_cron (app_id, schedule) VALUES ($1, $2) ON CONFLICT (app_id)"
            " DO UPDATE SET app_id = EXCLUDED.app_id RETURNING running, schedule, last_tick",
            self._app, self._default)
        assert row is not None
        return CronState(row["running"], row["schedule"], row["last_tick"])

    async def set_running(self, running: bool) -> CronState:
        await self.cron()
        await self._db.execute(
            "UPDATE archive_cron SET running = $2, last_tick = CASE WHEN $2 AND NOT running THEN NOW()"
            " ELSE last_tick END, updated_at = NOW() WHERE app_id = $1", self._app, running)
        return await self.cron()

    async def set_schedule(self, schedule: object) -> CronState:
        """`schedule` as it came in a request body: validated here (a 400 unless a cron expression string)."""
        await self.cron()
        await self._db.execute("UPDATE archive_cron SET schedule = $2, updated_at = NOW() WHERE app_id = $1",
                               self._app, validate_schedule(schedule))
        return await self.cron()

    async def claim_tick(self, now: datetime) -> bool:
        """True for exactly one caller per due tick: a compare-and-set on last_tick."""
        state = await self.cron()
        if not state.running or next_tick(state.schedule, state.last_tick) > now:
            return False
        status = await self._db.execute(
            "UPDATE archive_cron SET last_tick = $3 WHERE app_id = $1 AND last_tick = $2",
            self._app, state.last_tick, now)
        return status.endswith(" 1")

    async def write_stats(self, worker: str, stats: dict[int, tuple[int, int, datetime | None]]) -> None:
        await self._db.executemany(
            "INSERT INTO archive_buffer_stats (app_id, partition, worker, users, records, oldest_at)"
            " VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (app_id, partition) DO UPDATE SET worker = $3,"
            " users = $4, records = $5, oldest_at = $6, updated_at = NOW()",
            [(self._app, p, worker, u, r, o) for p, (u, r, o) in stats.items()])

    async def stats(self) -> list[dict[str, Any]]:
        rows = await self._db.fetch(
            "SELECT partition, worker, users, records, oldest_at, updated_at FROM archive_buffer_stats"
            " WHERE app_id = $1 ORDER BY partition", self._app)
        return [{"partition": r["partition"], "worker": r["worker"], "users": r["users"], "records": r["records"],
                 "oldestAt": r["oldest_at"].isoformat() if r["oldest_at"] else None,
                 "updatedAt": r["updated_at"].isoformat()} for r in rows]
