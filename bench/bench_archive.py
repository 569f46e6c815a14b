"""Archive throughput: the archive agent's pipeline (batching, envelope, transfer_logs in PostgreSQL, upload)
into the local and kubo backends, next to raw AES-GCM over the same batches and to the bare backend; one run.

    python bench/bench_archive.py                      # ~1 minute; starts a private kubo on 15021
    python bench/bench_archive.py --records 20000 --users 200 --buffer 100

The records go through the agent's own decision code (agents/archive.Processor, its take_events batch size,
an in-memory table in place of RocksDB) and the real ArchiveSink: pending row, sealed envelope, upload,
success row, in PostgreSQL (DATABASE_URL, default the test database). Kafka and Faust are left out: this
measures what the archive adds. Figures, each a ratio against a baseline measured in the same run:
- records/s archived with uploads one user after another (concurrency 1, the replaced design) and with
  ARCHIVE_CONCURRENCY (default 8) uploads in flight;
- the same batches uploaded bare (no envelope, no logs) at the same concurrency: the backend's ceiling;
- bytes/s sealed by our envelope (HKDF per batch + AES-256-GCM) next to raw AES-GCM with one fixed key;
- uploads per 1,000 records.
Results go to bench/results/archive-<time>.json and are printed.
"""
from __future__ import annotations

import argparse
import asyncio
import hashlib
import os
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from services import database_url  # bench/services.py (run as a script from bench/)

from ingestflow.agents.archive import BATCH_SIZE, Processor
from ingestflow.agents.dead_letter import DeadLetters
from ingestflow.app.archive.base import ArchiveBackend
from ingestflow.app.archive.crypto import Keyring, seal
from ingestflow.app.archive.ipfs import kubo
from ingestflow.app.archive.local import LocalBackend
from ingestflow.app.archive.sink import ArchiveSink, Batch
from ingestflow.app.archive.transfer_logs import TransferLogs
from ingestflow.app.clients.db import Database, migrate
from ingestflow.app.core import serde
from ingestflow.schemas.records import WebsiteRecord

ROOT = Path(__file__).resolve().parents[1]
DSN = database_url()
KUBO_PORT = 15021
KEYRING = Keyring("bench-archive-master-key-0123456789")


@dataclass
class Message:
    partition: int
    offset: int
    timestamp: float
    topic: str = "website-records"
    key: bytes | None = None
    headers: tuple[tuple[str, bytes], ...] = ()


@dataclass
class Event:
    value: bytes
    message: Message


class NoDeadLetters(DeadLetters):
    def __init__(self) -> None:
        super().__init__(None, worker="bench")

    async def send(self, message: Any, error: BaseException, *, agent: str) -> None:
        raise AssertionError(f"the benchmark's records are all valid: {error}")


class Seen(dict[str, str]):
    """`archive-seen` without windows (the benchmark's records are all new)."""

    def __getitem__(self, key: str) -> Any:
        value = self.get(key, "")
        return SimpleNamespace(value=lambda event: value, delta=lambda seconds, event: "")


def make_events(records: int, users: int, run: str) -> list[Event]:
    base = uuid.uuid4().int % 10**12 * 1000
    offsets: dict[int, int] = {}
    out = []
    for i in range(records):
        user = base + i % users
        partition = user % 4
        offset = offsets[partition] = offsets.get(partition, -1) + 1
        value = WebsiteRecord(user, f"{run}-{i}", {"url": f"https://example.test/{i}", "title": f"page {i}",
                                                    "text": "lorem ipsum dolor sit amet " * 8}, "crawl").encode()
        out.append(Event(value, Message(partition, offset, time.time())))
    return out


async def pipeline(events: list[Event], backend: ArchiveBackend, db: Database, *, buffer: int,
                   concurrency: int) -> tuple[float, int]:
    """Seconds to archive every record through the agent's Processor and the sink; returns (s, uploads)."""
    sink = ArchiveSink(backend, TransferLogs(db), KEYRING, app_id=f"bench-{uuid.uuid4().hex[:8]}",
                       concurrency=concurrency)
    table: dict[str, Any] = {}
    processor = Processor(table, Seen(), sink, buffer_size=buffer, retention_s=7 * 86400.0,
                          set_current=lambda e: None, dead_letters=NoDeadLetters())
    uploads = 0
    start = time.perf_counter()
    for i in range(0, len(events), BATCH_SIZE):  # the agent's take_events batches
        uploads += len(await processor.handle(events[i:i + BATCH_SIZE]))
    return time.perf_counter() - start, uploads


