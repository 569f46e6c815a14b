"""The gateway behind and in front of a misbehaving network (Toxiproxy): clients on slow, sliced or reset
links, and a Kafka whose link stalls, crawls or resets. What a user checks: every answer is a 202, or an error
the client can act on (a connection error, a 503 with Retry-After), and every event that got a 202 is on the
topic; none that never reached the gateway is."""
from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import aiohttp
import pytest

from ingestflow.app.clients.kafka import ensure_topics
from ingestflow.schemas import topics

from ..conftest import BASE_ENV, plaintext_kafka
from .conftest import Process, wait_http
from .gateway_kit import end_offsets, event_ids, events_body, gateway_process, post, wait_drained
from .toxiproxy import Proxy, Toxiproxy

KAFKA = BASE_ENV["KAFKA_BOOTSTRAP_SERVERS"]
GATEWAY_PORT, CLIENT_PROXY_PORT = 18502, 18503
KAFKA_PORT, KAFKA_PROXY_PORT, KAFKA_GATEWAY_PORT = 18510, 18512, 18513  # (18511: the broker's controller)


@pytest.fixture(scope="module")
async def gateway(services: None, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Process]:
    async with gateway_process(tmp_path_factory.mktemp("gateway"), GATEWAY_PORT, BODY_TIMEOUT_S="10",
                               RATE_LIMIT_EVENTS_PER_MIN="1000000") as proc:
        yield proc


@pytest.fixture
async def client_link(toxiproxy: Toxiproxy, unique: str) -> Proxy:
    """The network between the clients and the gateway."""
    return await toxiproxy.create(f"client-gateway-{unique}", CLIENT_PROXY_PORT, f"127.0.0.1:{GATEWAY_PORT}")


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


def assert_no_crash(process: Process) -> None:
    log = process.log.read_text(errors="replace")
    assert "unhandled error" not in log and "Traceback" not in log, process.tail(80)


SLOW_LINKS = {
    # Small segments with a delay between them: every body arrives in pieces.
    "slicer": ("upstream", {"average_size": 300, "size_variation": 200, "delay": 20_000}),
    "latency": ("upstream", {"latency": 400, "jitter": 200}),
    "bandwidth": ("upstream", {"rate": 8}),  # KB/s: a 9 KB body takes about a second
}


@pytest.mark.parametrize("kind", sorted(SLOW_LINKS))
async def test_slow_or_sliced_client_links_get_202s_and_every_acknowledged_event_lands(
        gateway: Process, toxiproxy: Toxiproxy, client_link: Proxy, http: aiohttp.ClientSession,
        unique: str, kind: str) -> None:
    stream, attributes = SLOW_LINKS[kind]
    rule = f"net-{kind}-{unique}"
    batches = [[f"{unique}-{b}-{i}" for i in range(60)] for b in range(4)]
    start = await end_offsets(KAFKA, "events")
    async with toxiproxy.toxic(client_link, kind, attributes, stream=stream):
        replies = await asyncio.gather(*(post(http, f"http://{client_link.address}/ingest/events",
                                              events_body(rule, keys)) for keys in batches))
    assert [r.status for r in replies] == [202] * 4, [r.body for r in replies]
    assert [r.body["ids"] for r in replies] == batches
    acknowledged = {key for keys in batches for key in keys}
    assert set(await event_ids(KAFKA, rule, start, acknowledged)) == acknowledged
    assert_no_crash(gateway)


async def _post_expecting_reset(http: aiohttp.ClientSession, url: str, body: dict[str, Any]) -> None:
    with pytest.raises((aiohttp.ClientConnectionError, aiohttp.ClientPayloadError)):
        reply = await post(http, url, body)
        print(f"answered through a reset link: {reply}")


