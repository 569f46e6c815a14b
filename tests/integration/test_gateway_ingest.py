"""The gateway as its users meet it: a real `ingestflow gateway` process on the shared Kafka and Redis.
What a request produced is read back with a raw aiokafka consumer."""
from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import aiohttp
import pytest

from ingestflow.app.core import serde
from ingestflow.app.gateway.stripe_signature import sign

from ..conftest import BASE_ENV
from .analytics_data import recent_day
from .conftest import Process
from .gateway_kit import consume, end_offsets, gateway_process, get, post

PORT = 18101
BASE = f"http://127.0.0.1:{PORT}"
KAFKA = BASE_ENV["KAFKA_BOOTSTRAP_SERVERS"]
SECRET = BASE_ENV["STRIPE_WEBHOOK_SECRET"]
DAY = recent_day(2)


@pytest.fixture(scope="module")
async def gateway(services: None, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Process]:
    async with gateway_process(tmp_path_factory.mktemp("gateway"), PORT, MAX_BODY_BYTES="65536",
                               MAX_BATCH_ITEMS="50", RATE_LIMIT_EVENTS_PER_MIN="100000",
                               RATE_LIMIT_CRAWL_PER_MIN="100000") as proc:
        yield proc


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


def values(records: list[Any]) -> list[Any]:
    return [serde.loads(r.value) for r in records]


async def test_events_land_on_the_topic_keyed_by_rule_with_ip_id_and_event_time(
        gateway: Process, http: aiohttp.ClientSession, unique: str) -> None:
    start = await end_offsets(KAFKA, "events")
    rule = f"rule-{unique}"
    body = {"events": [{"type": "VIEW", "ruleId": rule, "userId": "u1", "ts": DAY.strftime("%Y-%m-%dT10:00:00Z"),
                        "idempotencyKey": f"k-{unique}"},
                       {"type": "VOTE", "ruleId": rule, "authorId": "a1"}]}
    before = time.time()
    reply = await post(http, f"{BASE}/ingest/events", body)
    assert reply.status == 202, reply.body
    assert reply.body["accepted"] == 2 and reply.body["ids"][0] == f"k-{unique}"
    assert reply.body["stored"] == "kafka"
    got = await consume(KAFKA, "events", lambda r: len(r) >= 2, start=start, keep=lambda r: r.key == rule.encode())
    by_id = {v["id"]: (v, r) for v, r in zip(values(got), got)}
    first, record = by_id[f"k-{unique}"]
    assert first["ip"] == "127.0.0.1" and first["type"] == "VIEW" and first["userId"] == "u1"
    event_time_ms = int((DAY + timedelta(hours=10)).timestamp()) * 1000
    assert record.timestamp == event_time_ms  # the event's ts, which the daily windows are cut on
    second, record = by_id[reply.body["ids"][1]]
    assert second["type"] == "VOTE" and abs(record.timestamp / 1000 - before) < 60  # ts defaults to receipt


async def test_crawl_records_and_stripe_land_with_their_keys(
        gateway: Process, http: aiohttp.ClientSession, unique: str) -> None:
    offsets = {t: await end_offsets(KAFKA, t) for t in ("crawl-items", "website-records", "stripe-webhooks")}
    crawl = {"sourceId": f"src-{unique}", "items": [{"externalId": "1", "url": "https://example.org/a",
                                                     "title": "A", "raw": {"x": 1}}]}
    assert (await post(http, f"{BASE}/ingest/crawl", crawl)).status == 202
    user = int(uuid.uuid4().int % 10**12)
    records = {"user_id": user, "records": [{"wuid": "w1", "cleaned": {"t": "x"}, "context": "c"}]}
    assert (await post(http, f"{BASE}/ingest/records", records)).status == 202
    event = serde.dumps({"id": f"evt_{unique}", "type": "charge.succeeded", "created": int(DAY.timestamp()) + 36_000,
                         "data": {"object": {"amount": 500}}})
    t = int(time.time())
    reply = await post(http, f"{BASE}/ingest/stripe/webhook", raw=event, token=None,
                       headers={"Stripe-Signature": f"t={t},v1={sign(event, SECRET, t)}"})
    assert reply.status == 200 and reply.body["id"] == f"evt_{unique}", reply.body

    [c] = await consume(KAFKA, "crawl-items", lambda r: len(r) >= 1, start=offsets["crawl-items"],
                        keep=lambda r: r.key == f"src-{unique}:1".encode())
    assert serde.loads(c.value)["raw"] == {"x": 1} and serde.loads(c.value)["title"] == "A"
    [w] = await consume(KAFKA, "website-records", lambda r: len(r) >= 1, start=offsets["website-records"],
                        keep=lambda r: r.key == str(user).encode())
    assert serde.loads(w.value) == {"user_id": user, "wuid": "w1", "cleaned": {"t": "x"}, "context": "c"}
    [s] = await consume(KAFKA, "stripe-webhooks", lambda r: len(r) >= 1, start=offsets["stripe-webhooks"],
                        keep=lambda r: r.key == f"evt_{unique}".encode())
    assert s.value == event  # Stripe's event object, byte for byte


