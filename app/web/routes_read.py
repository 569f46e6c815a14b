"""GET reads of derived state: daily metrics from PostgreSQL, leaderboards from Redis with PostgreSQL as the
fallback (app/stores/leaderboard_store.py), trending scores, search. Served by the gateway and by every worker
(`mount`): all of it is in the shared stores, so any process gives the same answer. The reads need no secret:
each caller (client IP) gets RATE_LIMIT_READS_PER_MIN, and leaderboards and trending lists (a full GROUP BY
when Redis cannot answer) are kept READ_CACHE_S seconds."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

from aiohttp import web

from ingestflow.agents.trending import decayed
from ingestflow.app.clients.db import Database
from ingestflow.app.core.clock import Clock
from ingestflow.app.core.errors import ValidationError
from ingestflow.app.core.settings import Settings
from ingestflow.app.core.ttlcache import TtlCache
from ingestflow.app.stores.crawl_store import CrawlStore
from ingestflow.app.stores.leaderboard_store import PERIODS, SCOPES, LeaderboardStore, period_range
from ingestflow.app.stores.metrics_store import COLUMNS, MetricsStore
from ingestflow.app.web import openapi
from ingestflow.schemas import fields

from .http import client_ip, errors_middleware, json_response
from .ratelimit import RateLimiter

__all__ = ["routes", "date_range", "mount", "ReadContext", "READS"]

routes = web.RouteTableDef()
MAX_RANGE_DAYS = 366


@dataclass
class ReadContext:
    """The stores behind the GET reads: shared by every process, so the answer never depends on which
    gateway or worker a request reaches. The reads need no secret, so each caller is rate-limited
    (`limiter`, class "reads") and the heavy answers are kept READ_CACHE_S seconds (`cache`)."""

    settings: Settings
    clock: Clock
    db: Database
    metrics: MetricsStore
    leaderboards: LeaderboardStore
    limiter: RateLimiter
    cache: TtlCache[tuple[Any, ...], Any]


READS = web.AppKey("reads", ReadContext)


async def _admit(request: web.Request) -> ReadContext:
    ctx = request.app[READS]
    await ctx.limiter.admit("reads", client_ip(request, ctx.settings.trusted_proxies))
    return ctx


def date_range(query: dict[str, str], today: date) -> tuple[date, date]:
    """`from`/`to` as ISO dates (inclusive); defaults to the last 30 days."""
    def parse(name: str, default: date) -> date:
        raw = query.get(name)
        return fields.iso_day(raw, name) if raw else default
    end = parse("to", today)
    start = parse("from", end - timedelta(days=29))
    if start > end:
        raise ValidationError("from", "must not be after 'to'")
    if (end - start).days >= MAX_RANGE_DAYS:
        raise ValidationError("from", f"the range may span at most {MAX_RANGE_DAYS} days")
    return start, end


@routes.get("/metrics/rules/{rule_id}")
@openapi.describe(openapi.READ_RULE_METRICS)
async def rule_metrics(request: web.Request) -> web.Response:
    ctx = await _admit(request)
    rule_id = _subject(request, "rule_id")
    start, end = date_range(dict(request.query), ctx.clock.now().date())
    days = await ctx.metrics.rule_days(rule_id, start, end)
    totals = _totals(days, tuple(COLUMNS.values()))
    return json_response({"ruleId": rule_id, "from": start.isoformat(), "to": end.isoformat(),
                          "totals": totals, "days": days})


def _totals(days: list[dict[str, object]], keys: tuple[str, ...]) -> dict[str, int]:
    return {k: sum(int(d[k]) for d in days) for k in keys}  # type: ignore[call-overload]


@routes.get("/metrics/authors/{author_id}")
@openapi.describe(openapi.READ_AUTHOR_METRICS)
async def author_metrics(request: web.Request) -> web.Response:
    ctx = await _admit(request)
    author_id = _subject(request, "author_id")
    start, end = date_range(dict(request.query), ctx.clock.now().date())
    days = await ctx.metrics.author_days(author_id, start, end)
    totals = _totals(days, (*COLUMNS.values(), "donation_count",
                            "donation_amount_cents"))
    return json_response({"authorId": author_id, "from": start.isoformat(), "to": end.isoformat(),
                          "totals": totals, "days": days})


def _limit(query: dict[str, str], maximum: int) -> int:
    return fields.ascii_int(query.get("limit") or "10", "limit", 1, maximum)


def _subject(request: web.Request, name: str) -> str:
    """A rule or author id from the path, held to the ids' own contract (schemas/events.py)."""
    return fields.string(dict(request.match_info), name, "", 128)


def _scope(query: dict[str, str]) -> str:
    scope = query.get("scope") or "rules"
    if scope not in SCOPES:
        raise ValidationError("scope", f"must be one of {', '.join(SCOPES)}, got {scope[:32]!r}")
    return scope


@routes.get("/leaderboards/{period}")
@openapi.describe(openapi.READ_LEADERBOARD)
async def leaderboard(request: web.Request) -> web.Response:
    """Top subjects by score over the period ending on `date` (default today, UTC)."""
    ctx = await _admit(request)
    boards = ctx.leaderboards
    period = request.match_info["period"]
    if period not in PERIODS:
        raise ValidationError("period", f"must be one of {', '.join(PERIODS)}, got {period[:32]!r}")
    query = dict(request.query)
    scope = _scope(query)
    limit = _limit(query, 1000)
    day = fields.iso_day(query["date"], "date") if query.get("date") else ctx.clock.now().date()
    entries, source = await ctx.cache.get(("leaderboard", period, scope, day, limit),
                                          lambda: boards.top(period, scope, day, limit))
    start, end = period_range(period, day)
    return json_response({"period": period, "scope": scope, "date": day.isoformat(),
                          "from": None if PERIODS[period] is None else start.isoformat(), "to": end.isoformat(),
                          "source": source,
                          "entries": [{"rank": i, "id": e.id, "score": e.score} for i, e in enumerate(entries, 1)]})


@routes.get("/trending/{scope}")
@openapi.describe(openapi.READ_TRENDING)
async def trending(request: web.Request) -> web.Response:
    """Top rules or authors by decayed score (agents/trending.py), `score` as of now."""
    ctx = await _admit(request)
    scope = _scope({"scope": request.match_info["scope"]})
    limit = _limit(dict(request.query), 1000)
    now = ctx.clock.time()
    half_life_s = ctx.settings.trending_half_life_hours * 3600
    entries = await ctx.cache.get(("trending", scope, limit), lambda: ctx.leaderboards.trending(scope, limit))
    return json_response({"scope": scope, "halfLifeHours": ctx.settings.trending_half_life_hours,
                          "entries": [{"rank": i, "id": e.id, "score": decayed(e.score, now, half_life_s)}
                                      for i, e in enumerate(entries, 1)]})


@routes.get("/search")
@openapi.describe(openapi.READ_SEARCH)
async def search(request: web.Request) -> web.Response:
    """Full-text search over crawl items (PostgreSQL websearch syntax: words, "phrases", -exclusions)."""
    ctx = await _admit(request)
    query = dict(request.query)
    q = fields.string(query, "q", "", 256).strip()
    limit = _limit(query, 100)
    results = await CrawlStore(ctx.db).search(q, limit)
    return json_response({"q": q, "count": len(results), "results": results})


def mount(web_app: web.Application, reads: ReadContext) -> None:
    """Serve the reads on another process's aiohttp application (a worker's Faust web server)."""
    web_app[READS] = reads
    web_app.middlewares.append(errors_middleware)
    web_app.add_routes(routes)
