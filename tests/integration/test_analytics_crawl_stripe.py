"""Crawl items, Stripe donations, the rollup and the audit trail, through a real worker and gateway."""
from __future__ import annotations

from collections.abc import Callable
import time
from datetime import datetime, timedelta, timezone
from typing import Any

import aiohttp
import asyncpg
from aiokafka import AIOKafkaConsumer, TopicPartition

from ingestflow.app.core import serde

from . import analytics_data
from .conftest import eventually, start_group_at_end, wait_http

GATEWAY = "http://127.0.0.1:18320"
# A day of its own among the days still counted (other tests use the last few days); records are stamped
# when they are produced, as the gateway stamps webhooks and crawl items.
DAY = datetime.now(timezone.utc).replace(hour=10, minute=0, second=0, microsecond=0) - timedelta(days=12)
DATE = DAY.date().isoformat()
TOPICS = ("events", "rules", "crawl-items", "stripe-webhooks", "website-records")


def _stripe(event_id: str, kind: str, obj: dict[str, Any], minute: int) -> tuple[str, dict[str, Any], float]:
    created = DAY.timestamp() + 60 * minute
    return event_id, {"id": event_id, "type": kind, "created": int(created), "data": {"object": obj}}, time.time()


async def _dead_lettered(port: int, topic: str) -> float:
    async with aiohttp.ClientSession() as http, http.get(f"http://127.0.0.1:{port}/metrics") as resp:
        text = await resp.text()
    lines = [ln for ln in text.splitlines() if ln.startswith(f'ingestflow_dead_lettered_total{{topic="{topic}"}}')]
    return float(lines[0].split()[-1]) if lines else 0.0


async def test_crawl_items_search_and_rebuild(
        spawn: Callable[..., Any], env_factory: Callable[..., dict[str, str]], pg: asyncpg.Connection,
        unique: str) -> None:
    env = env_factory(PORT="18320", WORKER_PORT="18321", WORKER_APP_ID=f"analytics-cs-{unique}")
    bootstrap = env["KAFKA_BOOTSTRAP_SERVERS"]
    await start_group_at_end(env["WORKER_APP_ID"], TOPICS)
    worker = spawn(["worker"], env)
    spawn(["gateway"], env)
    await wait_http(GATEWAY + "/health")
    source = f"src-{unique}"
    word_b, word_c = f"zebra{unique}", f"quokka{unique}"

    def item(ext: str, title: str, summary: str | None = None) -> tuple[str, Any, float]:
        value = {"sourceId": source, "externalId": ext, "url": f"https://example.org/{ext}", "title": title,
                 "summary": summary, "receivedAt": DAY.isoformat()}
        return f"{source}:{ext}", value, time.time()

    await analytics_data.produce(bootstrap, "crawl-items", [
        item("a", "Plain article"), item("b", f"About the {word_b}"), item("c", "Third", f"mentions {word_c}"),
        (f"{source}:bad", {"sourceId": source, "externalId": "bad", "title": "no url"}, time.time())])

    async def rows() -> dict[str, Any]:
        found = await pg.fetch("SELECT external_id, title, updated_at FROM crawl_items WHERE source_id = $1", source)
        return {r["external_id"]: r for r in found}
    try:
        first = await eventually(lambda: _when(rows(), lambda r: len(r) == 3), timeout=90, what="3 crawl items")
    except AssertionError:
        print(worker.tail(40))
        raise
    # The item without a URL is dead-lettered and the worker keeps going (its key may sit on another partition,
    # handled in a batch of its own).
    await eventually(lambda: _dead_lettered(18321, "crawl-items"), timeout=60, what="dead-lettered crawl item")

    # Again: `a` unchanged (not rewritten), `b` retitled (rewritten).
    await analytics_data.produce(bootstrap, "crawl-items", [item("a", "Plain article"),
                                                            item("b", f"The {word_b} returns")])
    second = await eventually(lambda: _when(rows(), lambda r: r["b"]["title"] == f"The {word_b} returns"),
                              timeout=60, what="b updated")
    assert second["a"]["updated_at"] == first["a"]["updated_at"]
    assert second["b"]["updated_at"] > first["b"]["updated_at"]
    audits = await pg.fetch("SELECT detail FROM audit_log WHERE action = 'crawl.batch' AND subject LIKE 'crawl-items:%'"
                            " AND created_at > NOW() - interval '10 minutes' ORDER BY id")
    details = [serde.loads(a["detail"]) for a in audits]
    assert {"received": 2, "inserted": 0, "updated": 1, "unchanged": 1} in details

    async with aiohttp.ClientSession() as http:
        async def search(q: str) -> list[str]:
            async with http.get(GATEWAY + "/search", params={"q": q}) as resp:
                assert resp.status == 200
                return [r["externalId"] for r in (await resp.json())["results"]]
        assert await search(word_b) == ["b"]
        assert await search(word_c) == ["c"]
        async with http.get(GATEWAY + "/search") as resp:
            assert resp.status == 400 and (await resp.json())["field"] == "q"

        # A lost index is rebuilt by the cron endpoint (and only with the secret).
        await pg.execute("UPDATE crawl_items SET search_vector = NULL WHERE source_id = $1", source)
        assert await search(word_b) == []
        async with http.post(GATEWAY + "/cron/rebuild-search", headers={"x-cron-secret": "wrong"}) as resp:
            assert resp.status == 401
        async with http.post(GATEWAY + "/cron/rebuild-search",
                             headers={"x-cron-secret": env["CRON_SECRET"]}) as resp:
            assert resp.status == 200 and (await resp.json())["rebuilt"] >= 3
        assert await search(word_b) == ["b"]


