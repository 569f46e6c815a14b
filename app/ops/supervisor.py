"""`ingestflow run`: keeps its child processes (the gateway and a worker) running.

A child that dies is started again after a back-off (app/core/retry.backoff_delay), each restart logged with
its count. A child that dies more than `max_restarts` times within `window_s`, or that stops on a
configuration error (exit status 2, which a restart cannot cure), stops the others and ends the run with a
non-zero status, so whatever supervises `ingestflow run` (systemd, Kubernetes, an operator) learns of it
instead of a gateway that keeps answering 202 while no worker processes anything. SIGTERM or SIGINT stop every
child and end the run with 0; the children also get SIGTERM if the supervisor itself is killed.
"""
from __future__ import annotations

import asyncio
import ctypes
import logging
import signal
import sys
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from ingestflow.app.core.retry import backoff_delay

__all__ = ["Supervisor", "RestartPolicy", "CONFIG_ERROR_STATUS"]

log = logging.getLogger(__name__)
CONFIG_ERROR_STATUS = 2  # what `ingestflow` exits with on a configuration error
_PR_SET_PDEATHSIG = 1


@dataclass(frozen=True)
class RestartPolicy:
    max_restarts: int = 5
    window_s: float = 300.0
    backoff_base_s: float = 1.0
    backoff_cap_s: float = 30.0
    stop_timeout_s: float = 30.0


@dataclass
class _Child:
    role: str
    argv: Sequence[str]
    crashes: deque[float] = field(default_factory=deque)
    restarts: int = 0
    proc: asyncio.subprocess.Process | None = None


class Supervisor:
    def __init__(self, commands: Mapping[str, Sequence[str]], policy: RestartPolicy,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._children = [_Child(role, argv) for role, argv in commands.items()]
        self._policy = policy
        self._clock = clock
        self._stopping = asyncio.Event()
        self._status = 0

    async def run(self) -> int:
        """Runs until a stop signal (0) or a child that keeps failing (its status, at least 1)."""
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, self._stop, f"signal {signal.Signals(signum).name}")
        try:
            await asyncio.gather(*(self._keep(child) for child in self._children))
        finally:
            for signum in (signal.SIGTERM, signal.SIGINT):
                loop.remove_signal_handler(signum)
        summary = ", ".join(f"{c.role} restarted {c.restarts} time(s)" for c in self._children)
        log.info("run: stopped (%s)", summary)
        return self._status

    def _stop(self, reason: str) -> None:
        if not self._stopping.is_set():
            log.info("run: stopping every child (%s)", reason)
            self._stopping.set()
        for child in self._children:
            if child.proc is not None and child.proc.returncode is None:
                child.proc.terminate()

    async def _keep(self, child: _Child) -> None:
        while not self._stopping.is_set():
            started = self._clock()
            child.proc = await asyncio.create_subprocess_exec(*child.argv, preexec_fn=_die_with_parent)
            log.info("run: %s started (pid %d)", child.role, child.proc.pid)
            status = await self._wait(child.proc)
            if self._stopping.is_set():
                return
            delay = self._after_exit(child, status, ran_s=self._clock() - started)
            if delay is None:
                return
            try:
                await asyncio.wait_for(self._stopping.wait(), delay)
            except asyncio.TimeoutError:
                child.restarts += 1
                log.warning("run: restarting %s (restart %d)", child.role, child.restarts)

    async def _wait(self, proc: asyncio.subprocess.Process) -> int:
        """The exit status; once stopping, a child that ignores SIGTERM is killed after stop_timeout_s."""
        waiting = asyncio.ensure_future(proc.wait())
        stopping = asyncio.ensure_future(self._stopping.wait())
        try:
            await asyncio.wait([waiting, stopping], return_when=asyncio.FIRST_COMPLETED)
        finally:
            stopping.cancel()
        if not waiting.done():
            proc.terminate()  # (it may have started after the others were told to stop)
            try:
                await asyncio.wait_for(asyncio.shield(waiting), self._policy.stop_timeout_s)
            except asyncio.TimeoutError:
                log.warning("run: pid %d did not stop within %.0fs; killing it", proc.pid,
                            self._policy.stop_timeout_s)
                proc.kill()
        return await waiting

    def _after_exit(self, child: _Child, status: int, ran_s: float) -> float | None:
        """Seconds to wait before the restart, or None when the run must end."""
        now = self._clock()
        child.crashes.append(now)
        while child.crashes and child.crashes[0] < now - self._policy.window_s:
            child.crashes.popleft()
        how = f"was killed by {signal.Signals(-status).name}" if status < 0 else f"exited with status {status}"
        if status == CONFIG_ERROR_STATUS:
            self._give_up(child, status, f"{child.role} {how} (a configuration error): not restarting it")
            return None
        if len(child.crashes) > self._policy.max_restarts:
            self._give_up(child, status, f"{child.role} {how}: {len(child.crashes)} failures within "
                                         f"{self._policy.window_s:.0f}s, more than the {self._policy.max_restarts} "
                                         "restarts allowed; giving up")
            return None
        # The back-off grows with the failures in the window, so a child that ran for long starts over quickly.
        delay = backoff_delay(len(child.crashes), self._policy.backoff_base_s, self._policy.backoff_cap_s)
        log.error("run: %s %s after %.1fs (failure %d within %.0fs); restarting it in %.1fs", child.role, how,
                  ran_s, len(child.crashes), self._policy.window_s, delay)
        return delay

    def _give_up(self, child: _Child, status: int, message: str) -> None:
        log.error("run: %s", message)
        self._status = status if status > 0 else 1
        self._stop(f"{child.role} keeps failing")


def _die_with_parent() -> None:
    """In the child before exec: SIGTERM when the supervisor dies, so a killed `run` leaves no orphans."""
    if sys.platform.startswith("linux"):
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
