"""The class of every worker table: Faust's Table on the committed-only `StateStore`, with window expiry
that deletes a closed window's keys from the store and writes their tombstones to the changelog.

Faust's windowed table pushes a heap entry and adds the key to a Python set on every write, keeps them
until the window expires, deletes expired keys only from the local store (the changelog keeps every key
ever written) and never tracks keys restored from the changelog. Here writes keep nothing in Python
memory (the store indexes windowed keys in RocksDB), and expiry runs in the partition's transaction
(app/worker/commit_gate.py), so a key leaves the store exactly when its tombstone is committed.
"""
from __future__ import annotations

import time
from typing import Any, cast

import faust

from ingestflow.app.core import serde

from .state_store import RocksMemory, StateStore

__all__ = ["state_table", "stores_of_group", "expire_partition", "EXPIRE_BATCH"]

EXPIRE_BATCH = 10_000  # expired keys per table, partition and commit: a commit stays short


def state_table(memory: RocksMemory) -> type[faust.Table[Any, Any]]:
    """The app's Table class (faust.App(Table=...)); every store shares `memory`."""

    class StateTable(faust.Table[Any, Any]):
        _state: StateStore | None = None

        @property
        def store(self) -> StateStore:
            state = self._state
            return state if state is not None else cast(StateStore, self.data)  # Faust makes it on first use

        def _new_store_by_url(self, url: Any) -> StateStore:
            self._state = StateStore(url, self.app, self, table_name=self.name, key_type=self.key_type,
                                     key_serializer=self.key_serializer, value_serializer=self.value_serializer,
                                     value_type=self.value_type, loop=self.loop, options=self.options, memory=memory)
            return self._state

        def on_key_set(self, key: Any, value: Any) -> None:
            if not self.store.transactional:  # else sent with the commit (app/worker/changelog_batches.py)
                self.send_changelog(self.partition_for_key(key), key, value)
            self._sensor_on_set(self, key, value)

        def on_key_del(self, key: Any) -> None:
            if not self.store.transactional:
                self.send_changelog(self.partition_for_key(key), key, value=None, value_serializer="raw")
            self._sensor_on_del(self, key)

        # --- by partition, without a current event: what an agent on a chunked topic uses -------------

        def get_at(self, partition: int, key: Any, ts: float | None = None) -> Any:
            """The value of `key` on `partition` (in the window holding `ts`, for a windowed table), None when
            absent. Keys and values are the bytes Faust's own reads and writes use."""
            window = self.window
            if window is None:
                raw = self.store.get_bytes(partition, serde.dumps(key))
            else:
                assert ts is not None, f"table {self.name} is windowed: a read needs its timestamp"
                raw = self.store.get_bytes(partition, serde.dumps((key, window.current(ts))))
            return None if raw is None else serde.loads(raw)

        def set_at(self, partition: int, key: Any, value: Any, ts: float | None = None) -> None:
            """Sets `key` on `partition` (in every window of `ts`, for a windowed table)."""
            self._put_at(partition, key, serde.dumps(value), ts)

        def del_at(self, partition: int, key: Any, ts: float | None = None) -> None:
            self._put_at(partition, key, None, ts)

        def _put_at(self, partition: int, key: Any, value: bytes | None, ts: float | None) -> None:
            """Faust's serialized keys: `"key"`, or `["key",[start,end]]` for each window of `ts`."""
            store, window = self.store, self.window
            if window is None:
                self._put_bytes(store, partition, serde.dumps(key), value, None)
                return
            assert ts is not None, f"table {self.name} is windowed: a write needs its timestamp"
            for window_range in window.ranges(ts):
                self._put_bytes(store, partition, serde.dumps((key, window_range)), value, window_range[1])

        def _put_bytes(self, store: StateStore, partition: int, raw: bytes, value: bytes | None,
                       window_end: float | None) -> None:
            store.put_bytes(partition, raw, value, window_end)
            if not store.transactional:
                self.send_changelog(partition, raw, value, key_serializer="raw", value_serializer="raw")

        def _on_changelog_sent(self, fut: Any) -> None:
            res = fut.result()
            self.store.note_sent(res.topic_partition.partition, res.offset)

        async def _del_old_keys(self) -> None:
            """Expiry runs in the partitions' transactions instead (`expire_partition`)."""

        def expire(self, partition: int, now: float, limit: int = EXPIRE_BATCH) -> int:
            """Tombstones and store deletes for up to `limit` keys of closed windows; returns how many."""
            entries = self._expired(partition, now, limit)
            if not self.store.transactional:
                for _, key in entries:
                    self.send_changelog(partition, key, None, key_serializer="raw", value_serializer="raw")
            self.store.forget(partition, entries)
            return len(entries)

        def has_expired(self, partition: int) -> bool:
            return bool(self._expired(partition, time.time(), 1))

        def _expired(self, partition: int, now: float, limit: int) -> list[tuple[bytes, bytes]]:
            window = self.window
            if window is None or window.expires is None:
                return []
            return list(self.store.expired(partition, lambda end: bool(window.stale(end, now)), limit))

    return StateTable


def stores_of_group(app: Any, group: int) -> list[Any]:
    """The tables whose changelog commits with transactions of this topic group."""
    assignor = app.assignor
    found = []
    for table in app.tables.values():
        if isinstance(table.data, StateStore):
            try:
                if assignor.group_for_topic(table.changelog_topic.get_topic_name()) == group:
                    found.append(table)
            except KeyError:  # not assigned to this worker
                continue
    return found


def expire_partition(tables: list[Any], partition: int, now: float | None = None) -> int:
    """Expiry of one partition's closed windows in every table given; returns the keys expired."""
    when = time.time() if now is None else now
    return sum(table.expire(partition, when) for table in tables)
