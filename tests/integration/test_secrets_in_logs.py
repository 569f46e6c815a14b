"""Secrets never appear in logs or responses: a gateway and a worker run at DEBUG through authenticated,
refused and failing requests, then their logs and every response body are searched for each secret."""
from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import aiohttp

from ingestflow.app.core import serde
from ingestflow.app.gateway.stripe_signature import sign

from .conftest import start_group_at_end, wait_http

SECRETS = ("INGEST_APP_TOKEN", "CRON_SECRET", "STRIPE_WEBHOOK_SECRET", "LIGHTHOUSE_PRIVATE_KEY")


async def test_no_secret_in_logs_or_responses(
        spawn: Callable[..., Any], env_factory: Callable[..., dict[str, str]], unique: str) -> None:
    env = env_factory(PORT="18471", WORKER_PORT="16471", WORKER_APP_ID=f"secrets-{unique}", LOG_LEVEL="DEBUG",
                      BUFFER_SIZE="1")
    await start_group_at_end(env["WORKER_APP_ID"])
    worker = spawn(["worker"], env)
    gateway = spawn(["gateway"], env)
    base = "http://127.0.0.1:18471"
    await wait_http(f"{base}/health")
    token, cron = env["INGEST_APP_TOKEN"], env["CRON_SECRET"]
    bodies: list[str] = []
    event = serde.dumps({"id": f"evt_{unique}", "type": "charge.refunded", "created": int(time.time()),
                         "data": {"object": {"id": f"ch_{unique}", "amount": 100, "currency": "usd"}}})
    ts = int(time.time())
    calls: list[tuple[str, str, dict[str, str], Any]] = [
        ("POST", "/ingest/events", {"x-app-token": token},
         {"events": [{"type": "VIEW", "ruleId": f"s-{unique}"}]}),
        ("POST", "/ingest/events", {"x-app-token": token[:-1] + "X"}, {"events": []}),  # almost the token
        ("POST", "/ingest/events", {"x-app-token": token}, {"events": [{"type": "NOPE", "ruleId": token}]}),
        ("POST", "/ingest/records", {"x-app-token": token},
         {"user_id": int(unique[:6], 16), "records": [{"wuid": "w1", "cleaned": {"k": 1}, "context": "c"}]}),
        ("POST", "/cron/trigger", {"x-cron-secret": cron}, None),
        ("POST", "/cron/trigger", {"x-cron-secret": cron + "x"}, None),
        ("GET", "/transfer/logs", {"x-cron-secret": cron}, None),
    ]
    async with aiohttp.ClientSession() as http:
        for method, path, headers, body in calls:
            async with http.request(method, base + path, json=body, headers=headers) as r:
                bodies.append(await r.text())
                assert r.status < 500, (path, bodies[-1])
        for signature in (sign(event, env["STRIPE_WEBHOOK_SECRET"], ts), "0" * 64):
            async with http.post(f"{base}/ingest/stripe/webhook", data=event,
                                 headers={"Stripe-Signature": f"t={ts},v1={signature}",
                                          "Content-Type": "application/json"}) as r:
                bodies.append(await r.text())
    time.sleep(3)  # let the worker handle the records and the webhook, logging at DEBUG
    gateway.stop()
    worker.stop()
    logs = gateway.log.read_text(errors="replace") + worker.log.read_text(errors="replace")
    assert "DEBUG" in logs and len(logs.splitlines()) > 20, "the processes logged at DEBUG"
    for name in SECRETS:
        value = env[name]
        assert value not in logs, f"{name} appears in a log"
        assert all(value not in b for b in bodies), f"{name} appears in a response"
        assert value[4:-4] not in logs, f"part of {name} appears in a log"