@pytest.mark.parametrize("case, status, field", [
    ("no token", 401, None), ("wrong token", 401, None), ("browser", 403, None),
    ("text/plain", 415, None), ("too large", 413, None), ("malformed", 400, "body"),
    ("unknown type", 400, "events[1].type"), ("missing ruleId", 400, "events[0].ruleId"),
    ("wrong type", 400, "events[0].userId"), ("too many", 400, "events"), ("not a list", 400, "events"),
    ("bad ts", 400, "events[0].ts"), ("ancient ts", 400, "events[0].ts"), ("overflowing ts", 400, "events[0].ts"),
    ("bad bufferMs", 400, "bufferMs"),
])
async def test_bad_requests_get_a_clear_answer_and_produce_nothing(
        gateway: Process, http: aiohttp.ClientSession, unique: str, case: str, status: int,
        field: str | None) -> None:
    rule = f"bad-{unique}"
    ok = {"type": "VIEW", "ruleId": rule}
    bodies: dict[str, dict[str, Any]] = {
        "unknown type": {"events": [ok, {"type": "LIKE", "ruleId": rule}]},
        "missing ruleId": {"events": [{"type": "VIEW"}]},
        "wrong type": {"events": [{**ok, "userId": 7}]},
        "too many": {"events": [ok] * 51},
        "not a list": {"events": ok},
        "bad ts": {"events": [{**ok, "ts": "yesterday"}]},
        "ancient ts": {"events": [{**ok, "ts": "0001-01-01T00:00:00Z"}]},
        "overflowing ts": {"events": [{**ok, "ts": "9999-12-31T23:00:00-05:00"}]},
        "bad bufferMs": {"events": [ok], "bufferMs": "soon"},
    }
    kwargs: dict[str, Any] = {"body": bodies.get(case, {"events": [ok]})}
    if case == "no token":
        kwargs["token"] = None
    elif case == "wrong token":
        kwargs["token"] = BASE_ENV["INGEST_APP_TOKEN"][:-1] + "x"
    elif case == "browser":
        kwargs["headers"] = {"Origin": "https://evil.example"}
    elif case == "text/plain":
        kwargs["content_type"] = "text/plain"
    elif case == "too large":
        kwargs["raw"] = serde.dumps({"events": [{**ok, "userId": "u" * 100}] * 700})
    elif case == "malformed":
        kwargs["raw"] = b'{"events": ['
    start = await end_offsets(KAFKA, "events")
    reply = await post(http, f"{BASE}/ingest/events", **kwargs)
    assert reply.status == status, reply.body
    assert reply.body["error"] and reply.body.get("message") or reply.body.get("reason")
    if field is not None:
        assert reply.body["field"] == field
    if case == "unknown type":
        assert "VIEW, COPY, SAVE, FORK, VOTE" in reply.body["reason"]
    assert BASE_ENV["INGEST_APP_TOKEN"] not in str(reply.body)
    # The valid event of the rejected batch was not produced either.
    leaked = await consume(KAFKA, "events", lambda r: False, start=start, timeout=1.0,
                           keep=lambda r: r.key == rule.encode())
    assert leaked == []


