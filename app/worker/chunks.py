"""Chunked delivery: the records of one partition from one fetch reach an agent as one Faust event.

Faust hands every record to the streams on its own: a Message, an Event, a queue put and get, a pass of the
stream iterator, a take-buffer entry and an ack, about as much per record as the whole analytics decision
costs. A topic made with `IngestflowApp.chunked_topic` (app/worker/faust_app.py) is delivered instead as
`Chunk` messages, one per partition and fetch, carrying the fetched aiokafka records. Everything Faust does
per message (flow control, the generation check, the take buffer, the ack and the commit that follows)
then happens once per chunk, and the consumer (app/worker/consumer.py) acks a chunk as every record in it.
The event's key and value are None: the records are on its message. A fetch of more than CHUNK_RECORDS
records of one partition is cut into several chunks, so that an agent's batch of chunks stays bounded.

An agent on a chunked topic reads `chunk_of(event).records`: aiokafka `ConsumerRecord`s (timestamp in ms).
`message_of` turns one back into the Faust message the rest of the worker knows (for a dead letter).
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from faust.types import TP
from faust.types.tuples import ConsumerMessage

__all__ = ["Chunk", "CHUNK_RECORDS", "chunk_of", "message_of", "offsets_of"]

CHUNK_RECORDS = 1000


class Chunk(ConsumerMessage):
    """The records of one partition from one fetch. `offset` is the last record's (the read position after
    it), `timestamp` the last record's in seconds, as Faust's messages have them."""

    __slots__ = ("records",)

    def __init__(self, tp: TP, records: Sequence[Any], generation_id: int | None) -> None:
        last = records[-1]
        super().__init__(tp.topic, tp.partition, last.offset, last.timestamp / 1000.0, last.timestamp_type, None,
                         None, None, None, 0, 0, tp, generation_id=generation_id)
        self.records = records

    @property
    def offsets(self) -> list[int]:
        return [record.offset for record in self.records]

    def __repr__(self) -> str:
        return f"<Chunk: {self.tp} offsets={self.records[0].offset}..{self.offset} ({len(self.records)})>"


def chunk_of(event: Any) -> Chunk:
    message = event.message
    assert isinstance(message, Chunk), f"not a chunk: {message!r}"
    return message


def offsets_of(message: Any) -> list[int]:
    """Every offset a delivered message stands for: a chunk's records, or the message's own."""
    return message.offsets if isinstance(message, Chunk) else [message.offset]


def message_of(record: Any) -> ConsumerMessage:
    """The Faust message of one record of a chunk."""
    return ConsumerMessage(record.topic, record.partition, record.offset, record.timestamp / 1000.0,
                           record.timestamp_type, record.headers, record.key, record.value, record.checksum,
                           record.serialized_key_size, record.serialized_value_size,
                           TP(record.topic, record.partition))