async def test_reset_links_are_errors_the_client_sees_and_only_what_reached_the_gateway_lands(
        gateway: Process, toxiproxy: Toxiproxy, client_link: Proxy, unique: str) -> None:
    url = f"http://{client_link.address}/ingest/events"
    rule = f"net-reset-{unique}"
    start = await end_offsets(KAFKA, "events")
    never_arrived = [[f"{unique}-lost-{b}-{i}" for i in range(20)] for b in range(3)]
    answer_lost = [[f"{unique}-retried-{b}-{i}" for i in range(20)] for b in range(3)]
    async with aiohttp.ClientSession() as http:
        # The request is reset on its way in: the gateway never sees it.
        async with toxiproxy.toxic(client_link, "reset_peer", {"timeout": 0}, stream="upstream"):
            for keys in never_arrived:
                await _post_expecting_reset(http, url, events_body(rule, keys))
        # The answer is reset on its way out: the gateway accepted the events, the client cannot know.
        async with toxiproxy.toxic(client_link, "reset_peer", {"timeout": 0}, stream="downstream"):
            for keys in answer_lost:
                await _post_expecting_reset(http, url, events_body(rule, keys))
        # What a client does after a connection error: send the same events (same keys) again.
        for keys in answer_lost:
            reply = await post(http, url, events_body(rule, keys))
            assert reply.status == 202 and reply.body["ids"] == keys, reply.body
    acknowledged = {key for keys in answer_lost for key in keys}
    landed = await event_ids(KAFKA, rule, start, acknowledged)
    assert set(landed) == acknowledged, "exactly the events that reached the gateway are on the topic"
    # Each retried event is there once or twice, always under its own id: consumers count it once.
    assert set(Counter(landed).values()) <= {1, 2}
    assert_no_crash(gateway)


async def test_a_link_cut_mid_body_is_not_a_crash_and_publishes_nothing(
        gateway: Process, toxiproxy: Toxiproxy, client_link: Proxy, http: aiohttp.ClientSession,
        unique: str) -> None:
    rule = f"net-cut-{unique}"
    start = await end_offsets(KAFKA, "events")
    cut = [f"{unique}-cut-{i}" for i in range(60)]
    # The head and the first 2 KB pass, then the link closes: the gateway holds half a body.
    async with toxiproxy.toxic(client_link, "limit_data", {"bytes": 2048}, stream="upstream"):
        await _post_expecting_reset(http, f"http://{client_link.address}/ingest/events", events_body(rule, cut))
    marker = [f"{unique}-after-{i}" for i in range(5)]
    reply = await post(http, f"http://{client_link.address}/ingest/events", events_body(rule, marker))
    assert reply.status == 202, reply.body
    assert await event_ids(KAFKA, rule, start, set(marker)) == marker
    assert_no_crash(gateway)


# --- gateway -> Kafka ---------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Answer:
    at: float
    took: float
    status: int
    stored: str | None


async def _load(http: aiohttp.ClientSession, base: str, key: str, stop: asyncio.Event, acked: list[str],
                answers: list[Answer]) -> None:
    """One client per key: the next batch only after the previous one was answered, like a real producer."""
    n = 0
    while not stop.is_set():
        keys = [f"{key}-{n + i}" for i in range(5)]
        started = time.monotonic()
        reply = await post(http, f"{base}/ingest/events", events_body(key, keys))
        stored = reply.body.get("stored") if reply.status == 202 else None
        answers.append(Answer(time.monotonic(), time.monotonic() - started, reply.status, stored))
        if reply.status == 202:
            acked.extend(reply.body["ids"])
            n += 5
            continue
        assert reply.status == 503 and int(reply.headers["Retry-After"]) >= 1, (reply.status, reply.body)
        await asyncio.sleep(0.2)


KAFKA_FAULTS = [
    ("latency", {"latency": 4000}),  # every answer from Kafka later than the gateway's send timeout
    ("timeout", {"timeout": 0}),  # nothing comes back, the connections stay open
    ("reset_peer", {"timeout": 0}),  # every connection reset as soon as it carries data
]
SEND_TIMEOUT_S = 2.0


