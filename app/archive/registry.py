"""Picks the archive backend by the scheme of ARCHIVE_URL; a new backend is one file and one line here.

    local://<dir>          content-addressed directory (relative or absolute path)
    ipfs://host:port       kubo RPC API at http://host:port
    lighthouse://          Lighthouse node + gateway from LIGHTHOUSE_NODE_URL / LIGHTHOUSE_GATEWAY_URL
"""
from __future__ import annotations

from pathlib import Path
from urllib.parse import urlparse

from ingestflow.app.core.errors import ConfigError
from ingestflow.app.core.settings import Settings

from .base import ArchiveBackend
from .ipfs import kubo
from .lighthouse import lighthouse
from .local import LocalBackend

__all__ = ["backend_for"]


def backend_for(settings: Settings) -> ArchiveBackend:
    url = urlparse(settings.archive_url)
    if url.scheme == "local":
        return LocalBackend(Path(settings.archive_url[len("local://"):] or "data/archive"))
    if url.scheme == "ipfs":
        return kubo(f"http://{url.netloc}")
    if url.scheme in ("http", "https"):
        return kubo(settings.archive_url)
    if url.scheme == "lighthouse":
        if not settings.lighthouse_api_key:
            raise ConfigError("LIGHTHOUSE_API_KEY", "is required when ARCHIVE_URL is lighthouse://")
        return lighthouse(settings.lighthouse_node_url, settings.lighthouse_gateway_url,
                          settings.lighthouse_api_key.get())
    raise ConfigError("ARCHIVE_URL", f"has no archive backend for scheme {url.scheme!r}")
