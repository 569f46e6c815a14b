"""A typed client for Toxiproxy's HTTP API (deploy/toxiproxy.sh runs the server): proxies between a client
and a service, and toxics on them that make the network between misbehave.

Toxics used here (attributes as Toxiproxy names them; times in milliseconds unless said otherwise):
  latency     latency, jitter             every chunk of data delayed
  bandwidth   rate (KB/s)                 throughput capped
  slicer      average_size, size_variation (bytes), delay (microseconds)   data cut in small, delayed segments
  timeout     timeout (0: never)          no data passes; the connection is closed after `timeout`
  reset_peer  timeout                     the connection reset (RST) after `timeout`
  limit_data  bytes                       the connection closed once `bytes` passed
`stream` is "upstream" (client to service) or "downstream" (service to client).
"""
from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import aiohttp

__all__ = ["Proxy", "Toxiproxy", "ToxiproxyError"]


class ToxiproxyError(Exception):
    pass


@dataclass(frozen=True)
class Proxy:
    name: str
    listen_port: int
    upstream: str

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.listen_port}"


class Toxiproxy:
    """One test's view of the server: the proxies it creates are deleted by `close()`, toxics and all."""

    def __init__(self, api: str) -> None:
        self._api = api.rstrip("/")
        self._http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30))
        self._proxies: list[Proxy] = []

    async def _call(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        async with self._http.request(method, self._api + path, json=body) as resp:
            text = await resp.text()
            if resp.status >= 300:
                raise ToxiproxyError(f"{method} {path}: {resp.status} {text}")
            return await resp.json(content_type=None) if text else None

    async def create(self, name: str, listen_port: int, upstream: str) -> Proxy:
        """A proxy listening on 127.0.0.1:listen_port that forwards to `upstream` (host:port)."""
        proxy = Proxy(name, listen_port, upstream)
        await self._call("POST", "/proxies", {"name": name, "listen": proxy.address, "upstream": upstream,
                                              "enabled": True})
        self._proxies.append(proxy)
        return proxy

    async def add(self, proxy: Proxy, kind: str, attributes: Mapping[str, int], *, stream: str = "downstream",
                  toxicity: float = 1.0) -> str:
        """Adds a toxic; returns its name (kind_stream) for `remove`."""
        name = f"{kind}_{stream}"
        await self._call("POST", f"/proxies/{proxy.name}/toxics",
                         {"name": name, "type": kind, "stream": stream, "toxicity": toxicity,
                          "attributes": dict(attributes)})
        return name

    async def remove(self, proxy: Proxy, toxic: str) -> None:
        await self._call("DELETE", f"/proxies/{proxy.name}/toxics/{toxic}")

    async def toxics(self, proxy: Proxy) -> list[dict[str, Any]]:
        return list(await self._call("GET", f"/proxies/{proxy.name}/toxics"))

    @asynccontextmanager
    async def toxic(self, proxy: Proxy, kind: str, attributes: Mapping[str, int], *, stream: str = "downstream",
                    toxicity: float = 1.0) -> AsyncIterator[str]:
        """The toxic is on for the body of the `async with`, and removed however it ends."""
        name = await self.add(proxy, kind, attributes, stream=stream, toxicity=toxicity)
        try:
            yield name
        finally:
            await self.remove(proxy, name)

    async def delete(self, proxy: Proxy) -> None:
        """Deletes the proxy: its listener closes and every connection through it is cut."""
        await self._call("DELETE", f"/proxies/{proxy.name}")
        self._proxies.remove(proxy)

    async def close(self) -> None:
        try:
            for proxy in list(reversed(self._proxies)):
                try:
                    await self.delete(proxy)
                except ToxiproxyError:
                    self._proxies.remove(proxy)
        finally:
            await self._http.close()
