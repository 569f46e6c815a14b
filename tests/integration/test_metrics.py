"""What the workers and the gateway export on /metrics, read the way Prometheus and the alerts read it.

Consumer lag comes from the partition's current owner only: after a rebalance the worker that lost a
partition no longer reports it, so the dashboard's lag panel (through a real Prometheus) shows each
partition once, from the worker Kafka says owns it. Processing time is measured from consumption, so a
replay of two-day-old events lands in finite buckets. The counters the alerts take `increase()` of are
exported at 0 from start-up, so their first increment shows.
"""
from __future__ import annotations

import json
import time
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import aiohttp
from prometheus_client.parser import text_string_to_metric_families

from ingestflow.app.clients.kafka import ensure_topics
from ingestflow.app.ops.status import consumer_group
from ingestflow.schemas import topics

from . import analytics_data
from .conftest import ROOT, WORKER_INPUTS, Prometheus, eventually, wait_http

WORKER_A, WORKER_B, PROMETHEUS, GATEWAY, KAFKA = 18752, 18753, 18754, 18755, 18770  # Kafka: 18770-18771
DASHBOARD = ROOT / "deploy" / "grafana" / "dashboards" / "ingestflow.json"
ALL_INPUTS = {(t, p) for t in WORKER_INPUTS for p in range(topics.EVENTS.partitions)}


async def scrape(port: int) -> dict[str, list[tuple[dict[str, str], float]]]:
    """/metrics of one process: sample name -> [(labels, value)]."""
    async with aiohttp.ClientSession() as http, http.get(f"http://127.0.0.1:{port}/metrics") as r:
        text = await r.text()
    samples: dict[str, list[tuple[dict[str, str], float]]] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            samples.setdefault(s.name, []).append((s.labels, s.value))
    return samples


async def lag_reported(port: int) -> set[tuple[str, int]]:
    return {(labels["topic"], int(labels["partition"]))
            for labels, _ in (await scrape(port)).get("ingestflow_consumer_lag", [])}


def lag_panel_query() -> str:
    for panel in json.loads(DASHBOARD.read_text())["panels"]:
        if panel["title"].startswith("Consumer lag per partition"):
            return str(panel["targets"][0]["expr"]).replace("$instance", ".*")
    raise AssertionError("the dashboard has no consumer lag panel")


