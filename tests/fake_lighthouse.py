"""A local stand-in for Lighthouse (the SaaS cannot be reached here), following its documented HTTP API:

- `POST /api/v0/add`, multipart field `file`, header `Authorization: Bearer <API key>`: 401 without a valid
  key; answers `{"Name", "Hash", "Size"}` with Size as a string and Hash a CIDv0 (`Qm...`), or the same as
  newline-delimited JSON when `ndjson` is set.
- `GET /ipfs/{cid}` on the gateway: the bytes, 404 when unknown.
Tests inject faults: `fail(status, times, retry_after)` answers the next uploads with 429/5xx, `corrupt`
answers a Hash that is not the content's, `hold()` keeps the next upload waiting until `release()`.
The CIDv0 is computed here independently of ingestflow's own cid module (dag-pb node holding a UnixFS file).
"""
from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
from collections import deque
from dataclasses import dataclass, field

from aiohttp import web

__all__ = ["FakeLighthouse"]

_B58 = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"


def _uvarint(n: int) -> bytes:
    out = b""
    while n >= 0x80:
        out += bytes([(n & 0x7F) | 0x80])
        n >>= 7
    return out + bytes([n])


def cid_v0(data: bytes) -> str:
    unixfs = b"\x08\x02" + b"\x12" + _uvarint(len(data)) + data + b"\x18" + _uvarint(len(data))
    node = b"\x0a" + _uvarint(len(unixfs)) + unixfs
    mh = b"\x12\x20" + hashlib.sha256(node).digest()
    n, out = int.from_bytes(mh, "big"), ""
    while n:
        n, r = divmod(n, 58)
        out = _B58[r] + out
    return out


@dataclass
class FakeLighthouse:
    api_key: str
    port: int
    ndjson: bool = False
    corrupt: bool = False
    objects: dict[str, bytes] = field(default_factory=dict)
    uploads: int = 0
    probes: int = 0  # GETs of the add endpoint: what a health check sends (answered 405, as the real node does)
    faults: deque[tuple[int, float | None]] = field(default_factory=deque)
    _runner: web.AppRunner | None = None
    _hold: asyncio.Event | None = None
    _gates: list[asyncio.Event] = field(default_factory=list)
    held: int = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def fail(self, status: int, times: int = 1, retry_after: float | None = None) -> None:
        self.faults.extend([(status, retry_after)] * times)

    def hold(self) -> None:
        self._hold = asyncio.Event()
        self._gates.append(self._hold)

    def release(self) -> None:
        for gate in self._gates:
            gate.set()

    async def start(self) -> FakeLighthouse:
        app = web.Application(client_max_size=100 * 1024 * 1024)
        app.add_routes([web.post("/api/v0/add", self._add), web.get("/api/v0/add", self._probe),
                        web.get("/ipfs/{cid}", self._get)])
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()
        return self

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def _add(self, request: web.Request) -> web.StreamResponse:
        auth = request.headers.get("Authorization", "")
        if not hmac.compare_digest(auth.encode(), f"Bearer {self.api_key}".encode()):
            return web.json_response({"error": "Authentication failed"}, status=401)
        if self.faults:
            status, retry_after = self.faults.popleft()
            headers = {"Retry-After": str(int(retry_after))} if retry_after is not None else {}
            return web.json_response({"error": "Too Many Requests" if status == 429 else "Internal Server Error"},
                                     status=status, headers=headers)
        gate, self._hold = self._hold, None
        if gate is not None:
            self.held += 1
            await gate.wait()
        if not request.content_type.startswith("multipart/"):
            return web.json_response({"error": "expected multipart/form-data"}, status=400)
        reader = await request.multipart()
        part = await reader.next()
        if part is None or getattr(part, "name", None) != "file":
            return web.json_response({"error": "multipart field 'file' is required"}, status=400)
        data = await part.read()  # type: ignore[union-attr]
        name = part.filename or "file"  # type: ignore[union-attr]
        cid = cid_v0(bytes(data))
        self.objects[cid] = bytes(data)
        self.uploads += 1
        answer = {"Name": name, "Hash": cid_v0(bytes(data) + b"!") if self.corrupt else cid, "Size": str(len(data) + 14)}
        if self.ndjson:
            return web.Response(text=json.dumps(answer) + "\n", content_type="application/json")
        return web.json_response(answer)

    async def _probe(self, request: web.Request) -> web.StreamResponse:
        self.probes += 1
        return web.json_response({"error": "method not allowed"}, status=405)

    async def _get(self, request: web.Request) -> web.StreamResponse:
        data = self.objects.get(request.match_info["cid"])
        if data is None:
            return web.json_response({"error": "not found"}, status=404)
        return web.Response(body=data, content_type="application/octet-stream")
