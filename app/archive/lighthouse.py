"""`lighthouse://`: Lighthouse's node (`POST /api/v0/add`, `Authorization: Bearer <LIGHTHOUSE_API_KEY>`) and
its gateway (`GET /ipfs/{cid}`). The API key goes only into that header, never into a log or an error."""
from __future__ import annotations

from .http_add import HttpAddBackend

__all__ = ["lighthouse"]


def lighthouse(node_url: str, gateway_url: str, api_key: str, *, timeout_s: float = 60.0) -> HttpAddBackend:
    return HttpAddBackend("lighthouse", node_url, add_params={}, headers={"Authorization": f"Bearer {api_key}"},
                          get_url=gateway_url.rstrip("/") + "/ipfs/{cid}", get_method="GET", timeout_s=timeout_s)
