"""Reading the `dead-letters` topic back, each dead letter whole, for `ingestflow dlq` (app/ops/dlq_command.py)
and the re-drive (app/ops/redrive.py).

The topic is read with a group-less consumer (no consumer group is created or moved), read_committed, from
the first offset of `since` (Kafka's ListOffsets by time, a minute early so the first parts of a split value
are not missed) to the end each partition had when the scan began. A value split in parts is joined (its
parts are in order on one partition); dead letters are sent at least once, so copies of one share its source
(topic, partition, offset): the first whole one is kept and the copies counted. A record that does not follow
the contract (schemas/dead_letters.py) is counted as unreadable and skipped, never fatal.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta

from aiokafka import ConsumerRecord, TopicPartition

from ingestflow.app.clients.kafka import committed_reader, read_partitions, start_client
from ingestflow.app.core.settings import KafkaConnection
from ingestflow.schemas import dead_letters as contract
from ingestflow.schemas.topics import DEAD_LETTERS

__all__ = ["SourceRange", "Selection", "DeadLetter", "Scan", "Assembler", "scan"]

SEEK_EARLY = timedelta(minutes=1)
_RANGE = re.compile(r"(?P<topic>[A-Za-z0-9._-]+):(?P<partition>\d+):(?P<first>\d+)(?:-(?P<last>\d+))?")


@dataclass(frozen=True)
class SourceRange:
    """Source offsets `first`..`last` (inclusive) of one partition: `topic:partition:offset[-offset]`."""

    topic: str
    partition: int
    first: int
    last: int

    @classmethod
    def parse(cls, text: str) -> SourceRange:
        match = _RANGE.fullmatch(text.strip())
        if match is None:
            raise ValueError(f"{text!r} is not topic:partition:offset or topic:partition:first-last")
        first = int(match["first"])
        last = int(match["last"]) if match["last"] is not None else first
        if last < first:
            raise ValueError(f"{text!r}: the range ends before it starts")
        return cls(match["topic"], int(match["partition"]), first, last)

    def covers(self, source: contract.Source) -> bool:
        return (source.topic, source.partition) == (self.topic, self.partition) \
            and self.first <= source.offset <= self.last


@dataclass(frozen=True)
class Selection:
    """Which dead letters: every filter given must match (within one filter, any of its values)."""

    topics: frozenset[str] = frozenset()  # source topics
    errors: frozenset[str] = frozenset()  # error types (dlq.error.type)
    workers: frozenset[str] = frozenset()  # the app ids (consumer groups) that dead-lettered them
    since: datetime | None = None  # dead-lettered at or after
    until: datetime | None = None  # dead-lettered before
    records: tuple[SourceRange, ...] = ()

    def matches(self, source: contract.Source, failure: contract.Failure) -> bool:
        return ((not self.topics or source.topic in self.topics)
                and (not self.errors or failure.type in self.errors)
                and (not self.workers or failure.worker in self.workers)
                and (self.since is None or failure.at >= self.since)
                and (self.until is None or failure.at < self.until)
                and (not self.records or any(r.covers(source) for r in self.records)))


@dataclass
class DeadLetter:
    """One dead letter whole: the original record (value joined from its parts) and why it failed."""

    source: contract.Source
    failure: contract.Failure
    location: tuple[int, int]  # partition and offset on `dead-letters` of its (first) record
    parts: int
    size: int  # of the original value, in bytes
    truncated: str = ""
    copies: int = 1

    @property
    def id(self) -> str:
        """The source record's identity, `topic:partition:offset`: how commands name a dead letter."""
        return _identity(self.source)


@dataclass
class Scan:
    letters: list[DeadLetter] = field(default_factory=list)  # in the order they were dead-lettered
    unreadable: int = 0  # records on the topic that break the contract
    incomplete: int = 0  # split values whose parts were not all found


@dataclass
class _Partial:
    first: contract.Envelope
    location: tuple[int, int]
    chunks: list[bytes] = field(default_factory=list)
    size: int = 0
    received: int = 0


class _Joiner:
    """Joins the parts of split values, per dead-letters partition and source; a part 1 starts over (a copy
    sent again after a worker restart). Value bytes are kept only when asked for."""

    def __init__(self, keep_values: bool) -> None:
        self.keep_values = keep_values
        self.open: dict[tuple[int, str], _Partial] = {}
        self.stray = 0  # parts whose earlier parts were not read (before the scan, or never sent)

    def add(self, env: contract.Envelope, location: tuple[int, int]) -> DeadLetter | None:
        key = (location[0], _identity(env.source))
        partial = _Partial(env, location) if env.part == 1 else self.open.get(key)
        self.open.pop(key, None)
        if partial is None or partial.received != env.part - 1:
            self.stray += 1
            return None
        value = env.source.value
        partial.received += 1
        partial.size += len(value or b"")
        if self.keep_values and value is not None:
            partial.chunks.append(value)
        if env.part < env.parts:
            self.open[key] = partial
            return None
        first = partial.first
        whole = b"".join(partial.chunks) if self.keep_values and first.source.value is not None else None
        return DeadLetter(replace(first.source, value=whole), first.failure, partial.location, env.parts,
                          partial.size, first.truncated)


def _identity(source: contract.Source) -> str:
    return f"{source.topic}:{source.partition}:{source.offset}"


async def scan(kafka: KafkaConnection, selection: Selection, *, keep_values: bool = True) -> Scan:
    """The dead letters `selection` picks, whole (values dropped unless `keep_values`)."""
    reader = committed_reader(kafka)
    await start_client(kafka, reader.start, reader.stop)
    try:
        await reader._client.force_metadata_update()  # a fresh consumer may not know the topic yet
        tps = [TopicPartition(DEAD_LETTERS.name, p)
               for p in sorted(reader.partitions_for_topic(DEAD_LETTERS.name) or ())]
        if not tps:
            return Scan()
        starts = dict(await reader.beginning_offsets(tps))
        if selection.since is not None:
            ends = await reader.end_offsets(tps)
            by_time = await reader.offsets_for_times(
                {tp: int((selection.since - SEEK_EARLY).timestamp() * 1000) for tp in tps})
            starts = {tp: by_time[tp].offset if by_time.get(tp) else ends[tp] for tp in tps}
        assembler = Assembler(selection, keep_values)
        async for batch in read_partitions(reader, starts):
            for m in batch:
                assembler.add(m)
    finally:
        await reader.stop()
    return assembler.finish()


class Assembler:
    """The dead letters of the topic's records (fed in order per partition) that `selection` picks."""

    def __init__(self, selection: Selection, keep_values: bool = True) -> None:
        self.selection = selection
        self.joiner = _Joiner(keep_values)
        self.result = Scan()
        self.found: dict[str, DeadLetter] = {}

    def add(self, m: ConsumerRecord) -> None:
        try:
            env = contract.read(m.key, m.value, m.headers)
        except ValueError:
            self.result.unreadable += 1
            return
        if not self.selection.matches(env.source, env.failure):
            return
        letter = self.joiner.add(env, (m.partition, m.offset))
        if letter is None:
            return
        if letter.id in self.found:
            self.found[letter.id].copies += 1
        else:
            self.found[letter.id] = letter
            self.result.letters.append(letter)

    def finish(self) -> Scan:
        self.result.incomplete = self.joiner.stray + len(self.joiner.open)
        return self.result
