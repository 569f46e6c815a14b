"""RocksDB table storage that holds only committed state, the changelog offset that state reflects, and an
index of windowed keys by window end, in a memory budget that does not grow with the keys held.

Faust's RocksDB store writes every table change straight to RocksDB, while under exactly-once the change
is committed to Kafka only with the next transaction: after a crash the local store holds changes whose
changelog records were aborted, and the store never records the changelog offset it reflects (Faust saves
it under the changelog partition and looks it up under the source partition), so every restart replays
whole changelogs. Here a transaction's writes wait in memory (`pending`, one commit interval's worth) and
reach RocksDB in one write batch together with the changelog offset, after Kafka committed them; a crash
loses only uncommitted writes, and recovery reads the changelog from the saved offset on. The offset is saved
under its changelog's name, so a store left in TABLE_DIR by another app id is rebuilt, not taken as this
one's.

Windowed keys (`[key, [start, end]]` in JSON, byte-identical to Faust's changelog keys) are indexed in a
second column family by window end, so expiry finds the keys of a closed window with a range scan instead
of the per-key heap and set Faust keeps in Python memory; keys restored from the changelog are indexed
the same way.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import logging
import struct
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import rocksdict
from faust.stores import rocksdb as faust_rocksdb
from faust.streams import current_event
from faust.types import TP
from faust.types.enums import ProcessingGuarantee

from ingestflow.app.core import serde
from ingestflow.app.core.observability import RESTORED_RECORDS

__all__ = ["RocksMemory", "StateStore", "index_key", "window_end", "limit_malloc_arenas"]

log = logging.getLogger(__name__)

INDEX_CF = "window-index"
LEGACY_OFFSET_KEY: bytes = faust_rocksdb.Store.offset_key
_END = struct.Struct(">d")  # non-negative doubles sort like their big-endian bytes


def index_key(end: float, key: bytes) -> bytes:
    return _END.pack(end) + key


def window_end(key: bytes) -> float:
    """The window end of a windowed table key as Faust serializes it: `["key",[start,end]]`."""
    return float(serde.loads(key)[1][1])


M_ARENA_MAX = -8  # glibc's mallopt parameter (malloc.h)


def limit_malloc_arenas(arenas: int = 2) -> bool:
    """Has glibc's malloc keep at most `arenas` arenas, as MALLOC_ARENA_MAX would; False where it is not glibc.

    RocksDB's flush and compaction threads allocate and free large blocks; glibc gives each thread an arena
    of its own (up to eight per core) and returns little of a fragmented arena, so a worker's RSS kept
    growing beside the RocksDB budget as its state grew. Called before those threads start."""
    libc = ctypes.util.find_library("c")
    if libc is None:
        return False
    mallopt = getattr(ctypes.CDLL(libc), "mallopt", None)
    return mallopt is not None and mallopt(M_ARENA_MAX, arenas) == 1


@dataclass
class RocksMemory:
    """One block cache and one memtable budget shared by every table partition of the process: RocksDB's
    memory stays within `budget_mb` whatever the number of keys and partitions."""

    budget_mb: int
    _cache: Any = field(default=None, init=False, repr=False)
    _buffers: Any = field(default=None, init=False, repr=False)

    def options(self) -> rocksdict.Options:
        if self._cache is None:
            budget = self.budget_mb * 1024 * 1024
            self._cache = rocksdict.Cache(budget)
            # Memtables are charged to the same cache, so the cache's capacity bounds both.
            self._buffers = rocksdict.WriteBufferManager.new_write_buffer_manager_with_cache(
                budget // 2, False, self._cache)
        table = rocksdict.BlockBasedOptions()
        table.set_block_cache(self._cache)
        table.set_bloom_filter(10, False)
        # Index and filter blocks live in the budget too, partitioned: a lookup loads the 4 KiB pieces it
        # needs. Whole, a large file's filter is a megabyte that the cache evicts under a budget full of
        # memtables and reads back (and checksums) for nearly every lookup: a worker holding 7 million ids
        # slowed from 35,000 lookups a second to 6,000.
        table.set_cache_index_and_filter_blocks(True)
        table.set_index_type(rocksdict.BlockBasedIndexType.two_level_index_search())
        table.set_partition_filters(True)
        table.set_metadata_block_size(4096)
        table.set_pin_top_level_index_and_filter(True)
        table.set_pin_l0_filter_and_index_blocks_in_cache(True)
        opts = rocksdict.Options(raw_mode=True)
        opts.create_if_missing(True)
        opts.create_missing_column_families(True)
        opts.set_write_buffer_size(8 * 1024 * 1024)
        opts.set_max_write_buffer_number(2)
        opts.set_write_buffer_manager(self._buffers)
        opts.set_block_based_table_factory(table)
        return opts

    def used_bytes(self) -> int:
        """What RocksDB holds of the budget now: cached blocks and memtables (charged to the same cache)."""
        return 0 if self._cache is None else int(self._cache.get_usage())

    def open(self, path: Path) -> rocksdict.Rdict:
        opts = self.options()
        return rocksdict.Rdict(str(path), options=opts, column_families={INDEX_CF: self.options()})


class StateStore(faust_rocksdb.Store):
    """Faust's RocksDB store with committed-only state; see the module docstring."""

    def __init__(self, *args: Any, memory: RocksMemory, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.memory = memory
        self._windowed = self.table.window is not None
        conf: Any = self.app.conf
        self._transactional = conf.processing_guarantee == ProcessingGuarantee.EXACTLY_ONCE
        self._indexes: dict[int, tuple[Any, Any]] = {}  # partition -> (index column family, its handle)
        self._pending: dict[int, dict[bytes, bytes | None]] = {}  # partition -> key -> value, None deletes
        self._pending_index: dict[int, dict[bytes, bool]] = {}  # partition -> index key -> put (or delete)
        self._unsent: dict[int, dict[bytes, bytes | None]] = {}  # what of `_pending` the changelog has not had yet
        self._sent: dict[int, int] = {}  # partition -> highest changelog offset sent since the last commit
        # The saved offset is keyed by its changelog: a store another WORKER_APP_ID left in TABLE_DIR (another
        # group, other changelogs) has no offset of this one, so it is rebuilt rather than trusted. Faust's one
        # key made a new app id crash on the old offset (ConsistencyError), or take the old state as its own.
        self.offset_key = LEGACY_OFFSET_KEY + self.table.changelog_topic.get_topic_name().encode()

    # --- opening and closing partitions ---------------------------------------------------------------

    def _open_for_partition(self, partition: int) -> Any:
        path = self.partition_path(partition)
        db = self.memory.open(path)
        legacy = db.get(LEGACY_OFFSET_KEY)
        if legacy is not None and db.get(self.offset_key) is None:  # saved under Faust's key: taken as ours
            db[self.offset_key] = legacy
            del db[LEGACY_OFFSET_KEY]
        if db.get(self.offset_key) is None and _has_data(db):
            # Written by a version that kept no committed offset, never committed, or another app id's: of
            # unknown provenance under exactly-once, so rebuilt from the changelog instead of trusted.
            log.warning("table %s partition %d: local state without a committed changelog offset; rebuilding "
                        "it from the changelog", self.table_name, partition)
            db.close()
            del db
            rocksdict.Rdict.destroy(str(path), self.memory.options())
            db = self.memory.open(path)
        self._indexes[partition] = (db.get_column_family(INDEX_CF), db.get_column_family_handle(INDEX_CF))
        return db

    def revoke_partitions(self, table: Any, tps: set[Any]) -> None:
        """Faust's, which lets go of the revoked partitions' databases and collects garbage so that RocksDB's
        lock goes with them: only when a partition open here is revoked (every store of every rebalance
        collected garbage, a fifth of a second of each start)."""
        mine = {tp for tp in tps if tp.topic in table.changelog_topic.topics}
        for tp in mine:
            self.discard(tp.partition)
            self._indexes.pop(tp.partition, None)
        if any(tp.partition in self._dbs for tp in mine):
            super().revoke_partitions(table, mine)

    async def stop(self) -> None:
        self._indexes.clear()
        self._pending.clear()
        self._pending_index.clear()
        self._unsent.clear()
        await super().stop()

    # --- transactions ---------------------------------------------------------------------------------

    @property
    def transactional(self) -> bool:
        return bool(self._transactional)

    def take_unsent(self, partition: int) -> dict[bytes, bytes | None]:
        """The partition's writes not yet handed to its changelog, the last value per key (None deletes),
        now handed over (app/worker/changelog_batches.py sends them in the partition's transaction)."""
        return self._unsent.pop(partition, {})

    def unsent_partitions(self) -> list[int]:
        return list(self._unsent)

    def note_sent(self, partition: int, offset: int) -> None:
        """A changelog record of this table reached Kafka at `offset` (in the open transaction)."""
        if self._transactional:
            self._sent[partition] = max(offset, self._sent.get(partition, -1))
        else:
            self.set_persisted_offset(self._tp(partition), offset)

    def commit(self, partition: int) -> None:
        """Kafka committed the partition's transaction: its writes and changelog offset go to RocksDB as
        one write batch. An offset lower than the true one only makes a later recovery read more."""
        pending = self._pending.pop(partition, None)
        index = self._pending_index.pop(partition, None)
        sent = self._sent.pop(partition, None)
        if not pending and not index and sent is None:
            return
        db = self._db_for_partition(partition)
        batch = rocksdict.WriteBatch(raw_mode=True)
        for key, value in (pending or {}).items():
            if value is None:
                batch.delete(key)
            else:
                batch.put(key, value)
        self._write_index(batch, partition, index or {})
        if sent is not None:
            # The transaction's commit marker follows its last record here (one producer writes this changelog
            # partition), so the store reflects the log up to the marker. Saving the record's offset left one
            # offset with no record to read before the log's end, and every restart's recovery waited for it
            # until Faust's aborted-transaction check gave up: ten seconds.
            persisted = self.persisted_offset(self._tp(partition))
            batch.put(self.offset_key, str(max(sent + 1, -1 if persisted is None else persisted)).encode())
        db.write(batch)

    def _tp(self, partition: int) -> TP:
        return TP(self.table.changelog_topic.get_topic_name(), partition)

    def discard(self, partition: int) -> None:
        """The partition's transaction is gone (revoked, fenced): its writes never happened."""
        self._pending.pop(partition, None)
        self._pending_index.pop(partition, None)
        self._unsent.pop(partition, None)
        self._sent.pop(partition, None)

    def _index(self, partition: int) -> tuple[Any, Any]:
        """The partition's index column family and its handle (opening the partition when needed)."""
        self._db_for_partition(partition)
        return self._indexes[partition]

    def _write_index(self, batch: Any, partition: int, index: dict[bytes, bool]) -> None:
        if index:
            handle = self._index(partition)[1]
            for ikey, put in index.items():
                if put:
                    batch.put(ikey, b"", handle)
                else:
                    batch.delete(ikey, handle)

    # --- reads and writes -----------------------------------------------------------------------------

    def __setitem__(self, key: Any, value: Any) -> None:
        self._write(key, self._encode_key(key), self._encode_value(value))

    def __delitem__(self, key: Any) -> None:
        self._write(key, self._encode_key(key), None)

    def _write(self, key: Any, raw: bytes, value: bytes | None) -> None:
        partition = self._event_partition()
        if partition is None:
            raise RuntimeError(f"table {self.table_name}: written outside of a stream event")
        self._key_index[raw] = partition
        self.put_bytes(partition, raw, value, key[1][1] if self._windowed else None)

    def put_bytes(self, partition: int, key: bytes, value: bytes | None, window_end: float | None = None) -> None:
        """Writes (None: deletes) a serialized key of the partition, within its open transaction; a windowed
        table's key is indexed under its window's end."""
        # Held until the commit, so copied to their own size: orjson (Faust's serializer and ours) returns
        # bytes in a buffer of 4 KiB or more, which kept the worker at about 1 GB during a backlog.
        key = _right_sized(key)
        if value is not None:
            value = _right_sized(value)
        self._pending.setdefault(partition, {})[key] = value
        if window_end is not None:
            self._pending_index.setdefault(partition, {})[index_key(window_end, key)] = value is not None
        if self._transactional:
            self._unsent.setdefault(partition, {})[key] = value
        else:
            self.commit(partition)

    def get_bytes(self, partition: int, key: bytes) -> bytes | None:
        """The value of a serialized key of the partition, as this partition's open transaction sees it."""
        pending = self._pending.get(partition)
        if pending is not None and key in pending:
            return pending[key]
        value: bytes | None = self._db_for_partition(partition).get(key)
        return value

    def _set(self, key: bytes, value: bytes | None) -> None:
        self._write(serde.loads(key) if self._windowed else None, key, value)

    def _del(self, key: bytes) -> None:
        self._write(serde.loads(key) if self._windowed else None, key, None)

    def _event_partition(self) -> int | None:
        event = current_event()
        return None if event is None else int(event.message.partition)

    def _get(self, key: bytes) -> bytes | None:
        partition = self._event_partition()
        if partition is not None:
            value = self.get_bytes(partition, key)
            if value is not None:
                self._key_index[key] = partition
            return value
        for pending in self._pending.values():
            if key in pending:
                return pending[key]
        return super()._get(key)

    def _contains(self, key: bytes) -> bool:
        return self._get(key) is not None

    def _iteritems(self) -> Iterator[tuple[bytes, bytes]]:
        actives = {id(db) for db in self._dbs_for_actives()}
        for partition, db in list(self._dbs.items()):
            if id(db) not in actives:
                continue
            pending = self._pending.get(partition, {})
            for key, value in self._visible_items(db):
                if key not in pending:
                    yield key, value
            for key, maybe in list(pending.items()):
                if maybe is not None:
                    yield key, maybe

    def _iterkeys(self) -> Iterator[bytes]:
        for key, _ in self._iteritems():
            yield key

    def _itervalues(self) -> Iterator[bytes]:
        for _, value in self._iteritems():
            yield value

    def _size(self) -> int:
        return sum(1 for _ in self._iteritems())

    def estimated_keys(self) -> int:
        """Keys held by the active partitions, from RocksDB's own estimate (no scan)."""
        return sum(max(0, int(db.property_int_value("rocksdb.estimate-num-keys") or 0) - 1)
                   for db in self._dbs_for_actives())

    # --- recovery -------------------------------------------------------------------------------------

    def apply_changelog_batch(self, batch: Iterable[Any], to_key: Callable[[Any], Any],
                              to_value: Callable[[Any], Any]) -> None:
        """Restored changelog records and their offset, per partition in one write batch; windowed keys
        are indexed like the ones this worker writes."""
        writes: dict[int, Any] = {}
        offsets: dict[int, int] = {}
        restored = 0
        for event in batch:
            message = event.message
            partition, key, value = message.partition, message.key, message.value
            wb = writes.get(partition)
            if wb is None:
                wb = writes[partition] = rocksdict.WriteBatch(raw_mode=True)
            if value is None:
                wb.delete(key)
            else:
                wb.put(key, value)
            if self._windowed:
                self._write_index(wb, partition, {index_key(window_end(key), key): value is not None})
            offsets[partition] = max(message.offset, offsets.get(partition, -1))
            restored += 1
        for partition, wb in writes.items():
            wb.put(self.offset_key, str(offsets[partition]).encode())
            self._db_for_partition(partition).write(wb)
        if restored:
            RESTORED_RECORDS.labels(table=self.table_name).inc(restored)

    # --- expiry ---------------------------------------------------------------------------------------

    def expired(self, partition: int, stale: Callable[[float], bool], limit: int) -> list[tuple[bytes, bytes]]:
        """Up to `limit` (index key, key) pairs of windows `stale` says are closed, oldest first."""
        already = self._pending_index.get(partition, {})
        found: list[tuple[bytes, bytes]] = []
        it = self._index(partition)[0].iter()
        it.seek_to_first()
        while it.valid() and len(found) < limit:
            ikey = it.key()
            if not stale(_END.unpack_from(ikey)[0]):
                break
            if already.get(ikey, True):
                found.append((ikey, ikey[_END.size:]))
            it.next()
        del it
        return found

    def forget(self, partition: int, entries: Iterable[tuple[bytes, bytes]]) -> None:
        """Deletes expired keys and their index entries with the partition's open transaction."""
        pending = self._pending.setdefault(partition, {})
        index = self._pending_index.setdefault(partition, {})
        unsent = self._unsent.setdefault(partition, {}) if self._transactional else {}
        for ikey, key in entries:
            pending[key] = unsent[key] = None
            index[ikey] = False


def _right_sized(data: bytes) -> bytes:
    return b"".join((data, b""))  # a join of two always copies (a lone bytes object would come back as is)


def _has_data(db: Any) -> bool:
    it = db.iter()
    it.seek_to_first()
    found = bool(it.valid())
    del it
    return found

