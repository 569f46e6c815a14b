"""GET reads of derived state, served from PostgreSQL."""
from __future__ import annotations

from datetime import date, timedelta

from aiohttp import web

from .context import CONTEXT
from .errors import ValidationError
from .http import json_response

__all__ = ["routes", "date_range"]

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
    ctx = request.app[CONTEXT]
    rule_id = request.match_info["rule_id"]
    start, end = date_range(dict(request.query), ctx.clock.now().date())
    days = await ctx.metrics.rule_days(rule_id, start, end)
    totals = {k: sum(int(d[k]) for d in days) for k in ("views", "copies", "saves", "forks", "votes")}
    return json_response({"ruleId": rule_id, "from": start.isoformat(), "to": end.isoformat(),
                          "totals": totals, "days": days})
