"""A worker's web port serves health, /metrics and the documented reads, and none of Faust's built-in pages:
`/table/archive-pending/<user>/` would hand out a user's pending records in plaintext to anyone."""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

import aiohttp

from .conftest import eventually, start_group_at_end, wait_http
from .gateway_kit import post

GATEWAY, WORKER = "http://127.0.0.1:18600", "http://127.0.0.1:18601"


async def test_worker_serves_no_table_router_or_index_page(
        spawn: Callable[..., Any], env_factory: Callable[..., dict[str, str]], unique: str) -> None:
    env = env_factory(PORT="18600", WORKER_PORT="18601", WORKER_APP_ID=f"pages-{unique}", BUFFER_SIZE="1000")
    await start_group_at_end(env["WORKER_APP_ID"])
    worker = spawn(["worker"], env)
    spawn(["gateway"], env)
    await wait_http(f"{GATEWAY}/health")
    await wait_http(f"{WORKER}/health/live", timeout=120)
    user = int(unique[:6], 16)
    secret_value = f"private-{unique}"
    async with aiohttp.ClientSession() as http:
        sent = await post(http, f"{GATEWAY}/ingest/records",
                          {"user_id": user, "records": [{"wuid": "w1", "cleaned": {"note": secret_value}}]})
        assert sent.status == 202, sent.body

        async def pending() -> bool:  # the worker holds the record in its table (it publishes buffer figures)
            async with http.get(f"{GATEWAY}/buffer/stats", headers={"x-cron-secret": env["CRON_SECRET"]}) as r:
                stats = await r.json()
            return bool(stats["records"] > 0)  # (figures of this test's app id only)
        try:
            await eventually(pending, timeout=120, what="the record pending in the worker's table")
        except AssertionError:
            print(worker.tail())
            raise

        for path in (f"/table/archive-pending/{user}/", "/table/archive-pending/", "/router/", "/router/key/1/",
                     "/", "/stats/", "/graph/", "/performance/"):
            async with http.get(WORKER + path) as r:
                body = await r.text()
                assert r.status == 404, (path, r.status, body[:200])
                assert secret_value not in body
        for path in ("/health/live", "/metrics", f"/metrics/rules/r-{unique}", "/leaderboards/daily"):
            async with http.get(WORKER + path) as r:
                assert r.status == 200, (path, r.status, await r.text())
