"""Archive backends behind one interface (base.ArchiveBackend), chosen by ARCHIVE_URL's scheme."""
from __future__ import annotations

from .base import ArchiveBackend, CidMismatch, verify_cid
from .registry import backend_for

__all__ = ["ArchiveBackend", "CidMismatch", "backend_for", "verify_cid"]
