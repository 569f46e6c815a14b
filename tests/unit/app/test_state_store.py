"""The committed-only table store on a real RocksDB: writes wait for their transaction's commit, the commit
saves the changelog offset with them, windowed keys (written or restored) are found by window end for
expiry, and a store with no saved offset is rebuilt rather than trusted."""
from __future__ import annotations

import gc
import subprocess
import sys
import tracemalloc
import weakref
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import faust
import pytest
import rocksdict
from faust.streams import _current_event

from ingestflow.app.core import serde
from ingestflow.app.worker.state_store import LEGACY_OFFSET_KEY, RocksMemory, StateStore
from ingestflow.app.worker.state_table import state_table

DAY = 86400.0


@pytest.fixture
def app(tmp_path: Path) -> faust.App:
    return faust.App("state-store-test", store="rocksdb://", datadir=str(tmp_path), autodiscover=False,
                     processing_guarantee="exactly_once", Table=state_table(RocksMemory(32)))


def windowed(app: faust.App, name: str = "seen") -> Any:
    table = app.Table(name, default=float, partitions=2, key_type=str)
    return table.tumbling(DAY, expires=2 * DAY)


class Event:
    def __init__(self, partition: int, offset: int = 0) -> None:
        self.message = SimpleNamespace(partition=partition, key=None, value=None, offset=offset)


@pytest.fixture
def on_partition() -> Iterator[Any]:
    held: list[Event] = []

    def set_event(partition: int) -> None:
        held.append(Event(partition))
        _current_event.set(weakref.ref(held[-1]))
    yield set_event
    _current_event.set(None)


def key(name: str, day: int) -> tuple[str, tuple[float, float]]:
    start = day * DAY
    return name, (start, start + DAY - 0.1)


def committed_keys(store: StateStore, partition: int) -> set[bytes]:
    db = store._db_for_partition(partition)
    return {k for k, _ in store._visible_items(db)}


def test_writes_reach_rocksdb_with_their_changelog_offset_only_when_committed(app: faust.App, on_partition: Any) -> None:
    store = windowed(app).table.data
    on_partition(1)
    store[key("a", 0)] = 5.0
    assert store[key("a", 0)] == 5.0  # read back before the commit
    assert committed_keys(store, 1) == set()
    store.note_sent(1, 41)
    store.commit(1)
    assert committed_keys(store, 1) == {b'["a",[0.0,86399.9]]'}
    assert store.persisted_offset(store._tp(1)) == 42  # the commit marker after the record at 41
    store[key("b", 0)] = 1.0
    store.discard(1)  # its transaction was aborted
    assert key("b", 0) not in store
    assert committed_keys(store, 1) == {b'["a",[0.0,86399.9]]'}


def test_keys_of_closed_windows_are_found_oldest_first_and_deleted_with_the_commit(
        app: faust.App, on_partition: Any) -> None:
    store = windowed(app).table.data
    on_partition(0)
    for day in (3, 1, 2):
        store[key(f"k{day}", day)] = float(day)
    store.commit(0)
    closed = store.expired(0, lambda end: end < 3 * DAY, limit=10)
    assert [k for _, k in closed] == [b'["k1",[86400.0,172799.9]]', b'["k2",[172800.0,259199.9]]']
    assert len(store.expired(0, lambda end: end < 3 * DAY, limit=1)) == 1
    store.forget(0, closed)
    assert store.expired(0, lambda end: end < 3 * DAY, limit=10) == []  # already on their way out
    store.commit(0)
    assert committed_keys(store, 0) == {b'["k3",[259200.0,345599.9]]'}
    assert store.expired(0, lambda end: True, limit=10)[0][1] == b'["k3",[259200.0,345599.9]]'


def test_restored_keys_are_indexed_for_expiry_and_tombstones_remove_them(app: faust.App) -> None:
    store = windowed(app).table.data
    records = [(b'["r",[0.0,86399.9]]', serde.dumps(1.0)), (b'["s",[0.0,86399.9]]', serde.dumps(2.0)),
               (b'["s",[0.0,86399.9]]', None)]
    events = [SimpleNamespace(message=SimpleNamespace(partition=0, key=k, value=v, offset=i))
              for i, (k, v) in enumerate(records)]
    store.apply_changelog_batch(events, lambda k: k, lambda v: v)
    assert committed_keys(store, 0) == {b'["r",[0.0,86399.9]]'}
    assert store.persisted_offset(store._tp(0)) == 2
    assert [k for _, k in store.expired(0, lambda end: True, limit=10)] == [b'["r",[0.0,86399.9]]']