async def test_lag_is_reported_by_the_current_owner_only(
        spawn: Callable[..., Any], env_factory: Callable[..., dict[str, str]], unique: str, tmp_path: Path,
        private_service: Callable[..., Any], prometheus: Callable[..., Prometheus]) -> None:
    # A broker of its own: what other tests put on the shared topics cannot hold this group's commits back.
    kafka = private_service("kafka", KAFKA)
    bootstrap = kafka.address
    await ensure_topics(kafka.connection, topics.ALL)
    group = f"lag-{unique}"
    env_a = env_factory(WORKER_PORT=str(WORKER_A), WORKER_APP_ID=group, TABLE_DIR=str(tmp_path / "tables-a"),
                        KAFKA_BOOTSTRAP_SERVERS=bootstrap)
    env_b = {**env_a, "WORKER_PORT": str(WORKER_B), "TABLE_DIR": str(tmp_path / "tables-b")}
    prom = prometheus(PROMETHEUS, [WORKER_A, WORKER_B])
    worker_a = spawn(["worker"], env_a, name="worker-a")
    worker_b = None
    try:
        await wait_http(f"http://127.0.0.1:{WORKER_A}/metrics", timeout=120)

        async def a_reports_everything() -> bool:
            reported = await lag_reported(WORKER_A)
            assert reported == ALL_INPUTS, sorted(ALL_INPUTS - reported)
            return True
        await eventually(a_reports_everything, timeout=120, what="worker A reporting every input partition")
        started = await scrape(WORKER_A)
        assert [v for labels, v in started["ingestflow_rebalances_total"] if labels["group"] == group] >= [1.0]
        assert {labels["topic"] for labels, _ in started["ingestflow_dead_lettered_total"]} >= set(WORKER_INPUTS)
        assert ({"backend": "local"}, 0.0) in started["ingestflow_archive_upload_failures_total"]

        # A replay of two-day-old events: old event times, fresh consumption.
        old = (datetime.now(timezone.utc) - timedelta(days=2)).timestamp()
        records = [(f"lag-{unique}-r{i % 8}", {"id": f"lag-{unique}-{i}", "type": "VIEW", "ruleId": f"lag-{unique}-r{i % 8}",
                    "ts": datetime.fromtimestamp(old + i, timezone.utc).isoformat().replace("+00:00", "Z"),
                    "idempotencyKey": f"lag-{unique}-{i}"}, old + i) for i in range(64)]
        await analytics_data.produce(bootstrap, topics.EVENTS.name, records)

        async def events_committed() -> bool:
            status = await consumer_group(kafka.connection, group, [topics.EVENTS.name])
            assert sum(p.end for p in status.partitions) == 64 and all(p.lag == 0 for p in status.partitions), \
                status.partitions
            return True
        await eventually(events_committed, timeout=120, what="the replayed events committed")

        async def replay_measured() -> dict[str, list[tuple[dict[str, str], float]]]:
            samples = await scrape(WORKER_A)
            counts = [v for labels, v in samples.get("ingestflow_processing_duration_seconds_count", [])
                      if labels["agent"] == "rule-metrics"]
            return samples if counts and counts[0] > 0 else {}
        samples = await eventually(replay_measured, timeout=60, what="the replay's batches measured")

        def bucket(name: str, le: str) -> float:
            return float(next(v for labels, v in samples[f"{name}_bucket"]
                              if labels["agent"] == "rule-metrics" and labels["le"] == le))
        assert bucket("ingestflow_processing_duration_seconds", "60.0") == \
            bucket("ingestflow_processing_duration_seconds", "+Inf") > 0
        assert bucket("ingestflow_event_age_seconds", "86400.0") == 0  # every batch's newest event is 2 days old
        assert bucket("ingestflow_event_age_seconds", "604800.0") == bucket("ingestflow_event_age_seconds", "+Inf")

        # A second worker joins: the partitions are split, and each is reported by its owner alone.
        worker_b = spawn(["worker"], env_b, name="worker-b")
        await wait_http(f"http://127.0.0.1:{WORKER_B}/metrics", timeout=120)

        async def reported_by_owners() -> dict[int, set[tuple[str, int]]]:
            status = await consumer_group(kafka.connection, group, WORKER_INPUTS)
            assert status.state == "Stable" and len(status.members) == 2, (status.state, status.members)
            owned = {int(m.client_id.rsplit(":", 1)[1]): {tp for tp in m.partitions if tp in ALL_INPUTS}
                     for m in status.members}
            reported = {port: await lag_reported(port) for port in (WORKER_A, WORKER_B)}
            assert reported == owned, {"reported": reported, "owned by Kafka": owned}
            assert owned[WORKER_A] and owned[WORKER_B] and owned[WORKER_A] | owned[WORKER_B] == ALL_INPUTS
            return owned
        owned = await eventually(reported_by_owners, timeout=180, interval=1, what="lag reported by owners only")

        async def panel_shows_owners() -> bool:
            shown = [((s["metric"]["topic"], int(s["metric"]["partition"])), int(s["metric"]["instance"].rsplit(":", 1)[1]))
                     for s in await prom.query(lag_panel_query()) if s["metric"]["group"] == group]
            assert len(shown) == len({tp for tp, _ in shown}), "a partition shown twice"
            assert {tp: port for tp, port in shown} == {tp: port for port, tps in owned.items() for tp in tps}
            return True
        await eventually(panel_shows_owners, timeout=60, interval=1, what="the lag panel showing each owner's value")
    except AssertionError:
        print(worker_a.tail(30), worker_b.tail(30) if worker_b else "")
        raise


async def test_gateway_exports_what_its_alerts_read_from_start(
        spawn: Callable[..., Any], env_factory: Callable[..., dict[str, str]]) -> None:
    env = env_factory(PORT=str(GATEWAY), SPOOL_MAX_BYTES="5000000", HEALTH_PROBE_INTERVAL_S="1")
    gateway = spawn(["gateway"], env)
    await wait_http(f"http://127.0.0.1:{GATEWAY}/health/live")
    began = time.monotonic()

    async def exported() -> dict[str, list[tuple[dict[str, str], float]]]:
        samples = await scrape(GATEWAY)
        return samples if samples.get("ingestflow_ready") == [({}, 1.0)] else {}
    try:
        samples = await eventually(exported, timeout=60, what="the gateway ready on /metrics")
    except AssertionError:
        print(gateway.tail(30))
        raise
    assert time.monotonic() - began < 60
    assert ({"reason": "SpoolFull"}, 0.0) in samples["ingestflow_events_rejected_total"]
    assert samples["ingestflow_spool_max_bytes"] == [({}, 5_000_000.0)]
    assert samples["ingestflow_spool_bytes"] == [({}, 0.0)]
    (info,) = samples["ingestflow_build_info"]
    assert info[0]["role"] == "gateway" and info[0]["version"] and info[0]["faust"]
    durations = {labels["route"] for labels, _ in samples["ingestflow_http_request_duration_seconds_count"]
                 if labels["method"] == "GET"}
    assert "/health/live" in durations
