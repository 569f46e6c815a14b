"""A changelog the consumer's metadata does not know yet: the check fails (nothing written) and asks the
group's consumer to refresh its metadata at once instead of waiting out the metadata max age."""
from __future__ import annotations

import asyncio
from typing import Any

import pytest
from faust.exceptions import PartitionsMismatch

from ingestflow.app.worker.partitions import check_changelogs


class Table:
    def __init__(self, known: bool) -> None:
        self.known = known

    def _verify_source_topic_partitions(self, topic: str) -> None:
        if not self.known:
            raise PartitionsMismatch(f"changelog of {topic} has 0 partitions")


class ConsumerThread:
    """Faust's consumer thread as the check uses it: calls run on its loop; the aiokafka client it owns."""

    def __init__(self) -> None:
        self.refreshes = 0
        self.calls_in_thread = 0

    async def call_thread(self, fun: Any) -> Any:
        self.calls_in_thread += 1
        return await fun()

    def _ensure_consumer(self) -> Any:
        thread = self

        class Client:
            def force_metadata_update(self) -> asyncio.Future[bool]:
                thread.refreshes += 1
                future = asyncio.get_running_loop().create_future()
                future.set_result(True)
                return future

        class Consumer:
            _client = Client()
        return Consumer()


class App:
    def __init__(self) -> None:
        self.consumer = type("Consumer", (), {})()
        self.consumer._thread = ConsumerThread()


def test_an_unknown_changelog_fails_the_check_and_refreshes_the_metadata_in_the_consumer_thread() -> None:
    app = App()
    with pytest.raises(PartitionsMismatch):
        asyncio.run(check_changelogs(app, [Table(known=True), Table(known=False)], ["events"]))
    assert app.consumer._thread.refreshes == 1 and app.consumer._thread.calls_in_thread == 1


def test_known_changelogs_pass_without_a_metadata_request() -> None:
    app = App()
    asyncio.run(check_changelogs(app, [Table(known=True)], ["events", "rules"]))
    assert app.consumer._thread.refreshes == 0
