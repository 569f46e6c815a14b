"""Fixtures for the checks of deploy/: promtool from Debian's prometheus package, installed when missing."""
from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture(scope="session")
def promtool() -> str:
    if shutil.which("promtool") is None:
        subprocess.run([str(ROOT / "deploy" / "prometheus.sh"), "install"], check=True)
    path = shutil.which("promtool")
    assert path, "promtool is not installed (deploy/prometheus.sh install)"
    return path
