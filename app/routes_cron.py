"""Scheduled-job endpoints for an external scheduler (header `x-cron-secret`): the analytics rollup and the
search index rebuild. Both are idempotent, so a scheduler that retries is harmless."""
from __future__ import annotations

from aiohttp import web

from . import audit, serde
from .context import CONTEXT
from .crawl_store import CrawlStore
from .donation_store import DonationStore
from .errors import ValidationError
from .http import json_response, read_body, require_secret
from .rollup import RollupRequest, run_rollup

__all__ = ["routes"]

routes = web.RouteTableDef()


@routes.post("/cron/rollup")
async def rollup(request: web.Request) -> web.Response:
    ctx = request.app[CONTEXT]
    require_secret(request, "x-cron-secret", ctx.settings.cron_secret.get())
    body = await read_body(request, ctx.settings.max_body_bytes)
    try:
        parsed = serde.loads(body) if body.strip() else None
    except serde.DecodeError as exc:
        raise ValidationError("body", f"is not valid JSON: {exc}") from None
    req = RollupRequest.parse(parsed, ctx.clock.now().date())
    result = await run_rollup(ctx.db, ctx.metrics, DonationStore(ctx.db), ctx.leaderboards,
                              ctx.settings.weights, req)
    return json_response(result)


@routes.post("/cron/rebuild-search")
async def rebuild_search(request: web.Request) -> web.Response:
    ctx = request.app[CONTEXT]
    require_secret(request, "x-cron-secret", ctx.settings.cron_secret.get())
    rows = await CrawlStore(ctx.db).rebuild_search()
    await audit.record(ctx.db, "search.rebuild", actor="cron", subject=None, detail={"rows": rows})
    return json_response({"rebuilt": rows})