async def test_donations_in_any_order_once_each_with_notifications_audit_and_rollup(
        spawn: Callable[..., Any], env_factory: Callable[..., dict[str, str]], pg: asyncpg.Connection,
        unique: str) -> None:
    # LEADERBOARD_SIZE: the snapshot keeps the top N, and the shared test database holds other tests' rules.
    env = env_factory(PORT="18320", WORKER_PORT="18322", WORKER_APP_ID=f"analytics-st-{unique}",
                      LEADERBOARD_SIZE="10000")
    bootstrap = env["KAFKA_BOOTSTRAP_SERVERS"]
    await start_group_at_end(env["WORKER_APP_ID"], TOPICS)
    notif_start = await _end_offsets(bootstrap, "notifications")
    worker = spawn(["worker"], env)
    spawn(["gateway"], env)
    await wait_http(GATEWAY + "/health")
    author, pi1, pi2 = f"au-{unique}", f"pi_1_{unique}", f"pi_2_{unique}"
    meta = {"authorId": author}
    ev = [
        # The refund arrives before the payment it refunds.
        _stripe(f"evt_r_{unique}", "charge.refunded", {"id": f"ch_{unique}", "payment_intent": pi1,
                                                       "amount_refunded": 500, "currency": "usd"}, 3),
        # One payment seen twice: its Checkout Session and its PaymentIntent.
        _stripe(f"evt_s_{unique}", "checkout.session.completed",
                {"id": f"cs_{unique}", "payment_intent": pi1, "amount_total": 1500, "currency": "usd",
                 "metadata": meta}, 1),
        _stripe(f"evt_p1_{unique}", "payment_intent.succeeded",
                {"id": pi1, "amount_received": 1500, "currency": "usd", "metadata": meta}, 1),
        _stripe(f"evt_p2_{unique}", "payment_intent.succeeded",
                {"id": pi2, "amount_received": 700, "currency": "usd", "metadata": meta}, 2),
        _stripe(f"evt_c_{unique}", "customer.created", {"id": f"cus_{unique}"}, 4),
    ]
    await analytics_data.produce(bootstrap, "stripe-webhooks", ev + [ev[3]])  # plus a redelivery
    await analytics_data.produce(bootstrap, "stripe-webhooks", [(f"evt_bad_{unique}", b"[1, 2", time.time())])
    # Some activity on a rule of the author that day, for the leaderboards the rollup snapshots.
    rule = f"cs-{unique}-r"
    await analytics_data.produce(bootstrap, "events", [
        (rule, {"type": "COPY", "ruleId": rule, "authorId": author, "ts": DAY.isoformat(),
                "idempotencyKey": f"{rule}-{i}"}, DAY.timestamp()) for i in range(4)])

    async def donation_day() -> Any:
        return await pg.fetchrow("SELECT donation_count, donation_amount_cents, copies FROM author_metric_daily"
                                 " WHERE author_id = $1 AND day = $2", author, DAY.date())
    try:
        got = await eventually(lambda: _when(donation_day(), lambda r: r is not None and r["copies"] == 4
                                             and r["donation_count"] == 2 and r["donation_amount_cents"] == 1700),
                               timeout=90, what="donation metrics")
    except AssertionError:
        print(await donation_day(), worker.tail(40))
        raise
    assert tuple(got) == (2, 1700, 4)  # (1500 − 500 refunded) + 700
    statuses = dict(await pg.fetch("SELECT stripe_event_id, status FROM donations WHERE stripe_event_id LIKE $1",
                                   f"evt_%_{unique}"))
    assert statuses == {f"evt_r_{unique}": "refunded", f"evt_s_{unique}": "succeeded",
                        f"evt_p1_{unique}": "succeeded", f"evt_p2_{unique}": "succeeded",
                        f"evt_c_{unique}": "ignored"}
    audited = await pg.fetchval("SELECT count(*) FROM audit_log WHERE action = 'stripe.webhook' AND subject LIKE $1",
                                f"evt_%_{unique}")
    assert audited == 5  # one per Stripe event, the redelivery included
    await eventually(lambda: _dead_lettered(18322, "stripe-webhooks"), timeout=30, what="dead-lettered webhook")

    notes = await _read(bootstrap, "notifications", notif_start, lambda v: v.get("authorId") == author, 3)
    assert {n["stripeEventId"] for n in notes} == {f"evt_s_{unique}", f"evt_p1_{unique}", f"evt_p2_{unique}"}
    assert {n["paymentRef"] for n in notes} == {pi1, pi2}

    async with aiohttp.ClientSession() as http:
        async with http.get(GATEWAY + f"/metrics/authors/{author}", params={"from": DATE, "to": DATE}) as r:
            body = await r.json()
        assert body["totals"]["donation_count"] == 2 and body["totals"]["donation_amount_cents"] == 1700

        async def rollup(payload: dict[str, Any], secret: str = env["CRON_SECRET"]) -> tuple[int, Any]:
            async with http.post(GATEWAY + "/cron/rollup", json=payload, headers={"x-cron-secret": secret}) as r:
                return r.status, await r.json()
        assert (await rollup({}, secret="nope"))[0] == 401
        status, body = await rollup({"daysToProcess": 31})
        assert status == 400 and body["field"] == "daysToProcess"
        status, body = await rollup({"date": "18/11/2026"})
        assert status == 400 and body["field"] == "date"

        # A first run writes the day's snapshots; then the derived rows are damaged: a dry run reports and
        # writes nothing, the real run restores them as they were.
        async def snapshot() -> set[tuple[Any, ...]]:
            return {tuple(r) for r in await pg.fetch("SELECT scope, period, rank, subject_id, score"
                                                      " FROM leaderboard_snapshot WHERE day = $1", DAY.date())}
        status, body = await rollup({"date": DATE, "daysToProcess": 1})
        assert status == 200
        before = await snapshot()
        assert {(scope, period) for scope, period, *_ in before} == {
            (scope, period) for scope in ("rules", "authors") for period in ("daily", "weekly", "monthly", "all-time")}
        assert ("rules", "daily", rule) in {(scope, period, subject) for scope, period, _, subject, _ in before}
        await pg.execute("UPDATE author_metric_daily SET donation_count = 0, copies = 0 WHERE author_id = $1", author)
        await pg.execute("DELETE FROM leaderboard_snapshot WHERE day = $1", DAY.date())
        status, body = await rollup({"date": DATE, "daysToProcess": 1, "dryRun": True})
        assert status == 200 and body["dryRun"] is True
        assert body["days"][0]["day"] == DATE and body["days"][0]["snapshotRows"] == len(before)
        assert body["days"][0]["authorMetricRows"] >= 1
        assert tuple(await donation_day()) == (0, 1700, 0)
        assert await snapshot() == set()

        status, body = await rollup({"date": DATE, "daysToProcess": 1})
        assert status == 200 and body["dryRun"] is False
        assert tuple(await donation_day()) == (2, 1700, 4)
        assert await snapshot() == before
        runs = await pg.fetch("SELECT detail FROM audit_log WHERE action = 'rollup.run' AND subject = $1"
                              " ORDER BY id DESC LIMIT 2", DATE)
        assert [serde.loads(r["detail"])["dryRun"] for r in runs] == [False, True]


