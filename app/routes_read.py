"""GET reads of derived state: daily metrics from PostgreSQL, leaderboards from Redis with PostgreSQL as the
fallback (app/leaderboard_store.py), trending scores, search. Served by the gateway and by every worker
(`mount`): all of it is in the shared stores, so any process gives the same answer."""
from __future__ import annotations

from datetime import date, timedelta

from aiohttp import web

from ingestflow.agents.trending import decayed

from .context import READS, ReadContext
from .crawl_store import CrawlStore
from .errors import ValidationError
from .http import errors_middleware, json_response
from .leaderboard_store import PERIODS, SCOPES, period_range

__all__ = ["routes", "date_range", "mount"]

routes = web.RouteTableDef()
MAX_RANGE_DAYS = 366


def date_range(query: dict[str, str], today: date) -> tuple[date, date]:
    """`from`/`to` as ISO dates (inclusive); defaults to the last 30 days."""
    def parse(name: str, default: date) -> date:
        raw = query.get(name)
        if not raw:
            return default
        try:
            return date.fromisoformat(raw[:10])
        except ValueError:
            raise ValidationError(name, f"must be an ISO date (YYYY-MM-DD), got {raw[:32]!r}") from None
    end = parse("to", today)
    start = parse("from", end - timedelta(days=29))
    if start > end:
        raise ValidationError("from", "must not be after 'to'")
    if (end - start).days >= MAX_RANGE_DAYS:
        raise ValidationError("from", f"the range may span at most {MAX_RANGE_DAYS} days")
    return start, end


@routes.get("/metrics/rules/{rule_id}")
async def rule_metrics(request: web.Request) -> web.Response:
    ctx = request.app[READS]
    rule_id = request.match_info["rule_id"]
    start, end = date_range(dict(request.query), ctx.clock.now().date())
    days = await ctx.metrics.rule_days(rule_id, start, end)
    totals = _totals(days, ("views", "copies", "saves", "forks", "votes"))
    return json_response({"ruleId": rule_id, "from": start.isoformat(), "to": end.isoformat(),
                          "totals": totals, "days": days})


def _totals(days: list[dict[str, object]], keys: tuple[str, ...]) -> dict[str, int]:
    return {k: sum(int(d[k]) for d in days) for k in keys}  # type: ignore[call-overload]


@routes.get("/metrics/authors/{author_id}")
async def author_metrics(request: web.Request) -> web.Response:
    ctx = request.app[READS]
    author_id = request.match_info["author_id"]
    start, end = date_range(dict(request.query), ctx.clock.now().date())
    days = await ctx.metrics.author_days(author_id, start, end)
    totals = _totals(days, ("views", "copies", "saves", "forks", "votes", "donation_count",
                            "donation_amount_cents"))
    return json_response({"authorId": author_id, "from": start.isoformat(), "to": end.isoformat(),
                          "totals": totals, "days": days})


def _limit(query: dict[str, str], maximum: int) -> int:
    raw = query.get("limit") or "10"
    if not raw.isdigit() or not 1 <= int(raw) <= maximum:
        raise ValidationError("limit", f"must be a whole number between 1 and {maximum}, got {raw[:16]!r}")
    return int(raw)


def _scope(query: dict[str, str]) -> str:
    scope = query.get("scope") or "rules"
    if scope not in SCOPES:
        raise ValidationError("scope", f"must be one of {', '.join(SCOPES)}, got {scope[:32]!r}")
    return scope


@routes.get("/leaderboards/{period}")
async def leaderboard(request: web.Request) -> web.Response:
    """Top subjects by score over the period ending on `date` (default today, UTC)."""
    ctx = request.app[READS]
    boards = ctx.leaderboards
    period = request.match_info["period"]
    if period not in PERIODS:
        raise ValidationError("period", f"must be one of {', '.join(PERIODS)}, got {period[:32]!r}")
    query = dict(request.query)
    scope = _scope(query)
    limit = _limit(query, 1000)
    day, _ = date_range({"from": query.get("date", ""), "to": query.get("date", "")}, ctx.clock.now().date()) \
        if query.get("date") else (ctx.clock.now().date(), None)
    entries, source = await boards.top(period, scope, day, limit)
    start, end = period_range(period, day)
    return json_response({"period": period, "scope": scope, "date": day.isoformat(),
                          "from": None if PERIODS[period] is None else start.isoformat(), "to": end.isoformat(),
                          "source": source,
                          "entries": [{"rank": i, "id": e.id, "score": e.score} for i, e in enumerate(entries, 1)]})


@routes.get("/trending/{scope}")
async def trending(request: web.Request) -> web.Response:
    """Top rules or authors by decayed score (agents/trending.py), `score` as of now."""
    ctx = request.app[READS]
    scope = _scope({"scope": request.match_info["scope"]})
    limit = _limit(dict(request.query), 1000)
    now = ctx.clock.time()
    half_life_s = ctx.settings.trending_half_life_hours * 3600
    entries = await ctx.leaderboards.trending(scope, limit)
    return json_response({"scope": scope, "halfLifeHours": ctx.settings.trending_half_life_hours,
                          "entries": [{"rank": i, "id": e.id, "score": decayed(e.score, now, half_life_s)}
                                      for i, e in enumerate(entries, 1)]})


@routes.get("/search")
async def search(request: web.Request) -> web.Response:
    """Full-text search over crawl items (PostgreSQL websearch syntax: words, "phrases", -exclusions)."""
    ctx = request.app[READS]
    query = dict(request.query)
    q = (query.get("q") or "").strip()
    if not q:
        raise ValidationError("q", "is required")
    if len(q) > 256:
        raise ValidationError("q", f"must be at most 256 characters, got {len(q)}")
    limit = _limit(query, 100)
    results = await CrawlStore(ctx.db).search(q, limit)
    return json_response({"q": q, "count": len(results), "results": results})


def mount(web_app: web.Application, reads: ReadContext) -> None:
    """Serve the reads on another process's aiohttp application (a worker's Faust web server)."""
    web_app[READS] = reads
    web_app.middlewares.append(errors_middleware)
    web_app.add_routes(routes)
