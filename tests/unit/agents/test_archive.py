"""The archive agent's decisions, without a broker: where batches are cut, and that replays are no-ops."""
from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

from ingestflow.agents.archive import Entry, Processor, append, cut, is_stale
from ingestflow.agents.dead_letter import DeadLetters
from ingestflow.app.archive.sink import Batch, batch_id, plaintext
from ingestflow.app.core import serde
from ingestflow.schemas import records
from ingestflow.tables import archive_pending


@dataclass
class Message:
    partition: int
    offset: int
    timestamp: float = 1_700_000_000.0
    topic: str = "website-records"
    key: bytes | None = None
    value: bytes | None = None
    headers: tuple[tuple[str, bytes], ...] = ()


@dataclass
class Event:
    value: bytes
    message: Message


@dataclass
class Sink:
    batches: list[Batch] = field(default_factory=list)

    async def archive_many(self, batches: list[Batch]) -> list[str]:
        self.batches.extend(batches)
        return ["cid"] * len(batches)


@dataclass
class Topic:
    """Where DeadLetters sends: what a Faust topic's send returns is a future of the broker's ack."""

    sent: list[dict[str, Any]] = field(default_factory=list)

    async def send(self, **record: Any) -> asyncio.Future[None]:
        self.sent.append(record)
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        done.set_result(None)
        return done


def rec(user: int, wuid: str) -> bytes:
    return records.WebsiteRecord(user, wuid, {"k": wuid}, "ctx").encode()


class Seen(dict):  # type: ignore[type-arg]
    """`archive-seen` without windows: every fingerprint counts as within the retention."""

    def __getitem__(self, key: str) -> Any:
        value = self.get(key, "")
        return SimpleNamespace(value=lambda event: value, delta=lambda seconds, event: "")


def processor(table: dict[str, Any], buffer_size: int = 3, seen: Seen | None = None
              ) -> tuple[Processor, Sink, Topic]:
    sink, dl = Sink(), Topic()
    return Processor(table, Seen() if seen is None else seen, sink, buffer_size=buffer_size, retention_s=7 * 86400,
                     set_current=lambda e: None, dead_letters=DeadLetters(dl, worker="w")), sink, dl


def events(partition: int, start: int, values: list[bytes]) -> list[Event]:
    return [Event(v, Message(partition, start + i, value=v)) for i, v in enumerate(values)]


async def test_batch_is_cut_exactly_at_buffer_size() -> None:
    table: dict[str, Any] = {}
    proc, sink, _ = processor(table)
    await proc.handle(events(0, 0, [rec(7, f"w{i}") for i in range(7)]))
    assert [b.offsets for b in sink.batches] == [(0, 1, 2), (3, 4, 5)]
    assert [r["website_uid"] for r in sink.batches[0].records] == ["w0", "w1", "w2"]
    assert table["7"]["records"] == [{"website_uid": "w6", "cleanedJson": {"k": "w6"}, "context": "ctx"}]


async def test_cuts_do_not_depend_on_how_events_are_grouped() -> None:
    values = [rec(1, f"a{i}") for i in range(5)] + [records.flush_user(1)[1]] + [rec(1, "b")]
    one_table: dict[str, Any] = {}
    one, one_sink, _ = processor(one_table)
    await one.handle(events(2, 10, values))
    split_table: dict[str, Any] = {}
    split, split_sink, _ = processor(split_table)
    evs = events(2, 10, values)
    for chunk in (evs[:2], evs[2:4], evs[4:]):
        await split.handle(chunk)
    assert one_sink.batches == split_sink.batches
    assert [b.offsets for b in one_sink.batches] == [(10, 11, 12), (13, 14)]
    assert one_table == split_table


