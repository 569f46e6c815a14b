"""`local://<dir>`: a content-addressed directory, the default when no Lighthouse key or IPFS node is set.

Each object is a file named by its CIDv1 (raw, sha2-256), written to a temporary name, fsynced and renamed,
so a crash never leaves a partial object under a real CID.
"""
from __future__ import annotations

import asyncio
import os
from pathlib import Path

from ingestflow.app.core.errors import ArchiveError, NotFound

from . import cid as cids

__all__ = ["LocalBackend"]


class LocalBackend:
    name = "local"

    def __init__(self, directory: Path) -> None:
        self._dir = directory

    async def start(self) -> None:
        self._dir.mkdir(parents=True, exist_ok=True)

    async def stop(self) -> None:
        return None

    async def ping(self) -> None:
        try:
            await self.start()
        except OSError as exc:
            raise ArchiveError(f"local archive directory {self._dir} cannot be created: {exc}") from exc
        if not (self._dir.is_dir() and os.access(self._dir, os.W_OK)):
            raise ArchiveError(f"local archive directory {self._dir} is missing or not writable")

    def _path(self, cid: str) -> Path:
        parsed = cids.parse_cid(cid)
        return self._dir / str(cids.Cid(1, cids.RAW, parsed.digest))

    def _write(self, data: bytes) -> str:
        cid = cids.raw_cid(data)
        target = self._dir / cid
        if target.exists():
            return cid
        self._dir.mkdir(parents=True, exist_ok=True)
        tmp = target.with_suffix(f".tmp{os.getpid()}")
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, target)
        dir_fd = os.open(self._dir, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
        return cid

    async def put(self, data: bytes) -> str:
        try:
            return await asyncio.to_thread(self._write, data)
        except OSError as exc:
            raise ArchiveError(f"local archive write failed: {exc.strerror}") from exc

    async def get(self, cid: str) -> bytes:
        path = self._path(cid)
        try:
            return await asyncio.to_thread(path.read_bytes)
        except FileNotFoundError:
            raise NotFound(f"no archived object with CID {cid}") from None
