"""Integration fixtures: the real services (started by deploy/services.sh when stopped), a migrated test
database, and helpers to run gateway and worker processes the way an operator would."""
from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.structs import OffsetAndMetadata

from ingestflow.app.clients.db import migrate
from ingestflow.app.clients.kafka import ensure_topics
from ingestflow.app.core.settings import KafkaConnection, Settings
from ingestflow.app.ops.progress import Progress
from ingestflow.schemas import topics

from ..conftest import BASE_ENV, ROOT, TOXIPROXY_PORT, plaintext_kafka, service_url
from .toxiproxy import Toxiproxy

DSN = BASE_ENV["DATABASE_URL"]


@pytest.fixture(scope="session")
def services() -> None:
    subprocess.run([str(ROOT / "deploy" / "services.sh"), "start"], check=True)
    asyncio.run(migrate(DSN))
    asyncio.run(ensure_topics(plaintext_kafka(BASE_ENV["KAFKA_BOOTSTRAP_SERVERS"]), topics.ALL))


@pytest.fixture(scope="session")
def toxiproxy_server() -> str:
    """Toxiproxy's API address, the server started (built first if needed) when it is not answering. Like the
    other services it stays up for later runs; deploy/toxiproxy.sh stop (with TOXIPROXY_PORT) stops it."""
    subprocess.run([str(ROOT / "deploy" / "toxiproxy.sh"), "start"], check=True,
                   env={**os.environ, "TOXIPROXY_PORT": TOXIPROXY_PORT})
    return f"http://127.0.0.1:{TOXIPROXY_PORT}"


@pytest.fixture
async def toxiproxy(toxiproxy_server: str) -> AsyncIterator[Toxiproxy]:
    """A Toxiproxy client whose proxies (and their toxics) are deleted after the test."""
    client = Toxiproxy(toxiproxy_server)
    try:
        yield client
    finally:
        await client.close()


async def delete_topics(prefixes: set[str]) -> list[str]:
    """Delete the shared broker's topics whose names start with one of `prefixes`; return their names."""
    admin = AIOKafkaAdminClient(bootstrap_servers=BASE_ENV["KAFKA_BOOTSTRAP_SERVERS"])
    await admin.start()
    try:
        names = [t for t in await admin.list_topics() if t.startswith(tuple(prefixes))]
        if names:
            await admin.delete_topics(names)
        return names
    finally:
        await admin.close()


@pytest.fixture
async def own_database(services: None, unique: str) -> AsyncIterator[str]:
    """A fresh, migrated database for a test whose answers are global (an all-time leaderboard ranks every
    rule in the database), so they do not depend on what earlier tests and runs left in the shared one."""
    name = f"ingestflow_t_{unique}"
    admin = await asyncpg.connect(DSN)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
        dsn = DSN.rsplit("/", 1)[0] + "/" + name
        await migrate(dsn)
        yield dsn
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


@pytest.fixture
async def pg(services: None) -> AsyncIterator[asyncpg.Connection]:
    conn = await asyncpg.connect(DSN)
    yield conn
    await conn.close()


@pytest.fixture
def unique() -> str:
    return uuid.uuid4().hex[:10]


class Process:
    """An ingestflow command (or another module run with -m) in its own process, logging to a file the test
    prints on failure."""

    def __init__(self, args: list[str], env: dict[str, str], log: Path, module: str = "ingestflow.app.cli") -> None:
        self.args, self.env, self.log, self.module = args, env, log, module
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> Process:
        out = open(self.log, "ab")
        full_env = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG", "PYTHONPATH")}
        full_env.update(self.env)
        self.proc = subprocess.Popen([sys.executable, "-m", self.module, *self.args], env=full_env,
                                     stdout=out, stderr=subprocess.STDOUT, cwd=self.log.parent)
        return self

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill(self) -> None:
        if self.alive():
            self.proc.kill()
            self.proc.wait(10)

    def stop(self) -> None:
        if self.alive():
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.kill()

    def tail(self, lines: int = 40) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])


@pytest.fixture
def spawn(tmp_path: Path, services: None) -> Iterator[Callable[..., Process]]:
    started: list[Process] = []

    def make(args: list[str], env: dict[str, str], name: str | None = None,
             module: str = "ingestflow.app.cli") -> Process:
        proc = Process(args, env, tmp_path / f"{name or args[0]}-{len(started)}.log", module).start()
        started.append(proc)
        return proc

    yield make
    for proc in reversed(started):
        proc.stop()
    # Every test runs its workers under a new app id, so without this the shared broker gains a few dozen
    # partitions (table changelogs) per test and, after an unclean stop, spends minutes recovering them
    # before it serves again.
    app_topics = {f'{p.env["WORKER_APP_ID"]}-' for p in started if "WORKER_APP_ID" in p.env
                  and p.env["KAFKA_BOOTSTRAP_SERVERS"] == BASE_ENV["KAFKA_BOOTSTRAP_SERVERS"]}
    if app_topics:
        asyncio.run(delete_topics(app_topics))