async def test_replayed_records_and_controls_are_no_ops() -> None:
    table: dict[str, Any] = {}
    proc, sink, _ = processor(table, buffer_size=10)
    evs = events(0, 0, [rec(5, "x"), rec(5, "y"), records.flush_user(5)[1], rec(5, "z")])
    await proc.handle(evs)
    assert [b.offsets for b in sink.batches] == [(0, 1)]
    await proc.handle(evs)  # the whole batch again, as after a crash before the offsets committed
    assert [b.offsets for b in sink.batches] == [(0, 1)]
    assert table["5"]["offsets"] == [3]


async def test_the_same_records_produced_again_are_archived_once_and_changed_ones_again() -> None:
    table: dict[str, Any] = {}
    proc, sink, _ = processor(table, buffer_size=100)
    first = [rec(4, "a"), rec(4, "b"), rec(4, "a")]  # a repeat inside one batch too
    await proc.handle(events(0, 0, first + [records.flush_user(4)[1]]))
    changed = records.WebsiteRecord(4, "b", {"k": "new"}, "ctx").encode()
    # The same import again at later offsets, plus one changed record and one new one.
    await proc.handle(events(0, 4, [rec(4, "a"), rec(4, "b"), changed, rec(4, "c"), records.flush_user(4)[1]]))
    assert [[r["website_uid"] for r in b.records] for b in sink.batches] == [["a", "b"], ["b", "c"]]
    assert sink.batches[1].records[0]["cleanedJson"] == {"k": "new"}


async def test_another_users_identical_record_is_not_a_duplicate() -> None:
    table: dict[str, Any] = {}
    proc, sink, _ = processor(table, buffer_size=1)
    await proc.handle(events(0, 0, [rec(1, "same"), rec(2, "same")]))
    assert [b.user_id for b in sink.batches] == [1, 2]


async def test_flush_all_cuts_every_user_of_its_partition_only() -> None:
    table: dict[str, Any] = {}
    proc, sink, _ = processor(table, buffer_size=100)
    await proc.handle(events(0, 0, [rec(1, "a"), rec(2, "b")]) + events(1, 0, [rec(3, "c")]))
    await proc.handle(events(0, 2, [records.flush_all()]))
    assert sorted(b.user_id for b in sink.batches) == [1, 2]
    assert table["3"]["records"] and not table["1"]["records"]


async def test_bad_records_are_dead_lettered_and_processing_continues() -> None:
    table: dict[str, Any] = {}
    proc, sink, dl = processor(table, buffer_size=2)
    deep = '{"a":' * 300 + "1" + "}" * 300
    bad = [b"not json", b'{"user_id": 1}', b'{"control": "explode"}', b'{"user_id": "\xc2\xb2", "wuid": "w"}',
           b'{"user_id": 1, "wuid": "w", "cleaned": ' + deep.encode() + b"}"]
    await proc.handle(events(0, 0, bad + [rec(1, "a"), rec(1, "b")]))
    assert [r["value"] for r in dl.sent] == bad  # the original bytes, unchanged
    reasons = [dict(r["headers"])["dlq.error.message"].decode() for r in dl.sent]
    assert "value: is not valid JSON" in reasons[0]
    assert reasons[1].startswith("cleaned: is required")
    assert reasons[2].startswith("control: must be one of")
    assert reasons[3].startswith("user_id: must be a whole number written in ASCII digits")
    assert reasons[4] == "cleaned: nests deeper than 128 levels"
    assert [b.offsets for b in sink.batches] == [(5, 6)]


def big(user: int, wuid: str, size: int) -> bytes:
    return records.WebsiteRecord(user, wuid, {"text": "x" * size}, None).encode()


async def test_a_users_pending_value_stays_under_its_byte_bound() -> None:
    table: dict[str, Any] = {}
    proc, sink, _ = processor(table, buffer_size=100)
    await proc.handle(events(0, 0, [big(9, "a", 600_000), big(9, "b", 600_000), rec(9, "c")]))
    assert [b.offsets for b in sink.batches] == [(0,)]  # cut before b: a and b together pass the bound
    assert table["9"]["offsets"] == [1, 2]
    assert len(serde.dumps(table["9"])) <= archive_pending.MAX_VALUE_BYTES


