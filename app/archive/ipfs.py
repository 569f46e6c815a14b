"""`ipfs://host:port`: a kubo node's RPC API. Adds are CIDv1 and pinned; reads use /api/v0/cat."""
from __future__ import annotations

from .http_add import HttpAddBackend

__all__ = ["kubo"]


def kubo(api_url: str, *, timeout_s: float = 60.0) -> HttpAddBackend:
    base = api_url.rstrip("/")
    return HttpAddBackend("ipfs", base, add_params={"cid-version": "1", "pin": "true"}, headers={},
                          get_url=base + "/api/v0/cat?arg={cid}", get_method="POST", timeout_s=timeout_s)
