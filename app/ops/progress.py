"""Progress for long commands: a bar with rate and ETA on stderr, a clean stop on Ctrl-C, and a
checkpoint file so an interrupted run resumes where it stopped."""
from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from ingestflow.app.core import serde

__all__ = ["Progress", "Checkpoint", "stop_on_interrupt"]


@dataclass
class Progress:
    label: str
    total: int | None = None
    done: int = 0
    stream: TextIO = field(default_factory=lambda: sys.stderr)
    _started: float = field(default_factory=time.monotonic)
    _last_draw: float = 0.0

    def advance(self, n: int = 1) -> None:
        self.done += n
        now = time.monotonic()
        if now - self._last_draw >= 0.2:
            self._last_draw = now
            self.draw()

    def line(self) -> str:
        elapsed = max(time.monotonic() - self._started, 1e-6)
        rate = self.done / elapsed
        if self.total:
            frac = min(self.done / self.total, 1.0)
            bar = "#" * int(frac * 30)
            eta = (self.total - self.done) / rate if rate > 0 else float("inf")
            eta_text = f"{eta:,.0f}s" if eta != float("inf") else "?"
            return f"{self.label} [{bar:<30}] {self.done:,}/{self.total:,} {rate:,.0f}/s ETA {eta_text}"
        return f"{self.label} {self.done:,} {rate:,.0f}/s"

    def draw(self) -> None:
        end = "\r" if self.stream.isatty() else "\n"
        self.stream.write(self.line() + end)
        self.stream.flush()

    def finish(self) -> None:
        self.stream.write(self.line() + "\n")
        self.stream.flush()


class Checkpoint:
    """A small JSON state file written atomically (temp file, fsync, rename): a crash leaves either the old
    state or the new one, never half of either."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def load(self) -> dict[str, Any]:
        try:
            return dict(serde.loads(self.path.read_bytes()))
        except FileNotFoundError:
            return {}

    def save(self, state: dict[str, Any]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(self.path.suffix + ".tmp")
        with open(tmp, "wb") as f:
            f.write(serde.dumps(state))
            f.flush()
            os.fsync(f.fileno())
        tmp.replace(self.path)

    def clear(self) -> None:
        self.path.unlink(missing_ok=True)


@contextmanager
def stop_on_interrupt() -> Iterator[asyncio.Event]:
    """Ctrl-C (or SIGTERM) sets the event instead of raising, so the loop finishes its current step and
    saves its checkpoint; a second Ctrl-C stops at once."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()

    def on_signal() -> None:
        if stop.is_set():
            raise KeyboardInterrupt
        print("\nstopping after the current step; Ctrl-C again to abort", file=sys.stderr)
        stop.set()

    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, on_signal)
    try:
        yield stop
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
