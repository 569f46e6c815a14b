"""Every Kafka client of ingestflow (the gateway's producers, the worker, `ingestflow topics` and `status`) over
SASL_SSL: SCRAM-SHA-512 on a TLS listener whose certificate a private CA signed (deploy/kafka.sh KAFKA_SASL=1
KAFKA_SSL=1), and over TLS with client certificates. A wrong password or a client without SASL or TLS is
refused, and that shows as a clean failure: the gateway spools and /health names Kafka down; a command prints
one line naming the cause, no traceback, no password."""
from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from ingestflow.app.core.settings import Settings

from ..conftest import ROOT
from .analytics_data import recent_day
from .conftest import PrivateService, eventually, wait_http
from .gateway_kit import get, post

SASL_SSL_KAFKA, GATEWAY, WORKER, REFUSED_GATEWAY = 18850, 18852, 18853, 18854  # Kafka: 18850-18851
MTLS_KAFKA = 18860  # 18860-18861
WRONG_PASSWORD = "wrong-password-7f3a9c1e5b"
DAY = recent_day(2)


@pytest.fixture(scope="module")
def secure_kafka(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrivateService]:
    """One SASL_SSL broker for the module's tests (each start is a JVM and a certificate authority)."""
    kafka = PrivateService("kafka", SASL_SSL_KAFKA, tmp_path_factory.mktemp("sasl-ssl") / "kafka",
                           {"KAFKA_SASL": "1", "KAFKA_SSL": "1"})
    try:
        kafka.start()
        yield kafka
    finally:
        kafka.stop()


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


