"""Request bodies as a real network delivers them: in several TCP segments, some late. Each is sent over a
raw socket, the head and the first part in one write, the rest after a pause, to a real `ingestflow gateway`;
what the gateway accepted is read back from Kafka."""
from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp
import pytest

from ingestflow.app.core import serde
from ingestflow.app.gateway.stripe_signature import sign

from ..conftest import BASE_ENV
from .conftest import Process
from .gateway_kit import consume, end_offsets, events_body, gateway_process, post, post_in_pieces

PORT = 18501
BASE = f"http://127.0.0.1:{PORT}"
KAFKA = BASE_ENV["KAFKA_BOOTSTRAP_SERVERS"]
SECRET = BASE_ENV["STRIPE_WEBHOOK_SECRET"]
MAX_BODY = 65536
BODY_TIMEOUT_S = 3


@pytest.fixture(scope="module")
async def gateway(services: None, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Process]:
    async with gateway_process(tmp_path_factory.mktemp("gateway"), PORT, MAX_BODY_BYTES=str(MAX_BODY),
                               BODY_TIMEOUT_S=str(BODY_TIMEOUT_S), RATE_LIMIT_EVENTS_PER_MIN="100000",
                               RATE_LIMIT_CRAWL_PER_MIN="100000") as proc:
        yield proc


def _events(tag: str) -> tuple[bytes, list[str], bytes]:
    """A batch of events of the size a client library sends (about 9 KB), its ids and its key."""
    rule, keys = f"split-{tag}", [f"{tag}-{i}" for i in range(60)]
    return serde.dumps(events_body(rule, keys)), keys, rule.encode()


def _crawl(tag: str) -> tuple[bytes, list[str], bytes]:
    items = [{"externalId": str(i), "url": f"https://example.org/{tag}/{i}", "title": f"item {i}",
              "raw": {"text": "x" * 100}} for i in range(40)]
    keys = [f"src-{tag}:{i}" for i in range(40)]
    return serde.dumps({"sourceId": f"src-{tag}", "items": items}), keys, b""


def _records(tag: str) -> tuple[bytes, list[str], bytes]:
    user = uuid.uuid4().int % 10**12
    wuids = [f"{tag}-{i}" for i in range(40)]
    records = [{"wuid": wuid, "cleaned": {"text": "y" * 100}, "context": "c"} for wuid in wuids]
    return serde.dumps({"user_id": user, "records": records}), wuids, str(user).encode()


ROUTES: dict[str, tuple[str, Callable[[str], tuple[bytes, list[str], bytes]], str, str]] = {
    # route -> (path, body maker, topic, the answer's field listing what it accepted)
    "events": ("/ingest/events", _events, "events", "ids"),
    "crawl": ("/ingest/crawl", _crawl, "crawl-items", "keys"),
    "records": ("/ingest/records", _records, "website-records", "wuids"),
}


def _item_id(topic: str, record: Any) -> str:
    if topic == "crawl-items":
        return str(record.key.decode())
    return str(serde.loads(record.value)["id" if topic == "events" else "wuid"])


@pytest.mark.parametrize("route", sorted(ROUTES))
async def test_a_body_in_two_segments_with_a_pause_is_accepted_whole(
        gateway: Process, unique: str, route: str) -> None:
    path, make, topic, listed = ROUTES[route]
    body, ids, key = make(unique)
    assert len(body) > 5000
    start = await end_offsets(KAFKA, topic)
    reply = await post_in_pieces(PORT, path, body, cut=1000, pause=0.3)
    assert reply.status == 202, reply.body
    assert reply.body[listed] == ids
    landed = await consume(KAFKA, topic, lambda r: len(r) >= len(ids), start=start,
                           keep=lambda r: (r.key == key or not key) and _item_id(topic, r) in ids)
    assert sorted(_item_id(topic, r) for r in landed) == sorted(ids)


async def test_a_stripe_webhook_in_two_segments_verifies_and_lands_byte_for_byte(
        gateway: Process, unique: str) -> None:
    event = serde.dumps({"id": f"evt_{unique}", "type": "charge.succeeded", "created": 1_700_000_000,
                         "data": {"object": {"amount": 500, "description": "d" * 3000}}})
    t = int(time.time())
    start = await end_offsets(KAFKA, "stripe-webhooks")
    reply = await post_in_pieces(PORT, "/ingest/stripe/webhook", event, cut=1000, pause=0.3,
                                 headers={"Stripe-Signature": f"t={t},v1={sign(event, SECRET, t)}"})
    assert reply.status == 200, reply.body
    assert reply.body["id"] == f"evt_{unique}"
    [landed] = await consume(KAFKA, "stripe-webhooks", lambda r: len(r) >= 1, start=start,
                             keep=lambda r: r.key == f"evt_{unique}".encode())
    assert landed.value == event


async def test_a_client_that_stops_sending_mid_body_gets_408_and_the_gateway_keeps_serving(
        gateway: Process, unique: str) -> None:
    body, ids, _ = _events(unique)
    started = time.monotonic()
    # The Content-Length promises more than ever comes: the gateway must not wait for it forever.
    reply = await post_in_pieces(PORT, "/ingest/events", body, cut=1000, pause=0, length=len(body) + 10)
    assert reply.status == 408, reply.body
    assert reply.body["error"] == "RequestTimeout"
    assert BODY_TIMEOUT_S - 0.5 <= time.monotonic() - started < 60
    async with aiohttp.ClientSession() as http:
        again = await post(http, f"{BASE}/ingest/events", serde.loads(body))
    assert again.status == 202 and again.body["ids"] == ids


async def test_a_chunked_body_past_the_limit_is_413_however_it_arrives(gateway: Process) -> None:
    async def chunks() -> AsyncIterator[bytes]:
        yield b'{"events": ['
        for _ in range(MAX_BODY // 4096 + 1):
            await asyncio.sleep(0.01)
            yield b" " * 4096
    async with aiohttp.ClientSession() as http:
        # No Content-Length: the limit can only be found while reading.
        async with http.post(f"{BASE}/ingest/events", data=chunks(),
                             headers={"content-type": "application/json",
                                      "x-app-token": BASE_ENV["INGEST_APP_TOKEN"]}) as resp:
            assert resp.status == 413, await resp.text()
