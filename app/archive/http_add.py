"""The one client for IPFS-style HTTP add APIs: kubo's RPC and Lighthouse's node share `/api/v0/add`.

Upload: POST {node}/api/v0/add, multipart field `file`; the answer is JSON `{"Name", "Hash", "Size"}`,
possibly several newline-delimited objects (the last one is the root). 429 and 5xx are retriable
(ArchiveError, honouring Retry-After as a hint in the message); 401/403 mean a wrong key and are not.
"""
from __future__ import annotations

import asyncio
from collections.abc import Mapping

import aiohttp

from ingestflow.app.core import serde
from ingestflow.app.core.errors import ArchiveError, NotFound

from .base import verify_cid

__all__ = ["HttpAddBackend", "AuthRejected"]


class AuthRejected(ArchiveError):
    retriable = False


class HttpAddBackend:
    def __init__(self, name: str, node_url: str, *, add_params: Mapping[str, str], headers: Mapping[str, str],
                 get_url: str, get_method: str, timeout_s: float = 60.0) -> None:
        self.name = name
        self._add_url = node_url.rstrip("/") + "/api/v0/add"
        self._add_params = dict(add_params)
        self._headers = dict(headers)
        self._get_url = get_url  # contains "{cid}"
        self._get_method = get_method
        self._timeout = aiohttp.ClientTimeout(total=timeout_s, connect=5)
        self._session: aiohttp.ClientSession | None = None

    async def start(self) -> None:
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=self._timeout)

    async def stop(self) -> None:
        session, self._session = self._session, None
        if session is not None:
            await session.close()

    async def _http(self) -> aiohttp.ClientSession:
        await self.start()
        assert self._session is not None
        return self._session

    async def put(self, data: bytes) -> str:
        form = aiohttp.FormData()
        form.add_field("file", data, filename="batch.bin", content_type="application/octet-stream")
        session = await self._http()
        try:
            async with session.post(self._add_url, params=self._add_params, data=form,
                                    headers=self._headers) as resp:
                body = await resp.read()
                _raise_for_status(self.name, resp, body)
        except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as exc:
            raise ArchiveError(f"{self.name} upload failed: {type(exc).__name__}: {exc}") from exc
        return verify_cid(_root_hash(self.name, body), data, self.name)

    async def ping(self) -> None:
        """Any HTTP answer below 500 from the add endpoint (kubo answers a GET with 405) means reachable."""
        session = await self._http()
        try:
            async with session.get(self._add_url, headers=self._headers,
                                   timeout=aiohttp.ClientTimeout(total=2)) as resp:
                if resp.status >= 500:
                    raise ArchiveError(f"{self.name} answered {resp.status}")
        except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as exc:
            raise ArchiveError(f"{self.name} unreachable: {type(exc).__name__}") from exc

    async def get(self, cid: str) -> bytes:
        session = await self._http()
        url = self._get_url.format(cid=cid)
        try:
            async with session.request(self._get_method, url, headers=self._headers) as resp:
                body = await resp.read()
                if resp.status == 404 or (resp.status == 500 and b"not found" in body.lower()):
                    raise NotFound(f"{self.name} has no object with CID {cid}")
                _raise_for_status(self.name, resp, body)
                return body
        except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as exc:
            raise ArchiveError(f"{self.name} read failed: {type(exc).__name__}: {exc}") from exc


def _raise_for_status(name: str, resp: aiohttp.ClientResponse, body: bytes) -> None:
    if resp.status < 300:
        return
    snippet = body[:200].decode("utf-8", "replace")
    if resp.status in (401, 403):
        raise AuthRejected(f"{name} refused the credentials ({resp.status})")
    retry_after = resp.headers.get("Retry-After")
    hint = f", Retry-After {retry_after}s" if retry_after else ""
    raise ArchiveError(f"{name} answered {resp.status}{hint}: {snippet}")


def _root_hash(name: str, body: bytes) -> str:
    lines = [line for line in body.splitlines() if line.strip()]
    if not lines:
        raise ArchiveError(f"{name} answered an empty add response")
    try:
        last = serde.loads(lines[-1])
        digest = last["Hash"]
    except (serde.DecodeError, KeyError, TypeError):
        raise ArchiveError(f"{name} answered a malformed add response: {body[:200]!r}") from None
    if not isinstance(digest, str):
        raise ArchiveError(f"{name} answered a non-string Hash")
    return digest