async def eventually(check: Callable[[], Any], timeout: float = 60.0, interval: float = 0.5,
                     what: str = "condition") -> Any:
    """Polls until check() returns a truthy value (awaiting it when it is a coroutine). A check may also
    assert: its last AssertionError is what the timeout reports, so a failure shows the difference."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = check()
            if asyncio.iscoroutine(last):
                last = await last
        except AssertionError as exc:
            last = exc
        else:
            if last:
                return last
        await asyncio.sleep(interval)
    if isinstance(last, AssertionError):
        raise AssertionError(f"{what} not reached within {timeout}s; last failure:\n{last}") from last
    raise AssertionError(f"{what} not reached within {timeout}s; last value: {last!r}")


async def wait_http(url: str, timeout: float = 60.0) -> None:
    import aiohttp

    async def up() -> bool:
        try:
            async with aiohttp.ClientSession() as s, s.get(url, timeout=aiohttp.ClientTimeout(total=2)) as r:
                return r.status < 500
        except (aiohttp.ClientError, asyncio.TimeoutError):
            return False
    await eventually(up, timeout, what=f"{url} answering")


class PrivateService:
    """A private instance of one service on its own ports and data directory, for tests that stop, kill or
    restart it: the shared instances other tests use are never disturbed."""

    PORT_VARS = {"kafka": ("KAFKA_PORT", "KAFKA_DATA_DIR"), "postgres": ("PG_PORT", "PG_DATA_DIR"),
                 "redis": ("REDIS_PORT", "REDIS_DATA_DIR")}

    def __init__(self, name: str, port: int, data_dir: Path, extra_env: dict[str, str] | None = None) -> None:
        self.name, self.port, self.data_dir = name, port, data_dir
        port_var, dir_var = self.PORT_VARS[name]
        self.env = {port_var: str(port), dir_var: str(data_dir), **(extra_env or {})}
        if name == "kafka":
            self.env["KAFKA_CONTROLLER_PORT"] = str(port + 1)

    def _run(self, action: str) -> None:
        subprocess.run([str(ROOT / "deploy" / f"{self.name}.sh"), action], check=True,
                       env={**os.environ, **self.env})

    def start(self) -> None:
        self._run("start")

    def stop(self) -> None:
        self._run("stop")

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def url(self, database: str = "") -> str:
        """The client URL with this instance's own password (PostgreSQL: the ingestflow role's)."""
        return service_url(self.name, database, env=self.env)

    @property
    def password_file(self) -> Path:
        return self.data_dir.with_name(self.data_dir.name + ".password")

    def client_env(self) -> dict[str, str]:
        """Kafka: the settings ingestflow needs for this broker (`deploy/kafka.sh client-env`): its address and,
        as started, the security protocol, the SASL user and password, the CA and client certificate files."""
        out = subprocess.run([str(ROOT / "deploy" / "kafka.sh"), "client-env"], check=True, capture_output=True,
                             text=True, env={**os.environ, **self.env}).stdout
        return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)

    @property
    def connection(self) -> KafkaConnection:
        """Kafka: the KafkaConnection of a test's own clients, read from client_env() as ingestflow reads it."""
        return Settings.from_env({**BASE_ENV, **self.client_env()}).kafka


@pytest.fixture
def private_service(tmp_path: Path) -> Iterator[Callable[..., PrivateService]]:
    """private_service("kafka", 19092) -> a started PrivateService, stopped after the test. Keyword arguments
    are more variables for its deploy script (e.g. KAFKA_ADVERTISED_PORT)."""
    made: list[PrivateService] = []

    def make(name: str, port: int, **extra_env: str) -> PrivateService:
        # PostgreSQL run by root belongs to the postgres user, who cannot enter pytest's tmp under /root.
        base = Path("/var/lib/ingestflow") if (name == "postgres" and os.geteuid() == 0) else tmp_path
        svc = PrivateService(name, port, base / f"{name}-{port}-{uuid.uuid4().hex[:6]}", extra_env)
        made.append(svc)  # cleaned up even when its start fails
        svc.start()
        return svc

    yield make
    for svc in reversed(made):
        try:
            svc.stop()
        finally:
            if svc.data_dir.exists() and str(svc.data_dir).startswith("/var/lib/ingestflow/"):
                subprocess.run(["rm", "-rf", str(svc.data_dir), str(svc.password_file)], check=False)


