"""No input makes the gateway answer 5xx: schemathesis, driven by the gateway's own /openapi.json, fuzzes every
operation of a running gateway process (valid, boundary and invalid bodies, query strings, headers, path
parameters), and hypothesis strategies of our own aim where parsers break: Unicode digits where integers are
expected, extreme and malformed dates, NUL characters, JSON nested past any limit, signed Stripe events,
the cron-secret endpoints schemathesis cannot reach.

The gateways talk to a private Kafka so the fuzzers' valid-but-odd input goes through the real producer
path without reaching the topics other tests' workers consume.
"""
from __future__ import annotations

import asyncio
import json
import shutil
import re
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import aiohttp
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ingestflow.app.clients.kafka import ensure_topics
from ingestflow.app.core import serde
from ingestflow.app.gateway.stripe_signature import sign
from ingestflow.schemas import topics

from ..conftest import BASE_ENV
from .conftest import eventually, wait_http

PORT = 18120


def only_cpython_ast_errors(summary: str) -> bool:
    """True when every generated case passed and the run's only errors are schemathesis' own validator
    hitting CPython 3.11's "AST constructor recursion depth mismatch" SystemError on a deeply nested
    generated value: an error inside schemathesis, not an answer of the gateway."""
    counts = re.search(r"(\d+) generated, (\d+) passed", summary)
    error_kinds = re.findall(r"🚫 ([^:\n]+):", summary)
    return (counts is not None and counts.group(1) == counts.group(2) and error_kinds == ["Runtime Error"]
            and "AST constructor recursion depth mismatch" in summary)


async def test_fuzzed_requests_from_the_openapi_document_never_get_a_5xx(
        private_service: Callable[..., Any], spawn: Callable[..., Any], env_factory: Callable[..., dict[str, str]],
        tmp_path: Path) -> None:
    kafka = private_service("kafka", 19120)
    await ensure_topics(kafka.connection, topics.ALL)
    env = env_factory(PORT=str(PORT), KAFKA_BOOTSTRAP_SERVERS=kafka.address, RATE_LIMIT_EVENTS_PER_MIN="1000000",
                      RATE_LIMIT_CRAWL_PER_MIN="1000000")
    gateway = spawn(["gateway"], env)
    base = f"http://127.0.0.1:{PORT}"
    await wait_http(f"{base}/health")
    async with aiohttp.ClientSession() as http, http.get(f"{base}/openapi.json") as resp:
        operations = sum(len(ops) for ops in (await resp.json())["paths"].values())
    assert operations >= 9  # at least this issue's own endpoints; others' are fuzzed too when registered

    cli = shutil.which("schemathesis", path=str(Path(sys.executable).parent)) or "schemathesis"
    result = subprocess.run(
        [cli, "run", f"{base}/openapi.json", "--checks", "not_a_server_error", "--max-examples", "40",
         "--generation-allow-x00", "true",
         "--header", f"x-app-token: {BASE_ENV['INGEST_APP_TOKEN']}", "--seed", "20261123",
         "--suppress-health-check", "all", "--generation-database", "none", "--no-color", "--workers", "2",
         "--request-timeout", "20"],
        capture_output=True, text=True, timeout=300, cwd=tmp_path)
    summary = result.stdout[-4000:]
    assert result.returncode == 0 or only_cpython_ast_errors(summary), summary + gateway.tail()
    assert "generated" in summary and " 0 generated" not in summary
    assert gateway.proc.poll() is None, "the gateway process died under fuzzing"
    print(summary[-600:])


# --- Inputs that answered 500, and a malformed setting --------------------------------------------------------

EXPLICIT_PORT = 18553