async def test_deeply_nested_raw_or_cleaned_is_a_400_not_a_crash(
        gateway: Process, http: aiohttp.ClientSession, unique: str) -> None:
    deep = '{"a":' * 300 + "1" + "}" * 300  # written by hand: orjson itself refuses to write it
    crawl = f'{{"sourceId": "deep-{unique}", "items": [{{"externalId": "1", "url": "https://e.org", "title": "t", ' \
            f'"raw": {deep}}}]}}'
    reply = await post(http, f"{BASE}/ingest/crawl", raw=crawl.encode())
    assert reply.status == 400 and reply.body["field"] == "items[0].raw", reply.body
    records = f'{{"user_id": 1, "records": [{{"wuid": "w", "cleaned": {deep}}}]}}'
    reply = await post(http, f"{BASE}/ingest/records", raw=records.encode())
    assert reply.status == 400 and reply.body["field"] == "records[0].cleaned", reply.body


@pytest.mark.parametrize("header", ["missing", "wrong", "stale", "other body"])
async def test_stripe_bad_missing_or_stale_signature_is_400_and_never_produced(
        gateway: Process, http: aiohttp.ClientSession, unique: str, header: str) -> None:
    event = serde.dumps({"id": f"evt_{unique}", "type": "x", "created": 1, "data": {"object": {}}})
    now = int(time.time())
    headers = {"missing": {},
               "wrong": {"Stripe-Signature": f"t={now},v1={sign(event, 'whsec_wrong_secret', now)}"},
               "stale": {"Stripe-Signature": f"t={now - 301},v1={sign(event, SECRET, now - 301)}"},
               "other body": {"Stripe-Signature": f"t={now},v1={sign(event + b' ', SECRET, now)}"}}[header]
    start = await end_offsets(KAFKA, "stripe-webhooks")
    reply = await post(http, f"{BASE}/ingest/stripe/webhook", raw=event, token=None, headers=headers)
    assert reply.status == 400 and reply.body["field"] == "Stripe-Signature", reply.body
    assert SECRET not in str(reply.body)
    leaked = await consume(KAFKA, "stripe-webhooks", lambda r: False, start=start, timeout=1.0,
                           keep=lambda r: r.key == f"evt_{unique}".encode())
    assert leaked == []


async def test_fire_and_forget_answers_from_the_spool_and_still_delivers(
        gateway: Process, http: aiohttp.ClientSession, unique: str) -> None:
    start = await end_offsets(KAFKA, "events")
    rule = f"qos-{unique}"
    ids: list[str] = []
    for i in range(5):
        reply = await post(http, f"{BASE}/ingest/events",
                           {"events": [{"type": "VIEW", "ruleId": rule, "idempotencyKey": f"{unique}-{i}"}],
                            "bufferMs": 200, "bufferMax": 3})
        assert reply.status == 202 and reply.body["buffered"] is True and reply.body["stored"] == "spool"
        ids += reply.body["ids"]
    got = await consume(KAFKA, "events", lambda r: len(r) >= 5, start=start, keep=lambda r: r.key == rule.encode())
    assert [v["id"] for v in values(got)] == ids


async def test_status_health_and_openapi_describe_the_gateway(gateway: Process, http: aiohttp.ClientSession) -> None:
    buffers = await get(http, f"{BASE}/status/buffers")
    assert buffers.status == 200 and {"pending", "failed", "kafkaHealthy"} <= set(buffers.body)
    health = await get(http, f"{BASE}/health")
    assert health.status == 200 and health.body["ready"] is True
    assert {d["name"] for d in health.body["dependencies"]} >= {"kafka", "postgres", "redis", "spool"}
    async with http.get(f"{BASE}/health", headers={"Origin": "https://status.example"}) as resp:
        assert resp.status == 200  # the one endpoint browsers may call
    doc = (await get(http, f"{BASE}/openapi.json")).body
    for path, method in [("/ingest/events", "post"), ("/ingest/crawl", "post"), ("/ingest/records", "post"),
                         ("/ingest/stripe/webhook", "post"), ("/health", "get"), ("/metrics", "get"),
                         ("/status/buffers", "get"), ("/openapi.json", "get")]:
        assert method in doc["paths"][path], path
    events = doc["paths"]["/ingest/events"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert events["properties"]["events"]["items"]["properties"]["type"]["enum"] == [
        "VIEW", "COPY", "SAVE", "FORK", "VOTE"]