def test_a_store_without_a_saved_offset_is_emptied_on_open(app: faust.App, tmp_path: Path) -> None:
    store = windowed(app).table.data
    path = store.partition_path(0)
    legacy = rocksdict.Rdict(str(path), options=rocksdict.Options(raw_mode=True))
    legacy[b'["old",[0.0,86399.9]]'] = serde.dumps(1.0)
    legacy.close()
    del legacy
    assert committed_keys(store, 0) == set()


def test_reads_and_writes_by_partition_use_fausts_own_keys_and_values(app: faust.App, on_partition: Any) -> None:
    """What an agent on a chunked topic writes with set_at is what Faust's table API reads back, under the
    same key bytes (the changelog's), and the other way round."""
    seen = windowed(app)
    table = seen.table
    plain = app.Table("catalog", default=None, partitions=2, key_type=str)
    ts = 3 * DAY + 5.0  # inside day 3's window
    table.set_at(1, "r\x1fk", ts, ts)
    plain.set_at(1, "r", {"authorId": "a", "n": [1, 2.5]})
    store = table.data
    assert store.take_unsent(1) == {b'["r\\u001fk",[259200.0,345599.9]]': b"259205.0"}  # the changelog's record
    assert plain.data.take_unsent(1) == {b'"r"': b'{"authorId":"a","n":[1,2.5]}'}
    on_partition(1)
    assert store[("r\x1fk", (3 * DAY, 4 * DAY - 0.1))] == ts  # Faust's read of the same key
    assert plain["r"] == {"authorId": "a", "n": [1, 2.5]}
    store[("s", (3 * DAY, 4 * DAY - 0.1))] = 7.0  # Faust's write, read back by partition
    assert table.get_at(1, "s", ts) == 7.0
    assert table.get_at(1, "s", ts - DAY) is None  # the previous day's window
    assert table.get_at(0, "s", ts) is None  # another partition
    plain.del_at(1, "r")
    assert plain.get_at(1, "r") is None
    store.commit(1)  # the window index follows writes by partition too
    assert [k for _, k in store.expired(1, lambda end: True, limit=10)] == [
        b'["r\\u001fk",[259200.0,345599.9]]', b'["s",[259200.0,345599.9]]']


def test_pending_writes_hold_their_own_size_not_orjsons_buffers(app: faust.App) -> None:
    """orjson returns small bytes in 4 KiB buffers; a store holding a commit interval's writes in those kept a
    worker at about 1 GB during a backlog."""
    table = windowed(app).table
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for i in range(5000):
            table.set_at(0, f"rule\x1fevent-{i}", float(i), 3 * DAY)
        per_write = (tracemalloc.get_traced_memory()[0] - before) / 5000
    finally:
        tracemalloc.stop()
    assert per_write < 1024, f"{per_write:.0f} bytes held per pending write"


def close(store: StateStore) -> None:
    """Lets go of the store's partition 0, so that another store can open it."""
    store._indexes.clear()
    db = store._dbs.pop(0)
    db.close()
    del db
    gc.collect()


def test_a_store_left_by_another_app_id_is_rebuilt_and_a_faust_offset_is_kept_as_ours(tmp_path: Path) -> None:
    """A new WORKER_APP_ID on the same TABLE_DIR (a new group with new changelogs, as docs/scaling.md grows a
    deployment) found the old app's offset: its recovery crashed on it (ConsistencyError), or took the old
    state as its own."""
    def store_of(app_id: str) -> StateStore:
        app = faust.App(app_id, store="rocksdb://", datadir=str(tmp_path), autodiscover=False,
                        processing_guarantee="exactly_once", Table=state_table(RocksMemory(32)))
        return windowed(app).table.data

    old = store_of("old")
    old.put_bytes(0, b'["k",[0.0,86399.9]]', b"1.0", 86399.9)
    old.note_sent(0, 41)
    old.commit(0)
    assert old.persisted_offset(old._tp(0)) == 42
    path = old.partition_path(0)
    close(old)

    new = store_of("new")
    assert new.persisted_offset(new._tp(0)) is None and committed_keys(new, 0) == set()
    close(new)

    legacy = rocksdict.Rdict(str(path), options=RocksMemory(32).options(),
                             column_families={"window-index": RocksMemory(32).options()})
    legacy[b'["k",[0.0,86399.9]]'] = b"1.0"
    legacy[LEGACY_OFFSET_KEY] = b"7"  # an offset saved by Faust's own key
    legacy.close()
    del legacy
    reopened = store_of("new")
    assert reopened.persisted_offset(reopened._tp(0)) == 7
    assert committed_keys(reopened, 0) == {b'["k",[0.0,86399.9]]'}


