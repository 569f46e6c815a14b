"""Scheduled-job endpoints for an external scheduler (header `x-cron-secret`): the analytics rollup and the
search index rebuild. Both are idempotent, so a scheduler that retries is harmless."""
from __future__ import annotations

from aiohttp import web

from ingestflow.app.core import serde
from ingestflow.app.core.errors import ValidationError
from ingestflow.app.ops.rollup import RollupRequest, run_rollup
from ingestflow.app.stores import audit
from ingestflow.app.stores.crawl_store import CrawlStore
from ingestflow.app.stores.donation_store import DonationStore
from ingestflow.app.web.http import json_response, read_body, require_secret

from .context import CONTEXT

__all__ = ["routes"]

routes = web.RouteTableDef()


@routes.post("/cron/rollup")
async def rollup(request: web.Request) -> web.Response:
    ctx = request.app[CONTEXT]
    require_secret(request, "x-cron-secret", ctx.reads.settings.cron_secret.get())
    body = await read_body(request, ctx.reads.settings.max_body_bytes, ctx.reads.settings.body_timeout_s)
    try:
        parsed = serde.loads(body) if body.strip() else None
    except serde.DecodeError as exc:
        raise ValidationError("body", f"is not valid JSON: {exc}") from None
    req = RollupRequest.parse(parsed, ctx.reads.clock.now().date())
    result = await run_rollup(ctx.reads.db, ctx.reads.metrics, DonationStore(ctx.reads.db), ctx.reads.leaderboards,
                              ctx.reads.settings.weights, req)
    return json_response(result)


@routes.post("/cron/rebuild-search")
async def rebuild_search(request: web.Request) -> web.Response:
    ctx = request.app[CONTEXT]
    require_secret(request, "x-cron-secret", ctx.reads.settings.cron_secret.get())
    rows = await CrawlStore(ctx.reads.db).rebuild_search()
    await audit.record(ctx.reads.db, "search.rebuild", actor="cron", subject=None, detail={"rows": rows})
    return json_response({"rebuilt": rows})