CASES = [
    ("GET", "/trending/rules?limit=%C2%B2", None, "limit"),  # "²": str.isdigit() is true, int() fails
    ("GET", "/search?q=x&limit=%C2%B2", None, "limit"),
    ("GET", "/metrics/rules/x?to=0001-01-01", None, "to"),  # the default `from` would be before year 1
    ("GET", "/leaderboards/monthly?date=0001-01-05", None, "date"),  # the month before it, likewise
    ("GET", "/metrics/authors/a%00b", None, "author_id"),  # NUL reaches PostgreSQL text
    ("GET", "/search?q=a%00", None, "q"),
    ("GET", "/leaderboards/daily?limit=%D9%A3", None, "limit"),  # "٣": int() reads it as 3
    ("POST", "/ingest/records", {"user_id": "\u00b2", "records": [{"wuid": "w", "cleaned": {}}]}, "user_id"),
    ("POST", "/ingest/events", {"events": [{"type": "VIEW", "ruleId": "r\u0000"}]}, "events[0].ruleId"),
    ("POST", "/ingest/crawl", {"sourceId": "s", "items": [{"externalId": "x", "url": "https://e.org", "title": "t",
                                                           "raw": {"k": "\u0000"}}]}, "items[0].raw"),
]


async def test_inputs_that_answered_500_now_answer_400_naming_the_field(
        spawn: Callable[..., Any], env_factory: Callable[..., dict[str, str]]) -> None:
    # Rate limits count per client address in the shared Redis, where the other tests spend 127.0.0.1's too.
    gateway = spawn(["gateway"], env_factory(PORT=str(EXPLICIT_PORT), RATE_LIMIT_EVENTS_PER_MIN="1000000",
                                             RATE_LIMIT_CRAWL_PER_MIN="1000000"))
    base = f"http://127.0.0.1:{EXPLICIT_PORT}"
    await wait_http(f"{base}/health")
    wrong: dict[str, Any] = {}
    async with aiohttp.ClientSession() as http:
        for method, path, body, field in CASES:
            async with http.request(method, f"{base}{path}", data=None if body is None else serde.dumps(body),
                                    headers={"x-app-token": BASE_ENV["INGEST_APP_TOKEN"],
                                             "content-type": "application/json"}) as resp:
                answer = await resp.json()
            if not (resp.status == 400 and answer.get("field") == field and answer.get("reason")):
                wrong[f"{method} {path}"] = (resp.status, answer)
    assert not wrong, f"{wrong}\n{gateway.tail()}"


async def test_a_malformed_trusted_proxies_stops_the_gateway_at_start_naming_it(
        spawn: Callable[..., Any], env_factory: Callable[..., dict[str, str]]) -> None:
    gateway = spawn(["gateway"], env_factory(PORT=str(EXPLICIT_PORT), TRUSTED_PROXIES="10.0.0.0/8, proxy.lan"))
    assert gateway.proc is not None
    await eventually(lambda: gateway.proc.poll() is not None, 60, what="the gateway exiting")
    assert gateway.proc.returncode == 2
    assert "TRUSTED_PROXIES: entries must be IP addresses or CIDR networks, got 'proxy.lan'" in gateway.tail()


# --- Hypothesis strategies of our own ---------------------------------------------------------------------------

HYPOTHESIS_PORT, HYPOTHESIS_KAFKA = 18554, 18560
UNICODE_DIGITS = st.characters(categories=("Nd", "No", "Nl"))
NUMBERISH = st.one_of(
    st.text(UNICODE_DIGITS, min_size=1, max_size=4), st.integers(-10**20, 10**20).map(str),
    st.sampled_from(["\u00b2", "\u0663", "\uff11\uff12", "1e3", " 1", "0x10", "1_0", "\u0000", "10\u0000", "-0", ""]))
DATEISH = st.one_of(
    st.dates().map(lambda d: d.isoformat()),
    st.tuples(st.datetimes(), st.sampled_from(["", "Z", "+14:00", "-12:00"])).map(lambda t: t[0].isoformat() + t[1]),
    st.sampled_from(["0001-01-01", "0001-01-05", "9999-12-31", "1969-12-31", "2026-02-30", "20261118", "2026-W47-1",
                     "2026-11-18\u0000", "\u0662\u0660\u0662\u0666-11-18", "0001-01-01T00:00:00+14:00"]),
    st.text(max_size=12))
