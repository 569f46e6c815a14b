"""A real filesystem that runs out of space: a tmpfs of a few hundred KiB or MiB mounted for one test (root only),
and a filler that takes all of its free space, so a test sees the ENOSPC a full disk gives."""
from __future__ import annotations

import errno
import os
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

__all__ = ["small_tmpfs", "fill_up"]


@contextmanager
def small_tmpfs(directory: Path, size_bytes: int) -> Iterator[Path]:
    """Mount a tmpfs of `size_bytes` at `directory`, unmounted afterwards (lazily when a process still holds
    a file there, so a failed test never leaves the mount behind)."""
    assert os.geteuid() == 0, "mounting a tmpfs needs root: run the suite as root (as the test machines do)"
    directory.mkdir(parents=True, exist_ok=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size_bytes}", "tmpfs", str(directory)], check=True)
    try:
        yield directory
    finally:
        if subprocess.run(["umount", str(directory)], capture_output=True).returncode != 0:
            subprocess.run(["umount", "-l", str(directory)], check=True)


def fill_up(directory: Path, name: str = "filler") -> Path:
    """Write a file in `directory` until its filesystem has no space left; return the file (delete it to free
    the space again)."""
    path = directory / name
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    chunk = b"\0" * 4096
    try:
        while True:
            try:
                os.write(fd, chunk)  # a short write fills the last page; the next one meets ENOSPC
            except OSError as exc:
                if exc.errno != errno.ENOSPC:
                    raise
                return path
    finally:
        os.close(fd)
