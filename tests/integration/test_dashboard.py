"""A real Prometheus (Debian's package) scrapes a running gateway and worker; every query on the Grafana
dashboard must return data, so no panel is silently empty or points at a metric that does not exist."""
from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import aiohttp
from aiokafka import AIOKafkaProducer

from ..conftest import BASE_ENV
from .conftest import ROOT, Prometheus, eventually, start_group_at_end, wait_http

DASHBOARD = ROOT / "deploy" / "grafana" / "dashboards" / "ingestflow.json"
GATEWAY, WORKER, PROMETHEUS = 18401, 16401, 19401


def dashboard_queries() -> list[tuple[str, str]]:
    """(panel title and refId, query) with each dashboard variable set to what "All" sends."""
    board = json.loads(DASHBOARD.read_text())
    values = {f"${v['name']}": v["allValue"] for v in board["templating"]["list"]}

    def expand(expr: str) -> str:
        for name, value in values.items():
            expr = expr.replace(name, value)
        return expr
    return [(f"{p['title']} {t['refId']}", expand(t["expr"])) for p in board["panels"] for t in p.get("targets", [])]


async def _traffic(env: dict[str, str], unique: str) -> None:
    base = f"http://127.0.0.1:{GATEWAY}"
    token = {"x-app-token": env["INGEST_APP_TOKEN"]}
    cron = {"x-cron-secret": env["CRON_SECRET"]}
    async with aiohttp.ClientSession() as http:
        for i in range(3):
            events = [{"type": "VIEW", "ruleId": f"dash-{unique}", "idempotencyKey": f"{unique}-{i}"}]
            async with http.post(f"{base}/ingest/events", json={"events": events}, headers=token) as r:
                assert r.status == 202, await r.text()
        async with http.post(f"{base}/ingest/events", json={"events": [{"type": "LIKE"}]}, headers=token) as r:
            assert r.status in (400, 429)
        for _ in range(10):  # past the configured per-minute limit: some 429s
            async with http.post(f"{base}/ingest/events", json={"events": [{"type": "VIEW", "ruleId": "x"}]},
                                 headers=token) as r:
                pass
        records = {"user_id": int(unique[:6], 16), "records": [
            {"wuid": f"w{i}-{unique}", "cleaned": {"t": i}, "context": "c"} for i in range(3)]}
        async with http.post(f"{base}/ingest/records", json=records, headers=token) as r:
            assert r.status in (202, 429), await r.text()
        async with http.post(f"{base}/buffer/process/{records['user_id']}", headers=cron) as r:
            assert r.status < 500, await r.text()
        async with http.get(f"{base}/health") as r:
            assert r.status in (200, 503)
    producer = AIOKafkaProducer(bootstrap_servers=BASE_ENV["KAFKA_BOOTSTRAP_SERVERS"])
    await producer.start()
    await producer.send_and_wait("events", b"{not json", key=f"dash-{unique}".encode())
    await producer.stop()


async def test_every_dashboard_query_returns_data(
        spawn: Callable[..., Any], env_factory: Callable[..., dict[str, str]], unique: str,
        private_service: Callable[..., Any], prometheus: Callable[..., Prometheus]) -> None:
    redis = private_service("redis", 16402)  # its own rate-limit budget, whatever other tests spent
    env = env_factory(REDIS_URL=redis.url("0"), PORT=str(GATEWAY), WORKER_PORT=str(WORKER),
                      WORKER_APP_ID=f"dash-{unique}", RATE_LIMIT_EVENTS_PER_MIN="5", BUFFER_SIZE="2",
                      HEALTH_PROBE_INTERVAL_S="1")
    await start_group_at_end(env["WORKER_APP_ID"])
    prom = prometheus(PROMETHEUS, [GATEWAY, WORKER])
    worker = spawn(["worker"], env)
    gateway = spawn(["gateway"], env)
    await wait_http(f"http://127.0.0.1:{GATEWAY}/health")
    await wait_http(f"http://127.0.0.1:{WORKER}/metrics")
    await _traffic(env, unique)
    queries = dashboard_queries()
    assert len(queries) >= 30

    async def both_processes_offered() -> bool:  # by the dashboard's `instance` variable
        offered = set(await prom.get("/api/v1/label/instance/values", **{"match[]": 'up{job="ingestflow"}'}))
        assert offered == {f"127.0.0.1:{GATEWAY}", f"127.0.0.1:{WORKER}"}, offered
        return True
    await eventually(both_processes_offered, timeout=60, what="both processes in the instance variable")

    async def empty_panels() -> list[str]:
        return [title for title, expr in queries if not await prom.query(expr)]

    async def all_have_data() -> bool:
        return not await empty_panels()
    try:
        await eventually(all_have_data, timeout=90, interval=2, what="data in every dashboard panel")
    except AssertionError:
        print("panels without data:", await empty_panels())
        print(worker.tail(20), gateway.tail(20))
        raise