async def _when(value: Any, ok: Callable[[Any], bool]) -> Any:
    got = await value
    return got if ok(got) else None


async def _end_offsets(bootstrap: str, topic: str) -> dict[TopicPartition, int]:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap)
    await consumer.start()
    try:
        await consumer._client.force_metadata_update()
        tps = [TopicPartition(topic, p) for p in sorted(consumer._client.cluster.partitions_for_topic(topic) or ())]
        return await consumer.end_offsets(tps)
    finally:
        await consumer.stop()


async def _read(bootstrap: str, topic: str, start: dict[TopicPartition, int], keep: Callable[[Any], bool],
                want: int) -> list[Any]:
    """Committed messages after `start` that `keep` accepts, once at least `want` arrived (60 s at most)."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, isolation_level="read_committed",
                                enable_auto_commit=False)
    await consumer.start()
    found: list[Any] = []
    try:
        consumer.assign(list(start))
        for tp, offset in start.items():
            consumer.seek(tp, offset)

        async def poll() -> bool:
            batch = await consumer.getmany(timeout_ms=500)
            for messages in batch.values():
                found.extend(v for v in (serde.loads(m.value) for m in messages) if keep(v))
            return len(found) >= want
        await eventually(poll, timeout=60, interval=0, what=f"{want} messages on {topic}")
    finally:
        await consumer.stop()
    return found
