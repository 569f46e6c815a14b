"""PostgreSQL and Redis as deploy/*.sh run them: a local user without the generated password gets nothing (no
trust authentication, no open Redis), the passwords sit in private files next to each instance's data, and an
instance from before passwords is converted in place by `start`, keeping its data."""
from __future__ import annotations

import os
import shutil
import stat
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlparse

import asyncpg
import pytest
from redis.asyncio import Redis
from redis.exceptions import AuthenticationError, ConnectionError, ResponseError

from ..conftest import BASE_ENV
from .conftest import DSN, PrivateService

PG_BIN = sorted(Path("/usr/lib/postgresql").glob("*/bin"))[-1] if Path("/usr/lib/postgresql").exists() else Path()


def _without_password(url: str) -> str:
    parsed = urlparse(url)
    return parsed._replace(netloc=f"{parsed.username or ''}@{parsed.hostname}:{parsed.port}").geturl()


async def _refused(dsn: str, **kwargs: str) -> str:
    try:
        conn = await asyncpg.connect(dsn, **kwargs)
    except (asyncpg.InvalidAuthorizationSpecificationError, asyncpg.InvalidPasswordError) as exc:
        return str(exc)
    await conn.close()
    raise AssertionError(f"PostgreSQL accepted {_without_password(dsn)} {kwargs} without the right password")


async def test_postgres_refuses_a_connection_without_the_password(services: None) -> None:
    await _refused(_without_password(DSN))
    await _refused(DSN.replace(urlparse(DSN).password or "", "wrong-password"))
    port = str(urlparse(DSN).port)
    # The superuser, over TCP and over the Unix socket, from a local user other than the cluster's owner.
    await _refused(f"postgresql://postgres@127.0.0.1:{port}/postgres")
    await _refused(f"postgresql://postgres@/postgres?host=/tmp&port={port}")
    conn = await asyncpg.connect(DSN)
    assert await conn.fetchval("SELECT current_user") == "ingestflow"
    await conn.close()


async def test_redis_refuses_a_client_without_the_password(services: None) -> None:
    url = urlparse(BASE_ENV["REDIS_URL"])
    anonymous = Redis(host=url.hostname or "", port=url.port or 0)
    try:
        with pytest.raises((AuthenticationError, ResponseError)):
            await anonymous.ping()
    finally:
        await anonymous.aclose()
    assert await Redis.from_url(BASE_ENV["REDIS_URL"]).ping()


def _as_postgres(*args: str) -> list[str]:
    return ["runuser", "-u", "postgres", "--", *args] if os.geteuid() == 0 else list(args)


@pytest.fixture
def trust_cluster() -> Iterator[PrivateService]:
    """A cluster made the way deploy/postgres.sh made them before passwords: --auth=trust, the ingestflow role
    with the published password, one table of data."""
    base = Path("/var/lib/ingestflow") if os.geteuid() == 0 else Path.home() / ".cache" / "ingestflow"
    svc = PrivateService("postgres", 18620, base / f"postgres-18620-{uuid.uuid4().hex[:6]}")
    svc.data_dir.mkdir(parents=True)
    if os.geteuid() == 0:
        shutil.chown(svc.data_dir, "postgres", "postgres")
    svc.data_dir.chmod(0o700)
    subprocess.run(_as_postgres(str(PG_BIN / "initdb"), "-D", str(svc.data_dir), "-U", "postgres", "--auth=trust",
                                "-E", "UTF8"), check=True, capture_output=True)
    subprocess.run(_as_postgres(str(PG_BIN / "pg_ctl"), "-D", str(svc.data_dir), "-l", str(svc.data_dir / "log"),
                                "-w", "-o", "-c listen_addresses=127.0.0.1 -p 18620 -k /tmp", "start"),
                   check=True, capture_output=True)
    try:
        psql = [str(PG_BIN / "psql"), "-h", "127.0.0.1", "-p", "18620", "-U", "postgres", "-v", "ON_ERROR_STOP=1",
                "-c", "CREATE ROLE ingestflow LOGIN PASSWORD 'ingestflow' CREATEDB",
                "-c", "CREATE DATABASE ingestflow OWNER ingestflow"]
        subprocess.run(psql, check=True, capture_output=True)
        subprocess.run([str(PG_BIN / "psql"), "postgresql://ingestflow@127.0.0.1:18620/ingestflow", "-c",
                        "CREATE TABLE kept (v TEXT); INSERT INTO kept VALUES ('before')"], check=True,
                       capture_output=True)
        yield svc
    finally:
        svc.stop()
        subprocess.run(["rm", "-rf", str(svc.data_dir), str(svc.password_file)], check=False)


async def test_start_converts_a_trust_cluster_in_place(trust_cluster: PrivateService) -> None:
    anonymous = "postgresql://ingestflow@127.0.0.1:18620/ingestflow"
    conn = await asyncpg.connect(anonymous)  # trust: anyone, any password or none
    await conn.close()
    trust_cluster.start()
    assert stat.S_IMODE(trust_cluster.password_file.stat().st_mode) == 0o600
    await _refused(anonymous)
    await _refused("postgresql://ingestflow:ingestflow@127.0.0.1:18620/ingestflow")  # the published password
    await _refused("postgresql://postgres@127.0.0.1:18620/postgres")
    conn = await asyncpg.connect(trust_cluster.url("ingestflow"))
    try:
        assert await conn.fetchval("SELECT v FROM kept") == "before"
    finally:
        await conn.close()
    trust_cluster.start()  # a second start changes nothing
    conn = await asyncpg.connect(trust_cluster.url("ingestflow"))
    await conn.close()


@pytest.fixture
def open_redis(tmp_path: Path) -> Iterator[PrivateService]:
    """A Redis started the way deploy/redis.sh started it before passwords: no password at all."""
    svc = PrivateService("redis", 18621, tmp_path / "redis-18621")
    svc.data_dir.mkdir()
    subprocess.run(["redis-server", "--bind", "127.0.0.1", "--port", "18621", "--daemonize", "yes",
                    "--dir", str(svc.data_dir), "--pidfile", str(svc.data_dir / "redis.pid"),
                    "--logfile", str(svc.data_dir / "redis.log"), "--save", ""], check=True)
    try:
        yield svc
    finally:
        subprocess.run(["redis-cli", "-p", "18621", "shutdown", "nosave"], check=False, capture_output=True,
                       env={**os.environ, "REDISCLI_AUTH": svc.password_file.read_text().strip()}
                       if svc.password_file.exists() else None)


async def test_start_sets_the_password_on_a_running_open_redis(open_redis: PrivateService) -> None:
    anonymous = Redis(host="127.0.0.1", port=18621)
    try:
        assert await anonymous.set("kept", "before")
        open_redis.start()
        with pytest.raises((AuthenticationError, ResponseError, ConnectionError)):
            await anonymous.ping()  # its connection, opened without the password, was closed
        with pytest.raises((AuthenticationError, ResponseError)):
            await anonymous.ping()  # and a new one is refused
    finally:
        await anonymous.aclose()
    client = Redis.from_url(open_redis.url("0"))
    try:
        assert await client.get("kept") == b"before"
    finally:
        await client.aclose()
    assert stat.S_IMODE(open_redis.password_file.stat().st_mode) == 0o600