async def test_a_record_over_the_bound_alone_is_a_batch_of_its_own_and_never_pending() -> None:
    table: dict[str, Any] = {}
    proc, sink, _ = processor(table, buffer_size=100)
    await proc.handle(events(0, 0, [rec(9, "a"), big(9, "huge", archive_pending.MAX_VALUE_BYTES), rec(9, "b")]))
    assert [b.offsets for b in sink.batches] == [(0,), (1,)]
    assert table["9"]["offsets"] == [2] and table["9"]["upto"] == 2


async def test_byte_cuts_do_not_depend_on_how_events_are_grouped() -> None:
    values = [big(3, f"r{i}", 250_000) for i in range(7)]
    one_table: dict[str, Any] = {}
    one, one_sink, _ = processor(one_table, buffer_size=100)
    await one.handle(events(1, 0, values))
    split_table: dict[str, Any] = {}
    split, split_sink, _ = processor(split_table, buffer_size=100)
    for event in events(1, 0, values):
        await split.handle([event])
    assert [b.offsets for b in one_sink.batches] == [(0, 1, 2), (3, 4, 5)]
    assert one_sink.batches == split_sink.batches and one_table == split_table


def test_batch_id_is_deterministic_and_depends_on_app_user_and_offsets() -> None:
    assert batch_id("app", 1, 0, (1, 2)) == batch_id("app", 1, 0, (1, 2))
    assert batch_id("app", 1, 0, (1, 2)) != batch_id("app", 1, 0, (1, 3))
    assert batch_id("app", 1, 0, (1, 2)) != batch_id("app", 2, 0, (1, 2))
    assert batch_id("app", 1, 0, (1, 2)) != batch_id("other", 1, 0, (1, 2))


def test_plaintext_has_the_previous_services_shape() -> None:
    data = [{"website_uid": "w", "cleanedJson": {"a": 1}, "context": "c"}]
    assert serde.loads(plaintext(123, data)) == [{"user_id": 123, "data": data}]


def test_stale_entries_are_those_whose_oldest_record_passed_the_age() -> None:
    entry = Entry(0)
    append(entry, 1, 0, 100.0, {"website_uid": "a"}, 10)
    append(entry, 1, 1, 150.0, {"website_uid": "b"}, 10)
    assert not is_stale(entry.dump(), 159.0, 60)
    assert is_stale(entry.dump(), 160.0, 60)
    cut(entry, 1, 2)
    assert not is_stale(entry.dump(), 1e9, 60)


@dataclass
class State:
    due: bool = False
    written: list[dict[int, Any]] = field(default_factory=list)

    async def claim_tick(self, now: Any) -> bool:
        due, self.due = self.due, False
        return due

    async def write_stats(self, worker: str, stats: dict[int, Any]) -> None:
        self.written.append(stats)


@dataclass
class Sent:
    messages: list[Any] = field(default_factory=list)

    async def send_many(self, messages: list[Any]) -> None:
        self.messages.extend(messages)


def _timer(table: dict[str, Any], clock: Any, state: State, sent: Sent) -> Any:
    from ingestflow.agents.archive import BufferTimer
    return BufferTimer(table=table, state=state, producer=sent, clock=clock, worker="w", max_age_s=60,
                       partitions=4, actives=lambda: {0, 1})  # type: ignore[arg-type]