class Prometheus:
    """deploy/prometheus.sh (Debian's Prometheus, with the alerting rules) on its own port and data
    directory, scraping the given local ports every second."""

    def __init__(self, port: int, targets: list[int], data_dir: Path) -> None:
        self.url = f"http://127.0.0.1:{port}"
        self.env = {**os.environ, "PROMETHEUS_PORT": str(port), "PROMETHEUS_SCRAPE_INTERVAL": "1s",
                    "PROMETHEUS_TARGETS": ",".join(f"127.0.0.1:{t}" for t in targets),
                    "PROMETHEUS_DATA_DIR": str(data_dir)}

    def _run(self, action: str) -> None:
        subprocess.run([str(ROOT / "deploy" / "prometheus.sh"), action], check=action == "start", env=self.env)

    async def get(self, path: str, **params: str) -> Any:
        import aiohttp
        async with aiohttp.ClientSession() as http, http.get(self.url + path, params=params) as r:
            body = await r.json()
        assert body["status"] == "success", (path, params, body)
        return body["data"]

    async def query(self, expr: str) -> list[dict[str, Any]]:
        """The instant vector of `expr` now, as [{"metric": labels, "value": [time, text]}]."""
        data = await self.get("/api/v1/query", query=expr)
        return list(data["result"])


@pytest.fixture
def prometheus(tmp_path: Path) -> Iterator[Callable[[int, list[int]], Prometheus]]:
    """prometheus(port, [scraped ports]) -> a started Prometheus, stopped after the test."""
    made: list[Prometheus] = []

    def make(port: int, targets: list[int]) -> Prometheus:
        server = Prometheus(port, targets, tmp_path / f"prometheus-{port}")
        server._run("start")
        made.append(server)
        return server

    yield make
    for server in made:
        server._run("stop")


async def _end_offsets(consumer: AIOKafkaConsumer, names: tuple[str, ...]) -> dict[TopicPartition, int]:
    """The end offset of every partition of these topics, through a started consumer."""
    await consumer._client.force_metadata_update()
    tps = [TopicPartition(t, p) for t in names
           for p in sorted(consumer._client.cluster.partitions_for_topic(t) or ())]
    return dict(await consumer.end_offsets(tps))


async def start_group_at_end(group_id: str, topic_names: tuple[str, ...] | None = None) -> None:
    """Commit the current end offsets for a new consumer group (what an operator does to start a new
    deployment "from now"), so a test's worker reads only the records the test produces next, not every
    record earlier tests left on the shared topics (Faust delivers all topics through one consumer, so a
    backlog on one topic would delay the others too)."""
    names = topic_names or tuple(spec.name for spec in topics.ALL)
    consumer = AIOKafkaConsumer(bootstrap_servers=BASE_ENV["KAFKA_BOOTSTRAP_SERVERS"], group_id=group_id,
                                enable_auto_commit=False)
    await consumer.start()
    try:
        ends = await _end_offsets(consumer, names)
        consumer.assign(list(ends))
        await consumer.commit({tp: OffsetAndMetadata(offset, "") for tp, offset in ends.items()})
    finally:
        await consumer.stop()


WORKER_INPUTS = tuple(spec.name for spec in topics.CONSUMED)


async def committed_lag(group_id: str, topic_names: tuple[str, ...] = WORKER_INPUTS,
                        bootstrap: str = BASE_ENV["KAFKA_BOOTSTRAP_SERVERS"]) -> dict[str, int]:
    """The partitions where the group's committed offset is short of the end (what the dashboard's lag panel
    shows), as "topic[partition]" -> records behind. Empty once the group has committed all it was given."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap)
    await admin.start()
    await consumer.start()
    try:
        committed = {tp: meta.offset for tp, meta in (await admin.list_consumer_group_offsets(group_id)).items()}
        ends = await _end_offsets(consumer, topic_names)
    finally:
        await consumer.stop()
        await admin.close()
    lag = {tp: end - max(committed.get(tp, 0), 0) for tp, end in ends.items()}
    return {f"{tp.topic}[{tp.partition}]": behind for tp, behind in lag.items() if behind > 0}


async def all_committed(group_id: str, timeout: float = 60.0,
                        bootstrap: str = BASE_ENV["KAFKA_BOOTSTRAP_SERVERS"]) -> None:
    """Waits until the group has committed everything on its topics; fails showing the lag left."""
    async def caught_up() -> bool:
        lag = await committed_lag(group_id, bootstrap=bootstrap)
        assert not lag, f"lag of group {group_id}: {lag}"
        return True
    await eventually(caught_up, timeout, what="the group's commits reaching the end of its topics")


def interrupted_after_first_step(name: str, stop: asyncio.Event) -> Progress:
    """A progress display that sets `stop` (what Ctrl-C does) once the first step is reported, for testing
    that a long command stops cleanly and resumes."""
    class Interrupting(Progress):
        def advance(self, n: int = 1) -> None:
            super().advance(n)
            stop.set()
    return Interrupting(name)
