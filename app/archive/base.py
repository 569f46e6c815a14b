"""The one interface every archive backend implements: put bytes, get a CID back; get bytes by CID.

Backends store their parameters in the constructor and connect in start(); stop() twice is harmless.
A backend that cannot be reached raises ArchiveError (retriable): the caller backs off and retries.
"""
from __future__ import annotations

from typing import Protocol

from ingestflow.app.core.errors import ArchiveError, NotFound

from . import cid as cids

__all__ = ["ArchiveBackend", "CidMismatch", "verify_cid", "ArchiveError", "NotFound"]


class ArchiveBackend(Protocol):
    name: str

    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    async def put(self, data: bytes) -> str:
        """Store the object; return its CID (already checked against the locally computed one)."""
        ...

    async def get(self, cid: str) -> bytes:
        """The object's bytes; NotFound when the backend does not have it."""
        ...

    async def ping(self) -> None:
        """Raise ArchiveError when the backend cannot be reached; stores nothing (for /health)."""
        ...


def verify_cid(returned: str, data: bytes, backend: str) -> str:
    """A single-block object's CID must be one we compute ourselves: a mismatch means corrupt storage."""
    cids.parse_cid(returned)
    expected = cids.expected_cids(data)
    if expected is not None and returned not in expected:
        raise CidMismatch(f"{backend} returned CID {returned}, but the object's CID is {cids.raw_cid(data)}")
    return returned


class CidMismatch(ArchiveError):
    """Not retriable: the backend stored something other than what we sent."""

    retriable = False
