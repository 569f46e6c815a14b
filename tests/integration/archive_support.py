"""Helpers for the archive integration tests: produce records straight to the topic (as services do),
read back every successful batch and decrypt it, and run a private kubo node."""
from __future__ import annotations

import os
import subprocess
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import asyncpg

from ingestflow.app.archive.base import ArchiveBackend
from ingestflow.app.archive.crypto import Keyring, open_envelope
from ingestflow.app.clients.kafka import OutgoingMessage, Producer
from ingestflow.app.core import serde
from ingestflow.app.core.errors import NotFound
from ingestflow.schemas.records import WebsiteRecord
from ingestflow.schemas.topics import RECORDS

from ..conftest import BASE_ENV, plaintext_kafka

ROOT = Path(__file__).resolve().parents[2]
KEYRING = Keyring(BASE_ENV["LIGHTHOUSE_PRIVATE_KEY"])


async def produce_records(user_ids: list[int], per_user: int, tag: str, bootstrap: str | None = None) -> list[str]:
    """Sends `per_user` records for each user, acknowledged by Kafka; returns their website_uids."""
    producer = Producer(plaintext_kafka(bootstrap or BASE_ENV["KAFKA_BOOTSTRAP_SERVERS"]))
    uids: list[str] = []
    messages = []
    for i in range(per_user):
        for user in user_ids:
            record = WebsiteRecord(user, f"{tag}-{user}-{i}", {"title": f"page {i}", "n": i}, f"ctx {i}")
            messages.append(OutgoingMessage(RECORDS.name, record.key, record.encode()))
            uids.append(record.wuid)
    await producer.start()
    try:
        await producer.send_many(messages)
    finally:
        await producer.stop()
    return uids


async def success_rows(pg: asyncpg.Connection, user_ids: list[int], backend: ArchiveBackend) -> list[asyncpg.Record]:
    """The success rows of batches stored in `backend`. Every worker runs the archive agent and a new app id
    reads the topic from the start, so workers of other tests (other app ids, other archives) archive these
    users too, under their own batch ids: only the objects in this test's backend are this test's."""
    rows = await pg.fetch("SELECT user_id, lighthouse_hash, entries_transferred, batch_id FROM transfer_logs"
                          " WHERE user_id = ANY($1::bigint[]) AND status = 'success' ORDER BY id", user_ids)
    mine = []
    for row in rows:
        try:
            await backend.get(row["lighthouse_hash"])
        except NotFound:
            continue
        mine.append(row)
    return mine


async def archived_uids(backend: ArchiveBackend, rows: list[Any]) -> Counter[str]:
    """Every website_uid in every successful batch, decrypted and checked against its log row."""
    seen: Counter[str] = Counter()
    for row in rows:
        header, plain = open_envelope(KEYRING, await backend.get(row["lighthouse_hash"]), user_id=row["user_id"])
        content = serde.loads(plain)
        assert header.batch_id.hex() == row["batch_id"]
        assert header.count == row["entries_transferred"] == len(content[0]["data"])
        seen.update(r["website_uid"] for r in content[0]["data"])
    return seen


def unique_user_ids(n: int) -> list[int]:
    base = uuid.uuid4().int % 10**12 * 100
    return [base + i for i in range(n)]


class Kubo:
    """A private kubo node (own ports and repository) driven through deploy/kubo.sh."""

    def __init__(self, api_port: int, data_dir: Path) -> None:
        self.api_port = api_port
        self.env = {**os.environ, "KUBO_API_PORT": str(api_port), "KUBO_GATEWAY_PORT": str(api_port + 3079),
                    "KUBO_SWARM_PORT": str(api_port - 1000), "KUBO_DATA_DIR": str(data_dir)}

    @property
    def url(self) -> str:
        return f"ipfs://127.0.0.1:{self.api_port}"

    def _run(self, action: str) -> None:
        subprocess.run([str(ROOT / "deploy" / "kubo.sh"), action], check=True, env=self.env)

    def start(self) -> None:
        self._run("start")

    def stop(self) -> None:
        self._run("stop")
