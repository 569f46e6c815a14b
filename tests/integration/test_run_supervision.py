"""`ingestflow run` supervises its children: after `kill -9` of the worker a new worker processes events,
after `kill -9` of the gateway a new gateway answers, and a child that keeps crashing ends the run with a
non-zero status (and nothing of it left running) so an outer supervisor can act."""
from __future__ import annotations

import os
import signal
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp

from .conftest import Process, eventually, start_group_at_end, wait_http
from .gateway_kit import get, post

GATEWAY, WORKER = "http://127.0.0.1:18602", "http://127.0.0.1:18603"


def children(proc: Process) -> dict[str, int]:
    """The run's child processes by role ("worker", "gateway"), read from /proc."""
    assert proc.proc is not None
    pid = proc.proc.pid
    found: dict[str, int] = {}
    for child in Path(f"/proc/{pid}/task/{pid}/children").read_text().split():
        try:
            argv = Path(f"/proc/{child}/cmdline").read_bytes().split(b"\0")
        except FileNotFoundError:
            continue
        role = next((a.decode() for a in reversed(argv) if a in (b"worker", b"gateway")), None)
        if role:
            found[role] = int(child)
    return found


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"


async def _processed(http: aiohttp.ClientSession, rule: str) -> bool:
    reply = await get(http, f"{GATEWAY}/metrics/rules/{rule}")  # the last 30 days
    assert reply.status == 200 and reply.body["totals"]["views"] == 1, reply.body
    return True


async def _send_view(http: aiohttp.ClientSession, rule: str) -> None:
    sent = await post(http, f"{GATEWAY}/ingest/events", {"events": [{"type": "VIEW", "ruleId": rule}]})
    assert sent.status == 202, sent.body


async def test_killed_worker_and_gateway_are_restarted_and_events_flow_again(
        spawn: Callable[..., Any], env_factory: Callable[..., dict[str, str]], unique: str) -> None:
    env = env_factory(PORT="18602", WORKER_PORT="18603", WORKER_APP_ID=f"run-{unique}")
    await start_group_at_end(env["WORKER_APP_ID"])
    run = spawn(["run"], env)
    rules = [f"run-{unique}-{n}" for n in range(3)]  # (a rule's views count once per client and day)
    try:
        await wait_http(f"{GATEWAY}/health", timeout=180)
        await wait_http(f"{WORKER}/health/live", timeout=180)
        async with aiohttp.ClientSession() as http:
            await _send_view(http, rules[0])
            await eventually(lambda: _processed(http, rules[0]), timeout=180, what="the first event processed")

            first = children(run)
            os.kill(first["worker"], signal.SIGKILL)
            await eventually(lambda: children(run).get("worker") not in (None, first["worker"]), timeout=120,
                             what="a new worker started by `ingestflow run`")
            await _send_view(http, rules[1])
            await eventually(lambda: _processed(http, rules[1]), timeout=300,
                             what="an event sent after the kill processed by the new worker")

            os.kill(children(run)["gateway"], signal.SIGKILL)
            await eventually(lambda: children(run).get("gateway") not in (None, first["gateway"]), timeout=120,
                             what="a new gateway started by `ingestflow run`")
            await wait_http(f"{GATEWAY}/health", timeout=120)
            await _send_view(http, rules[2])
            await eventually(lambda: _processed(http, rules[2]), timeout=180, what="the third event processed")
        log = run.log.read_text()
        assert "restarting worker (restart 1)" in log and "restarting gateway (restart 1)" in log
        assert "worker was killed by SIGKILL" in log
        assert run.alive()
    except AssertionError:
        print(run.tail(80))
        raise
    last = children(run)
    run.stop()
    assert run.proc is not None and run.proc.wait(60) == 0
    await eventually(lambda: not any(alive(pid) for pid in last.values()), timeout=60,
                     what="every child stopped with the run")


async def test_a_child_that_keeps_crashing_ends_the_run_with_a_non_zero_status(
        spawn: Callable[..., Any], env_factory: Callable[..., dict[str, str]], tmp_path: Path, unique: str) -> None:
    not_a_directory = tmp_path / "tables-file"
    not_a_directory.write_text("")  # the worker cannot make its table directory here, so it dies at start
    env = env_factory(PORT="18604", WORKER_PORT="18605", WORKER_APP_ID=f"crash-{unique}",
                      TABLE_DIR=str(not_a_directory), RUN_MAX_RESTARTS="2")
    run = spawn(["run"], env)
    assert run.proc is not None
    seen: dict[str, int] = {}

    def ended() -> bool:
        seen.update(children(run) if run.proc.poll() is None else {})
        return run.proc.poll() is not None
    try:
        await eventually(ended, timeout=300, interval=0.2, what="`ingestflow run` giving up")
        assert run.proc.returncode not in (0, None)
        log = run.log.read_text()
        assert "restarting worker (restart 2)" in log and "giving up" in log
        assert log.count("restarting it in") == 2  # two restarts; the third failure ends it
        assert "worker exited with status 1: 3 failures within 300s" in log
    except AssertionError:
        print(run.tail(80))
        raise
    assert "gateway" in seen
    await eventually(lambda: not alive(seen["gateway"]), timeout=60, what="the gateway stopped with the run")