async def ingestflow(env: dict[str, str], *args: str) -> tuple[int, str, str]:
    """`ingestflow <args>` in a shell with only these settings: (exit status, stdout, stderr)."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "ingestflow.app.cli", *args,
        env={**{k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG")}, **env},
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), 180)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


def own_lines(stderr: str) -> list[str]:
    """What the command itself printed on stderr: every line but the JSON records of the logs."""
    def is_log(line: str) -> bool:
        try:
            return "level" in json.loads(line)
        except ValueError:
            return False
    return [line for line in stderr.splitlines() if line.strip() and not is_log(line)]


def assert_one_clean_line(code: int, out: str, err: str, command: str, *secrets: str) -> str:
    assert code == 1, (code, out, err)
    lines = own_lines(err)
    assert len(lines) == 1 and lines[0].startswith(f"ingestflow {command}: Unavailable: "), err
    assert "Traceback" not in out + err
    for secret in secrets:
        assert secret not in out + err
    return lines[0]


def status_of(body: dict[str, Any], name: str) -> str:
    return str(next(d["status"] for d in body["dependencies"] if d["name"] == name))


async def test_gateway_worker_topics_and_status_work_over_sasl_ssl(
        secure_kafka: PrivateService, spawn: Callable[..., Any], env_factory: Callable[..., dict[str, str]],
        http: aiohttp.ClientSession, unique: str) -> None:
    client = secure_kafka.client_env()
    assert client["KAFKA_SECURITY_PROTOCOL"] == "SASL_SSL" and client["KAFKA_SASL_MECHANISM"] == "SCRAM-SHA-512"
    env = env_factory(**client, PORT=str(GATEWAY), WORKER_PORT=str(WORKER), WORKER_APP_ID=f"sasl-{unique}")
    code, out, err = await ingestflow(env, "topics")
    assert code == 0 and ("created topics: " in out or "all topics exist" in out), err
    worker = spawn(["worker"], env)
    gateway = spawn(["gateway"], env)
    await wait_http(f"http://127.0.0.1:{GATEWAY}/health")

    rule = f"rule-{unique}"
    accepted = await post(http, f"http://127.0.0.1:{GATEWAY}/ingest/events",
                          {"events": [{"type": "VIEW", "ruleId": rule, "ts": DAY.strftime("%Y-%m-%dT10:00:00Z")},
                                      {"type": "COPY", "ruleId": rule, "ts": DAY.strftime("%Y-%m-%dT11:00:00Z")}]})
    assert (accepted.status, accepted.body["stored"]) == (202, "kafka"), (accepted, gateway.tail())
    span = [(DAY + timedelta(days=d)).date().isoformat() for d in (-10, 1)]

    async def counted() -> bool:
        reply = await get(http, f"http://127.0.0.1:{GATEWAY}/metrics/rules/{rule}?from={span[0]}&to={span[1]}")
        assert reply.status == 200 and reply.body["totals"]["views"] == 1 and reply.body["totals"]["copies"] == 1, \
            reply
        return True
    try:
        await eventually(counted, timeout=240, what="the event counted by the worker")
    except AssertionError:
        print(worker.tail(), gateway.tail())
        raise

    code, out, err = await ingestflow(env, "status", "--json", "--no-gateway")
    body = json.loads(out.strip().splitlines()[-1])
    assert status_of(body, "kafka") == "up", (out, err)
    assert len(body["members"]) == 1 and body["members"][0]["clientId"].startswith(f"{env['WORKER_APP_ID']}@"), body
    assert sum(p["end"] for p in body["partitions"] if p["topic"] == "events") == 2, body["partitions"]
    assert client["KAFKA_SASL_PASSWORD"] not in worker.log.read_text() + gateway.log.read_text() + out + err


async def test_wrong_password_spools_at_the_gateway_and_fails_commands_in_one_line(
        secure_kafka: PrivateService, spawn: Callable[..., Any], env_factory: Callable[..., dict[str, str]],
        http: aiohttp.ClientSession) -> None:
    env = env_factory(**{**secure_kafka.client_env(), "KAFKA_SASL_PASSWORD": WRONG_PASSWORD},
                      PORT=str(REFUSED_GATEWAY), KAFKA_SEND_TIMEOUT_S="3")
    gateway = spawn(["gateway"], env)
    await wait_http(f"http://127.0.0.1:{REFUSED_GATEWAY}/health")
    accepted = await post(http, f"http://127.0.0.1:{REFUSED_GATEWAY}/ingest/events",
                          {"events": [{"type": "VIEW", "ruleId": "refused", "ts": DAY.strftime("%Y-%m-%dT10:00:00Z")}]})
    assert accepted.status == 202 and accepted.body["stored"] == "spool", accepted
    health = await get(http, f"http://127.0.0.1:{REFUSED_GATEWAY}/health")
    assert health.body["ready"] is True and status_of(health.body, "kafka") == "down", health

    line = assert_one_clean_line(*await ingestflow(env, "topics"), "topics", WRONG_PASSWORD)
    assert "refused the SCRAM-SHA-512 credentials of user 'ingestflow'" in line, line
    code, out, err = await ingestflow(env, "status", "--json", "--no-gateway")
    assert code == 1 and status_of(json.loads(out.strip().splitlines()[-1]), "kafka") == "down", (out, err)
    assert WRONG_PASSWORD not in out + err + gateway.log.read_text()


@pytest.mark.parametrize("protocol", ["PLAINTEXT", "SASL_PLAINTEXT"])
async def test_clients_without_tls_are_refused(secure_kafka: PrivateService, protocol: str,
                                               env_factory: Callable[..., dict[str, str]]) -> None:
    client = secure_kafka.client_env()
    security = {k: v for k, v in client.items() if k.startswith("KAFKA_SASL_")} if protocol == "SASL_PLAINTEXT" else {}
    env = env_factory(**security, KAFKA_BOOTSTRAP_SERVERS=client["KAFKA_BOOTSTRAP_SERVERS"],
                      KAFKA_SECURITY_PROTOCOL=protocol)
    line = assert_one_clean_line(*await ingestflow(env, "topics"), "topics", client["KAFKA_SASL_PASSWORD"])
    assert f"closed the connection (KAFKA_SECURITY_PROTOCOL={protocol}: does its listener expect TLS" in line, line


async def test_a_tls_client_of_a_plaintext_listener_is_told_so(secure_kafka: PrivateService,
                                                              env_factory: Callable[..., dict[str, str]]) -> None:
    env = env_factory(KAFKA_SECURITY_PROTOCOL="SSL", KAFKA_SSL_CAFILE=secure_kafka.client_env()["KAFKA_SSL_CAFILE"])
    line = assert_one_clean_line(*await ingestflow(env, "topics"), "topics")  # the shared PLAINTEXT broker
    assert "dropped the TLS handshake (KAFKA_SECURITY_PROTOCOL=SSL: does its listener speak TLS?)" in line, line


async def test_client_certificates_are_shown_to_a_broker_that_requires_them(
        private_service: Callable[..., PrivateService], env_factory: Callable[..., dict[str, str]]) -> None:
    kafka = private_service("kafka", MTLS_KAFKA, KAFKA_SSL="1", KAFKA_SSL_CLIENT_AUTH="required")
    client = kafka.client_env()
    assert client["KAFKA_SECURITY_PROTOCOL"] == "SSL" and Path(client["KAFKA_SSL_CERTFILE"]).is_file()
    code, out, err = await ingestflow(env_factory(**client), "topics")
    assert code == 0 and "created topics: " in out, err
    anonymous = {k: v for k, v in client.items() if k not in ("KAFKA_SSL_CERTFILE", "KAFKA_SSL_KEYFILE")}
    line = assert_one_clean_line(*await ingestflow(env_factory(**anonymous), "topics"), "topics")
    assert "does its listener expect SASL or a client certificate (KAFKA_SSL_CERTFILE)?" in line, line



def test_first_run_env_holds_the_client_settings_of_a_secure_local_broker(tmp_path: Path) -> None:
    kafka = {"KAFKA_PORT": "18862", "KAFKA_DATA_DIR": str(tmp_path / "kafka"), "KAFKA_SASL": "1", "KAFKA_SSL": "1"}
    made = subprocess.run([str(ROOT / "deploy" / "env.sh"), str(tmp_path / ".env")], capture_output=True, text=True,
                          check=True, env={**os.environ, **kafka})
    settings = Settings.from_env({}, env_file=tmp_path / ".env")
    expected = PrivateService("kafka", 18862, tmp_path / "kafka", kafka).client_env()
    assert (settings.kafka.bootstrap, settings.kafka.security_protocol, settings.kafka.sasl_username) == \
        (expected["KAFKA_BOOTSTRAP_SERVERS"], "SASL_SSL", "ingestflow")
    assert settings.kafka.sasl_password is not None
    assert settings.kafka.sasl_password.get() == expected["KAFKA_SASL_PASSWORD"] not in made.stdout
    assert settings.kafka.ssl_cafile == Path(expected["KAFKA_SSL_CAFILE"]) and settings.kafka.ssl_cafile.is_file()
