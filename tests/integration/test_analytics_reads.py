"""Reads over the analytics, with two workers sharing the partitions of one consumer group and a private
Redis that is stopped halfway: every read endpoint, on the gateway and on each worker, answers the truth
computed from the input, from Redis while it is up and from PostgreSQL once it is down."""
from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

import aiohttp

from . import analytics_data
from .conftest import all_committed, eventually, start_group_at_end, wait_http

GATEWAY = "http://127.0.0.1:18310"
WORKERS = ("http://127.0.0.1:18311", "http://127.0.0.1:18312")
WEIGHTS = {"views": 1.0, "copies": 3.0}
DAY1 = analytics_data.DAY1.date().isoformat()
# A range around the stream's two days, wider than them on both sides.
RANGE = {"from": (analytics_data.DAYS[0] - timedelta(days=10)).date().isoformat(),
         "to": (analytics_data.DAYS[-1] + timedelta(days=1)).date().isoformat()}


async def _get(http: aiohttp.ClientSession, path: str, base: str = GATEWAY, **params: Any) -> tuple[int, Any]:
    async with http.get(base + path, params=params) as resp:
        return resp.status, await resp.json()


async def test_two_workers_and_a_redis_outage_leave_every_read_correct(
        spawn: Callable[..., Any], env_factory: Callable[..., dict[str, str]],
        private_service: Callable[..., Any], own_database: str, unique: str) -> None:
    redis = private_service("redis", 19350)
    prefix = f"rd{unique}"
    env = env_factory(PORT="18310", WORKER_APP_ID=f"analytics-rd-{unique}", LEADERBOARD_REFRESH_S="1",
                      DATABASE_URL=own_database,  # leaderboards rank every rule in the database
                      REDIS_URL=redis.url("0"), EVENT_WEIGHTS="VIEW=1,COPY=3,SAVE=0,FORK=0,VOTE=0")
    bootstrap = env["KAFKA_BOOTSTRAP_SERVERS"]
    await start_group_at_end(env["WORKER_APP_ID"])
    # Eight rules so both workers' partitions carry some; rule i gets i+1 times the base traffic.
    streams = [analytics_data.build(f"{prefix}-{i}", rules=1, copies=i + 1, plain_views=2 * (i + 1), ips=1,
                                    author_for={0: f"{prefix}-eve"} if i % 2 else None) for i in range(8)]
    rule_totals: dict[str, dict[str, int]] = {}
    for s in streams:
        for (rule, _), counts in s.truth.items():
            acc = rule_totals.setdefault(rule, {"views": 0, "copies": 0})
            acc["views"] += counts["views"]
            acc["copies"] += counts["copies"]
    # Two worker processes (own web port and RocksDB directory each) in one consumer group; the input is
    # produced once both hold partitions, so each counts a share.
    workers = [spawn(["worker"], dict(env, WORKER_PORT=str(18311 + i), TABLE_DIR=f"{env['TABLE_DIR']}-{i}"),
                     name=f"worker{i}") for i in range(2)]
    spawn(["gateway"], env)
    await wait_http(GATEWAY + "/health")
    await analytics_data.wait_group_members(bootstrap, env["WORKER_APP_ID"], 2)
    await analytics_data.produce(bootstrap, "events", [r for s in streams for r in s.records])
    # The catalog gives the even rules to ann; the odd rules keep the authorId their events carry (eve).
    await analytics_data.produce(bootstrap, "rules", [
        (f"{prefix}-{i}-r0", {"ruleId": f"{prefix}-{i}-r0", "authorId": f"{prefix}-ann"}, 1.7e9)
        for i in range(0, 8, 2)])
    scores = {rule: t["views"] * WEIGHTS["views"] + t["copies"] * WEIGHTS["copies"] for rule, t in rule_totals.items()}
    expected_rules = sorted(scores.items(), key=lambda kv: (-kv[1], kv[0]))
    author_of = {rule: f"{prefix}-ann" if int(rule.split("-")[1]) % 2 == 0 else f"{prefix}-eve" for rule in scores}
    author_totals: dict[str, dict[str, int]] = {}
    for rule, t in rule_totals.items():
        acc = author_totals.setdefault(author_of[rule], {"views": 0, "copies": 0})
        acc["views"] += t["views"]
        acc["copies"] += t["copies"]

    async with aiohttp.ClientSession() as http:
        async def all_counted() -> bool:
            for author, t in author_totals.items():
                status, body = await _get(http, f"/metrics/authors/{author}", **RANGE)
                assert status == 200 and {k: body["totals"][k] for k in t} == t, (author, body)
            return True
        try:
            await eventually(all_counted, timeout=150, what="author totals")
        except AssertionError:
            print(workers[0].tail(30), workers[1].tail(30))
            for rule in rule_totals:  # which rules are short, to tell counting from attribution
                print(rule, rule_totals[rule], await _get(http, f"/metrics/rules/{rule}", **RANGE))
            raise

        async def check_all(source: str) -> None:
            for base in (GATEWAY, *WORKERS):  # every process answers every read alike
                await check_reads(base, source)

        async def check_reads(base: str, source: str) -> None:
            for rule, t in rule_totals.items():
                status, body = await _get(http, f"/metrics/rules/{rule}", base, **RANGE)
                assert status == 200
                assert {k: body["totals"][k] for k in t} == t
                assert {d["day"]: {"views": d["views"], "copies": d["copies"]} for d in body["days"]} == {
                    day: c for (r, day), c in ((k, v) for s in streams for k, v in s.truth.items()) if r == rule}
            status, body = await _get(http, "/leaderboards/all-time", base, scope="rules", limit="100")
            assert status == 200 and body["source"] == source
            mine = [(e["id"], e["score"]) for e in body["entries"]]
            assert mine == expected_rules
            status, body = await _get(http, "/leaderboards/all-time", base, scope="authors", limit="100")
            mine = [(e["id"], e["score"]) for e in body["entries"]]
            assert mine == sorted(((a, t["views"] + 3 * t["copies"]) for a, t in author_totals.items()),
                                  key=lambda kv: (-kv[1], kv[0]))
            status, body = await _get(http, "/leaderboards/daily", base, scope="rules", date=DAY1, limit="100")
            day_scores = {rule: c["views"] + 3 * c["copies"] for (rule, day), c in
                          ((k, v) for s in streams for k, v in s.truth.items()) if day == DAY1}
            assert [(e["id"], e["score"]) for e in body["entries"]] == sorted(
                day_scores.items(), key=lambda kv: (-kv[1], kv[0]))

        async def served_hot() -> bool:
            # The leader refreshes the Redis sets every second; wait for one taken after the last count.
            await check_all("redis")
            return True
        await eventually(served_hot, timeout=30, what="leaderboards served correctly from Redis")
        # Across the rebalances of two workers joining, the group commits everything it counted: lag 0.
        await all_committed(env["WORKER_APP_ID"])

        for base in (GATEWAY, *WORKERS):
            status, body = await _get(http, "/trending/rules", base, limit="100")
            ranked = [e["id"] for e in body["entries"]]
            assert status == 200 and ranked == [rule for rule, _ in expected_rules]  # same times, so by weight

        # Both workers counted events: the partitions really were shared.
        for port in (18311, 18312):
            async with http.get(f"http://127.0.0.1:{port}/metrics") as resp:
                text = await resp.text()
            counted = [line for line in text.splitlines()
                       if line.startswith('ingestflow_processed_total{agent="rule-metrics",outcome="counted"}')]
            assert counted and float(counted[0].split()[-1]) > 0, f"worker on {port} counted nothing"

        redis.stop()
        await check_all("postgres")
        for base in (GATEWAY, *WORKERS):
            status, body = await _get(http, "/leaderboards/weekly", base, scope="teams")
            assert status == 400 and body["field"] == "scope"
            status, body = await _get(http, "/leaderboards/yearly", base)
            assert status == 400 and body["field"] == "period"