async def test_kafka_link_faults_answer_202_or_503_and_every_acknowledged_event_lands_in_order(
        private_service: Callable[..., Any], toxiproxy: Toxiproxy, spawn: Callable[..., Process],
        env_factory: Callable[..., dict[str, str]], http: aiohttp.ClientSession, unique: str) -> None:
    # The broker tells its clients to connect to the proxy, so no client bypasses the faults after metadata.
    link = await toxiproxy.create(f"gateway-kafka-{unique}", KAFKA_PROXY_PORT, f"127.0.0.1:{KAFKA_PORT}")
    private_service("kafka", KAFKA_PORT, KAFKA_ADVERTISED_PORT=str(KAFKA_PROXY_PORT))
    await ensure_topics(plaintext_kafka(link.address), topics.ALL)
    gateway = spawn(["gateway"], env_factory(PORT=str(KAFKA_GATEWAY_PORT), KAFKA_BOOTSTRAP_SERVERS=link.address,
                                             KAFKA_SEND_TIMEOUT_S=str(SEND_TIMEOUT_S),
                                             RATE_LIMIT_EVENTS_PER_MIN="1000000"))
    base = f"http://127.0.0.1:{KAFKA_GATEWAY_PORT}"
    await wait_http(f"{base}/health")
    keys = [f"kload-{unique}-{k}" for k in range(3)]
    acked: dict[str, list[str]] = {k: [] for k in keys}
    answers: list[Answer] = []
    stop = asyncio.Event()
    clients = [asyncio.create_task(_load(http, base, k, stop, acked[k], answers)) for k in keys]
    phases: dict[str, list[Answer]] = {}
    try:
        for kind, attributes in KAFKA_FAULTS:
            await _until(lambda: answers and answers[-1].stored == "kafka", clients, "answers from Kafka")
            async with toxiproxy.toxic(link, kind, attributes):
                started = time.monotonic()
                await _until(lambda: sum(a.at > started for a in answers) >= 5, clients, "answers")
                await asyncio.sleep(max(0.0, 6 - (time.monotonic() - started)))
            phases[kind] = [a for a in answers if a.at > started]
        # Once the link is well again the gateway answers from Kafka again (its spool replayed).
        await _until(lambda: [a.stored for a in answers[-6:]] == ["kafka"] * 6, clients, "answers from Kafka")
    finally:
        stop.set()
        results = await asyncio.gather(*clients, return_exceptions=True)
    try:
        assert not [r for r in results if isinstance(r, BaseException)], results
        for kind, during in phases.items():
            # Under each fault the answers came from the spool (or were refused), and none was slow.
            assert any(a.stored == "spool" or a.status == 503 for a in during), (kind, during)
            slowest = max(a.took for a in during)
            # At worst a send times out, then the producer that held it is closed (bounded at 5 s).
            assert slowest < SEND_TIMEOUT_S + 5 + 3, f"{kind}: an answer took {slowest:.1f}s"
        drained = await wait_drained(http, base, timeout=120)
        assert drained["failed"] == 0, drained
        for key in keys:
            landed = await event_ids(link.address, key, {}, set(acked[key]), timeout=120)
            first = list(dict.fromkeys(landed))
            missing = set(acked[key]) - set(first)
            assert not missing, f"{key}: {len(missing)} of {len(acked[key])} acknowledged events not on the topic"
            assert first == acked[key], f"{key}: the topic's order differs from the acknowledged order"
        print(f"{sum(map(len, acked.values()))} events acknowledged in {len(answers)} answers; per fault: "
              + ", ".join(f"{k} {Counter(a.stored or a.status for a in v)} slowest {max(a.took for a in v):.1f}s"
                          for k, v in phases.items()))
        assert_no_crash(gateway)
    except AssertionError:
        print(gateway.tail(80))
        raise


async def _until(check: Callable[[], Any], clients: list[asyncio.Task[None]], what: str) -> None:
    """Waits for check() while the clients run (bounded: a stalled gateway fails the test)."""
    deadline = time.monotonic() + 120
    while not check():
        failed = [c for c in clients if c.done()]
        if failed:
            await failed[0]  # raises the client's assertion
        assert time.monotonic() < deadline, f"{what} not reached within 120s"
        await asyncio.sleep(0.1)