async def test_timer_asks_once_per_age_for_stale_users_of_its_partitions_and_reports_stats() -> None:
    from ingestflow.app.core.clock import ManualClock
    clock = ManualClock(1000.0)
    table = {"1": {"p": 0, "upto": 5, "first_ts": 900.0, "offsets": [4, 5], "records": [{}, {}]},
             "2": {"p": 1, "upto": 9, "first_ts": 990.0, "offsets": [9], "records": [{}]},
             "3": {"p": 2, "upto": 1, "first_ts": 100.0, "offsets": [1], "records": [{}]},  # not ours
             "4": {"p": 0, "upto": 7, "first_ts": None, "offsets": [], "records": []}}
    state, sent = State(), Sent()
    timer = _timer(table, clock, state, sent)
    await timer.tick()
    assert [(m.key, serde.loads(m.value)) for m in sent.messages] == [
        (b"1", {"control": "flush", "user_id": 1})]
    stats = state.written[-1]
    assert stats[0][:2] == (1, 2) and stats[1][:2] == (1, 1) and 2 not in stats
    clock.advance(10)
    await timer.tick()
    assert len(sent.messages) == 1, "not asked again before another max age passed"


async def test_timer_sends_flush_all_to_every_partition_on_a_claimed_cron_tick() -> None:
    from ingestflow.app.core.clock import ManualClock
    state, sent = State(due=True), Sent()
    await _timer({}, ManualClock(), state, sent).tick()
    keys = [m.key for m in sent.messages]
    assert len(keys) == 4 and {serde.loads(m.value)["control"] for m in sent.messages} == {"flush-all"}
    from aiokafka.partitioner import murmur2
    assert sorted((murmur2(k) & 0x7FFFFFFF) % 4 for k in keys) == [0, 1, 2, 3]


def traced_events(partition: int, start: int, values: list[bytes], traces: list[str]) -> list[Event]:
    return [Event(v, Message(partition, start + i, value=v, headers=(("trace-id", t.encode()),)))
            for i, (v, t) in enumerate(zip(values, traces, strict=True))]


async def test_a_batch_carries_the_distinct_trace_ids_of_its_records() -> None:
    table: dict[str, Any] = {}
    proc, sink, _ = processor(table, buffer_size=3)
    await proc.handle(traced_events(0, 0, [rec(7, f"w{i}") for i in range(5)], ["a", "b", "a", "c", "bad id"]))
    assert [b.trace_ids for b in sink.batches] == [("a", "b")]
    assert table["7"]["traces"] == ["c"]  # pending with its record; an invalid header is no trace id
    await proc.handle(events(0, 5, [records.flush_user(7)[1]]))
    assert [b.trace_ids for b in sink.batches] == [("a", "b"), ("c",)] and table["7"]["traces"] == []


async def test_a_value_written_before_trace_ids_were_kept_still_loads() -> None:
    table: dict[str, Any] = {"7": {"p": 0, "upto": 4, "first_ts": 1.0, "offsets": [4],
                                   "records": [{"website_uid": "old", "cleanedJson": {}, "context": None}]}}
    proc, sink, _ = processor(table, buffer_size=2)
    await proc.handle(traced_events(0, 5, [rec(7, "new")], ["t"]))
    assert [(b.offsets, b.trace_ids) for b in sink.batches] == [((4, 5), ("t",))]


async def test_a_pending_value_with_a_long_trace_id_per_record_stays_under_its_byte_bound() -> None:
    table: dict[str, Any] = {}
    proc, sink, _ = processor(table, buffer_size=100_000)
    n = 2000
    values = [records.WebsiteRecord(9, f"r{i}", {"t": "x" * 400}, None).encode() for i in range(n)]
    await proc.handle(traced_events(0, 0, values, [f"{i:064d}" for i in range(n)]))
    assert len(sink.batches) == 1 and 0 < len(sink.batches[0].offsets) < n  # cut by bytes
    assert len(sink.batches[0].trace_ids) == len(sink.batches[0].offsets)
    assert len(serde.dumps(table["9"])) <= archive_pending.MAX_VALUE_BYTES
    cut = Entry(0, records=list(sink.batches[0].records), traces=list(sink.batches[0].trace_ids),
                offsets=list(sink.batches[0].offsets))
    assert len(serde.dumps(cut.dump())) <= archive_pending.MAX_VALUE_BYTES  # what it held before the cut
