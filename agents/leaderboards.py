"""Leaderboard jobs on the worker's leader only (one writer for the whole consumer group):

- every LEADERBOARD_REFRESH_S, rewrite the hot Redis sorted sets for today from PostgreSQL;
- on CRON_SCHEDULE, snapshot today's leaderboards into `leaderboard_snapshot` (POST /cron/rollup does the
  same for any past days).
A failing store is logged and tried again at the next tick: a timer never dies.
"""
from __future__ import annotations

import logging
from typing import Any, Protocol

from ingestflow.app.clients.redis_client import RedisError
from ingestflow.app.core.clock import Clock

__all__ = ["register"]

log = logging.getLogger(__name__)


class Boards(Protocol):
    async def refresh(self, day: Any) -> int: ...

    async def snapshot(self, day: Any) -> int: ...


def register(app: Any, *, store: Boards, clock: Clock, refresh_s: float, cron: str) -> None:
    @app.timer(refresh_s, on_leader=True, name="leaderboards-refresh")
    async def refresh() -> None:
        try:
            await store.refresh(clock.now().date())
        except (RedisError, OSError) as exc:
            log.info("leaderboard refresh skipped, Redis unavailable: %s", type(exc).__name__)
        except Exception:
            log.exception("leaderboard refresh failed")

    @app.crontab(cron, on_leader=True, timezone=None)
    async def snapshot() -> None:
        try:
            await store.snapshot(clock.now().date())
        except Exception:
            log.exception("leaderboard snapshot failed")