def test_the_tables_memory_stays_within_the_budget_as_their_keys_outgrow_it(tmp_path: Path) -> None:
    """TABLE_MEMORY_MB bounds the memtables and cached blocks of every store together, and the worker exports
    what they use (ingestflow_table_memory_bytes): 100 MB of keys and values written and read through a
    16 MB budget."""
    budget = 16 * 1024 * 1024
    memory = RocksMemory(16)
    app = faust.App("state-memory-test", store="rocksdb://", datadir=str(tmp_path), autodiscover=False,
                    processing_guarantee="exactly_once", Table=state_table(memory))
    table = windowed(app).table
    assert memory.used_bytes() == 0  # nothing opened yet
    value = "x" * 200
    used = []
    for batch in range(40):
        for partition in (0, 1):
            for i in range(5000):
                table.set_at(partition, f"rule\x1fevent-{batch}-{i}", value, 3 * DAY)
            table.data.note_sent(partition, batch)
            table.data.commit(partition)
            for i in range(0, 5000 * batch, 1 + 2 * batch):  # reads of older keys fill the block cache
                assert table.get_at(partition, f"rule\x1fevent-{i // 5000}-{i % 5000}", 3 * DAY) == value
        used.append(memory.used_bytes())
    shown = [round(u / 2**20, 1) for u in used]
    # Memtables being written are charged before a flush frees their predecessors: the use runs a little over
    # the budget, and stays there however many keys follow.
    assert 0 < min(used) and max(used) <= 1.25 * budget, shown
    assert max(used[20:]) <= 1.1 * max(used[:20]), shown


ARENAS_PROBE = """
import ctypes, ctypes.util, re, sys, tempfile, threading
from ingestflow.app.worker.state_store import limit_malloc_arenas
if sys.argv[1] == "limited":
    assert limit_malloc_arenas()
libc = ctypes.CDLL(ctypes.util.find_library("c"))
libc.malloc.restype = ctypes.c_void_p
libc.fopen.restype = ctypes.c_void_p
together = threading.Barrier(8)
def allocate():
    together.wait()
    held = [libc.malloc(1000) for _ in range(1000)]
    together.wait()
threads = [threading.Thread(target=allocate) for _ in range(8)]
for thread in threads: thread.start()
for thread in threads: thread.join()
path = tempfile.mktemp()
report = libc.fopen(path.encode(), b"w")
libc.malloc_info(0, ctypes.c_void_p(report))
libc.fclose(ctypes.c_void_p(report))
print(len(re.findall(r'<heap nr="[0-9]+">', open(path).read())))
"""


def test_the_worker_keeps_mallocs_arenas_few_whatever_its_threads() -> None:
    """Eight threads allocating at once (RocksDB's flushes and compactions, the consumer thread) get arenas
    of their own from glibc, which keeps their fragments: the worker limits them to two."""
    def arenas(mode: str) -> int:
        return int(subprocess.run([sys.executable, "-c", ARENAS_PROBE, mode], capture_output=True, text=True,
                                  check=True).stdout)
    assert arenas("default") > 2  # glibc's own choice, the baseline this test compares with
    assert arenas("limited") <= 2


def test_a_lookup_of_an_absent_key_reads_kilobytes_not_a_whole_filter(tmp_path: Path) -> None:
    """Every event's dedup lookup is of a key not there. With whole index and filter blocks, a large file's
    filter left a budget full of memtables, and each lookup read it back from the file and checksummed it:
    375 KB a lookup here, and a worker holding 7 million ids slowed from 35,000 lookups a second to 6,000."""
    memory = RocksMemory(4)
    app = faust.App("state-lookup-test", store="rocksdb://", datadir=str(tmp_path), autodiscover=False,
                    processing_guarantee="exactly_once", Table=state_table(memory))
    table = windowed(app).table
    for i in range(300_000):
        table.set_at(0, f"rule-{i % 2000}\x1fevent-{i}", 1.0, 3 * DAY)
        if i % 10_000 == 9_999:
            table.data.note_sent(0, i)
            table.data.commit(0)
    db = table.data._db_for_partition(0)
    db.flush()
    db.compact_range(None, None)  # one large file, as a worker's state becomes

    def bytes_read() -> int:  # by read syscalls, page cache hits included
        return int(next(line for line in Path("/proc/self/io").read_text().splitlines()
                        if line.startswith("rchar")).split()[1])
    before = bytes_read()
    for i in range(2000):
        assert table.get_at(0, f"rule-{i % 2000}\x1fabsent-{i}", 3 * DAY) is None
    per_lookup = (bytes_read() - before) / 2000
    assert per_lookup < 16 * 1024, f"{per_lookup:.0f} bytes read per lookup"