def batches_of(events: list[Event], buffer: int) -> list[Batch]:
    by_user: dict[int, list[dict[str, Any]]] = {}
    for e in events:
        raw = serde.loads(e.value)
        by_user.setdefault(raw["user_id"], []).append(
            {"website_uid": raw["wuid"], "cleanedJson": raw["cleaned"], "context": raw["context"]})
    out = []
    for user, recs in by_user.items():
        for i in range(0, len(recs) - len(recs) % buffer, buffer):
            out.append(Batch(user, 0, tuple(range(i, i + buffer)), tuple(recs[i:i + buffer])))
    return out


def crypto_rates(plaintexts: list[bytes]) -> dict[str, float]:
    total = sum(map(len, plaintexts))
    key, nonce = AESGCM.generate_key(256), os.urandom(12)
    start = time.perf_counter()
    for pt in plaintexts:
        AESGCM(key).encrypt(nonce, pt, None)
    raw_s = time.perf_counter() - start
    start = time.perf_counter()
    for i, pt in enumerate(plaintexts):
        seal(KEYRING, pt, user_id=i, count=1, batch_id=hashlib.sha256(pt).digest())
    env_s = time.perf_counter() - start
    return {"plaintext_bytes": total, "raw_aesgcm_MBps": round(total / raw_s / 1e6, 1),
            "envelope_MBps": round(total / env_s / 1e6, 1), "envelope_vs_raw": round(raw_s / env_s, 3)}


async def bare_uploads(backend: ArchiveBackend, blobs: list[bytes], concurrency: int) -> float:
    gate = asyncio.Semaphore(concurrency)

    async def one(blob: bytes) -> None:
        async with gate:
            await backend.put(blob)
    start = time.perf_counter()
    await asyncio.gather(*(one(b) for b in blobs))
    return time.perf_counter() - start


async def measure(name: str, backend: ArchiveBackend, db: Database, events: list[Event], blobs: list[bytes],
                  args: argparse.Namespace) -> dict[str, Any]:
    await backend.start()
    await pipeline(events[: min(len(events), 1000)], backend, db, buffer=args.buffer, concurrency=args.concurrency)
    seq_s, uploads = await pipeline(events, backend, db, buffer=args.buffer, concurrency=1)
    con_s, _ = await pipeline(events, backend, db, buffer=args.buffer, concurrency=args.concurrency)
    bare_s = await bare_uploads(backend, blobs, args.concurrency)
    await backend.stop()
    n = len(events)
    return {"backend": name, "records": n, "uploads": uploads,
            "uploads_per_1000_records": round(uploads / n * 1000, 2),
            "sequential_records_per_s": round(n / seq_s, 1),
            "concurrent_records_per_s": round(n / con_s, 1),
            "bare_upload_records_per_s": round(n / bare_s, 1),
            "concurrent_vs_sequential": round(seq_s / con_s, 2),
            "pipeline_vs_bare_backend": round(bare_s / con_s, 3)}


def kubo_ctl(action: str, data_dir: str) -> None:
    env = {**os.environ, "KUBO_API_PORT": str(KUBO_PORT), "KUBO_GATEWAY_PORT": str(KUBO_PORT + 3079),
           "KUBO_SWARM_PORT": str(KUBO_PORT - 1000), "KUBO_DATA_DIR": data_dir}
    subprocess.run([str(ROOT / "deploy" / "kubo.sh"), action], check=True, env=env, stdout=sys.stderr)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=10_000)
    parser.add_argument("--users", type=int, default=100)
    parser.add_argument("--buffer", type=int, default=100)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--no-kubo", action="store_true")
    args = parser.parse_args()
    await migrate(DSN)
    db = Database(DSN)
    await db.start()
    run = uuid.uuid4().hex[:8]
    events = make_events(args.records, args.users, run)
    batches = batches_of(events, args.buffer)
    plaintexts = [b.plaintext() for b in batches]
    blobs = [seal(KEYRING, pt, user_id=b.user_id, count=len(b.records), batch_id=os.urandom(32))
             for b, pt in zip(batches, plaintexts)]
    results: dict[str, Any] = {"run": run, "args": vars(args), "crypto": crypto_rates(plaintexts), "backends": []}
    with tempfile.TemporaryDirectory(prefix="bench-archive-") as tmp:
        results["backends"].append(await measure("local", LocalBackend(Path(tmp) / "archive"), db, events,
                                                 blobs, args))
        if not args.no_kubo:
            kubo_dir = str(Path(tmp) / "kubo")
            kubo_ctl("start", kubo_dir)
            try:
                results["backends"].append(await measure("kubo", kubo(f"http://127.0.0.1:{KUBO_PORT}"), db, events,
                                                         blobs, args))
            finally:
                kubo_ctl("stop", kubo_dir)
    await db.stop()
    out = ROOT / "bench" / "results" / f"archive-{time.strftime('%Y%m%dT%H%M%S')}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(serde.dumps(results).decode())
    print(serde.dumps(results).decode())
    print(f"written to {out}", file=sys.stderr)


if __name__ == "__main__":
    asyncio.run(main())