TEXT = st.one_of(st.text(max_size=30), st.text(max_size=10).map(lambda t: f"{t}\u0000{t}"),
                 st.sampled_from(["\u0000", " ", "\u00b2", "a" * 300]))
SCALAR = st.one_of(st.none(), st.booleans(), st.integers(-2**70, 2**70), st.floats(allow_nan=False, allow_infinity=False),
                   TEXT)
JSON_TREE = st.recursive(SCALAR, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(TEXT, inner, max_size=3),
                         max_leaves=12)
DEEP = "__deep__"  # a placeholder replaced by JSON nested `depth` levels (orjson itself refuses to write it)


def _get(path: str, **query: st.SearchStrategy[str]) -> st.SearchStrategy[tuple[str, str, Any, int]]:
    params = st.fixed_dictionaries({}, optional=query)
    return st.tuples(st.just("GET"), st.tuples(st.just(path), params).map(
        lambda pq: pq[0] + ("?" + urllib.parse.urlencode(pq[1]) if pq[1] else "")), st.none(), st.just(0))


def _path(template: str, value: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    return value.map(lambda v: template.format(urllib.parse.quote(v, safe="")))


def _post(path: str, body: st.SearchStrategy[Any]) -> st.SearchStrategy[tuple[str, str, Any, int]]:
    return st.tuples(st.just("POST"), st.just(path), body, st.integers(0, 300))


REQUESTS = st.one_of(
    st.tuples(st.just("GET"), st.tuples(_path("/metrics/rules/{}", TEXT), DATEISH, DATEISH, NUMBERISH).map(
        lambda t: f"{t[0]}?" + urllib.parse.urlencode({"from": t[1], "to": t[2], "limit": t[3]})), st.none(), st.just(0)),
    st.tuples(st.just("GET"), st.tuples(_path("/metrics/authors/{}", TEXT), DATEISH, DATEISH).map(
        lambda t: f"{t[0]}?" + urllib.parse.urlencode({"from": t[1], "to": t[2]})), st.none(), st.just(0)),
    *(_get(f"/leaderboards/{period}", date=DATEISH, limit=NUMBERISH, scope=TEXT)
      for period in ("daily", "weekly", "monthly", "all-time")),
    _get("/trending/rules", limit=NUMBERISH), _get("/search", q=TEXT, limit=NUMBERISH),
    _get("/transfer/logs", user_id=NUMBERISH, status=TEXT, limit=NUMBERISH),
    st.tuples(st.just("GET"), _path("/lighthouse/{}/info", TEXT), st.none(), st.just(0)),
    st.tuples(st.just("POST"), _path("/buffer/process/{}", NUMBERISH), st.none(), st.just(0)),
    st.tuples(st.just("PUT"), st.just("/cron/schedule"), st.fixed_dictionaries({"schedule": TEXT}), st.just(0)),
    st.tuples(st.just("POST"), st.just("/cron/rollup"),  # only dates a rollup must refuse: no rollup runs
              st.fixed_dictionaries({"date": st.sampled_from(["0001-01-01", "0001-01-05", "1969-12-31", "\u00b2"]),
                                     "daysToProcess": st.integers(1, 30)}), st.just(0)),
    _post("/ingest/events", st.fixed_dictionaries({"events": st.lists(st.fixed_dictionaries(
        {"type": st.sampled_from(["VIEW", "COPY", "LIKE"]), "ruleId": TEXT},
        optional={"authorId": TEXT, "userId": TEXT, "ts": DATEISH, "idempotencyKey": TEXT, "id": TEXT}),
        min_size=1, max_size=3)}, optional={"bufferMs": NUMBERISH})),
    _post("/ingest/crawl", st.fixed_dictionaries({"sourceId": TEXT, "items": st.lists(st.fixed_dictionaries(
        {"externalId": TEXT, "url": TEXT.map(lambda t: "https://e.org/" + t), "title": TEXT},
        optional={"summary": TEXT, "raw": st.one_of(JSON_TREE, st.just(DEEP))}), min_size=1, max_size=3)})),
    _post("/ingest/records", st.fixed_dictionaries({"user_id": st.one_of(NUMBERISH, st.integers(-2**70, 2**70)),
                                                    "records": st.lists(st.fixed_dictionaries(
        {"wuid": TEXT, "cleaned": st.one_of(st.dictionaries(TEXT, JSON_TREE, max_size=3), st.just(DEEP))},
        optional={"context": TEXT}), min_size=1, max_size=3)})),
    _post("/ingest/stripe/webhook", st.fixed_dictionaries({
        "id": TEXT, "type": st.sampled_from(["payment_intent.succeeded", "charge.refunded", "x"]),
        "created": st.one_of(st.integers(-2**70, 2**70), NUMBERISH),
        "data": st.fixed_dictionaries({"object": st.fixed_dictionaries({}, optional={
            "id": TEXT, "amount_received": st.integers(-2**70, 2**70), "amount_total": SCALAR,
            "payment_intent": TEXT, "metadata": st.one_of(JSON_TREE, st.fixed_dictionaries({"authorId": TEXT}),
                                                          st.just(DEEP))})})})),
)


def _encode(body: Any, depth: int) -> bytes:
    """The body as JSON, its DEEP placeholder (if any) replaced by an object nested `depth` levels. The standard
    library writes what a client may send and orjson refuses to write (integers past 64 bits)."""
    text = json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode("utf-8", "surrogatepass")
    return text.replace(f'"{DEEP}"'.encode(), b'{"a":' * depth + b"1" + b"}" * depth)


def test_query_strings_unicode_digits_extreme_dates_and_nul_never_get_a_5xx(
        private_service: Callable[..., Any], spawn: Callable[..., Any],
        env_factory: Callable[..., dict[str, str]], unique: str) -> None:
    kafka = private_service("kafka", HYPOTHESIS_KAFKA)
    asyncio.run(ensure_topics(kafka.connection, topics.ALL))
    env = env_factory(PORT=str(HYPOTHESIS_PORT), KAFKA_BOOTSTRAP_SERVERS=kafka.address, WORKER_APP_ID=f"fuzz-{unique}",
                      RATE_LIMIT_EVENTS_PER_MIN="1000000", RATE_LIMIT_CRAWL_PER_MIN="1000000")
    gateway = spawn(["gateway"], env)
    base = f"http://127.0.0.1:{HYPOTHESIS_PORT}"
    asyncio.run(wait_http(f"{base}/health"))
    statuses: dict[int, int] = {}

    @settings(max_examples=600, deadline=None, derandomize=True, database=None,
              suppress_health_check=list(HealthCheck))
    @given(request=REQUESTS)
    def no_5xx(request: tuple[str, str, Any, int]) -> None:
        method, path, body, depth = request
        data = None if body is None else _encode(body, depth)
        headers = {"x-app-token": env["INGEST_APP_TOKEN"], "x-cron-secret": env["CRON_SECRET"],
                   "content-type": "application/json"}
        if path == "/ingest/stripe/webhook" and data is not None:
            now = int(time.time())
            headers["Stripe-Signature"] = f"t={now},v1={sign(data, env['STRIPE_WEBHOOK_SECRET'], now)}"
        try:
            with urllib.request.urlopen(urllib.request.Request(f"{base}{path}", data=data, method=method,
                                                               headers=headers), timeout=60) as resp:
                status = resp.status
        except urllib.error.HTTPError as err:
            status = err.code
        statuses[status] = statuses.get(status, 0) + 1
        assert status < 500, f"{method} {path} {data[:300] if data else ''!r} answered {status}"
        if path.startswith("/cron/rollup"):
            assert status == 400, f"a rollup for {body} was not refused"

    try:
        no_5xx()
    finally:
        print(f"statuses: {dict(sorted(statuses.items()))}", datetime.now())
    assert gateway.alive(), "the gateway process died under fuzzing"
    assert statuses.get(202, 0) + statuses.get(200, 0) > 20 and statuses.get(400, 0) > 100, statuses
