"""The one lifecycle of connect-late clients (PostgreSQL, Redis, Kafka producers, archive backends, the
gateway's publisher): started in order before a process serves, stopped in reverse after.

Every client keeps its parameters from its constructor and connects in `start()`; `stop()` twice is harmless.
A required client that cannot start stops the process's start-up (the gateway's spool: a 202 relies on it); an
optional one is logged and left to connect on first use (PostgreSQL, Redis and Kafka reconnect by themselves,
and readiness reports them meanwhile). The gateway runs the group from aiohttp's `cleanup_ctx`, a worker as a
Faust service: the same group either way.
"""
from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any, Protocol

from mode import Service

__all__ = ["Client", "Clients"]

log = logging.getLogger(__name__)


class Client(Protocol):
    async def start(self) -> None: ...

    async def stop(self) -> None: ...


@dataclass
class Clients:
    """An ordered group of clients; `add` them in the order they must start."""

    _members: list[tuple[str, Client, bool]] = field(default_factory=list)

    def add(self, name: str, client: Client, *, required: bool = False) -> Clients:
        self._members.append((name, client, required))
        return self

    async def start(self) -> None:
        for name, client, required in self._members:
            try:
                await client.start()
            except Exception as exc:
                if required:
                    raise
                log.warning("%s not reachable at start-up (connects on first use): %s", name, type(exc).__name__)

    async def stop(self) -> None:
        """Stop every client in reverse order; one that fails to stop does not keep the others open."""
        for name, client, _ in reversed(self._members):
            try:
                await client.stop()
            except Exception as exc:
                log.warning("%s did not stop cleanly: %s", name, type(exc).__name__)

    async def context(self, _app: Any) -> AsyncIterator[None]:
        """For aiohttp's `app.cleanup_ctx`."""
        await self.start()
        yield
        await self.stop()

    def service(self) -> type[Service]:
        """For Faust's `app.service(...)`: started before the agents run, stopped after them."""
        group = self

        class StartedClients(Service):
            async def on_start(self) -> None:
                await group.start()

            async def on_stop(self) -> None:
                await group.stop()

        return StartedClients
