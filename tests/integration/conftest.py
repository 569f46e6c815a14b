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

from ingestflow.app.db import migrate
from ingestflow.app.kafka import ensure_topics
from ingestflow.schemas import topics

from ..conftest import BASE_ENV

ROOT = Path(__file__).resolve().parents[2]
DSN = BASE_ENV["DATABASE_URL"]


@pytest.fixture(scope="session")
def services() -> None:
    subprocess.run([str(ROOT / "deploy" / "services.sh"), "start"], check=True)
    asyncio.run(migrate(DSN))
    asyncio.run(ensure_topics(BASE_ENV["KAFKA_BOOTSTRAP_SERVERS"], topics.ALL))


@pytest.fixture
async def pg(services: None) -> AsyncIterator[asyncpg.Connection]:
    conn = await asyncpg.connect(DSN)
    yield conn
    await conn.close()


@pytest.fixture
def unique() -> str:
    return uuid.uuid4().hex[:10]


class Process:
    """An ingestflow command in its own process, logging to a file the test prints on failure."""

    def __init__(self, args: list[str], env: dict[str, str], log: Path) -> None:
        self.args, self.env, self.log = args, env, log
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> Process:
        out = open(self.log, "ab")
        full_env = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG", "PYTHONPATH")}
        full_env.update(self.env)
        self.proc = subprocess.Popen([sys.executable, "-m", "ingestflow.app.cli", *self.args], env=full_env,
                                     stdout=out, stderr=subprocess.STDOUT, cwd=self.log.parent)
        return self

    def kill(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
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

    def make(args: list[str], env: dict[str, str], name: str | None = None) -> Process:
        proc = Process(args, env, tmp_path / f"{name or args[0]}-{len(started)}.log").start()
        started.append(proc)
        return proc

    yield make
    for proc in reversed(started):
        proc.stop()


async def eventually(check: Callable[[], Any], timeout: float = 60.0, interval: float = 0.5,
                     what: str = "condition") -> Any:
    """Polls until check() returns a truthy value (awaiting it when it is a coroutine)."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = check()
        if asyncio.iscoroutine(last):
            last = await last
        if last:
            return last
        await asyncio.sleep(interval)
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
