"""The one classification of failures: what is retried (the record waits) and what is the record's own fault
(it is dead-lettered). The errors are the libraries' own classes, raised the way they raise them."""
from __future__ import annotations

import asyncio

import asyncpg
import pytest
from aiokafka.errors import KafkaConnectionError, KafkaTimeoutError, MessageSizeTooLargeError, RequestTimedOutError
from faust.exceptions import PartitionsMismatch, ValueDecodeError

from ingestflow.app.archive.base import CidMismatch
from ingestflow.app.core.errors import ArchiveError, Unavailable, ValidationError, is_transient
from ingestflow.app.core.retry import retry


@pytest.mark.parametrize("exc", [
    ConnectionRefusedError(111, "refused"), ConnectionResetError(104, "reset"), TimeoutError(),
    asyncio.TimeoutError(), OSError(113, "no route to host"),
    asyncpg.exceptions.ConnectionDoesNotExistError("connection was closed in the middle of operation"),
    asyncpg.exceptions.SerializationError("could not serialize access"),
    asyncpg.exceptions.DeadlockDetectedError("deadlock detected"),
    asyncpg.exceptions.TooManyConnectionsError("too many clients"),
    asyncpg.exceptions.AdminShutdownError("terminating connection due to administrator command"),
    asyncpg.exceptions.CannotConnectNowError("the database system is starting up"),
    asyncpg.exceptions.InterfaceError("pool is closing"),
    ArchiveError("lighthouse answered 503"), Unavailable("PostgreSQL is unreachable"),
    KafkaConnectionError(), RequestTimedOutError(), KafkaTimeoutError(),
    PartitionsMismatch("changelog topic has 0 partitions"),  # the group's metadata not yet refreshed
])
def test_transient_failures(exc: BaseException) -> None:
    assert is_transient(exc)


@pytest.mark.parametrize("exc", [
    ValueError("invalid literal for int() with base 10: '²'"), TypeError("Recursion limit reached"),
    ValidationError("ruleId", "must not contain a NUL"),
    asyncpg.exceptions.CharacterNotInRepertoireError("invalid byte sequence for encoding \"UTF8\": 0x00"),
    asyncpg.exceptions.UntranslatableCharacterError("unsupported Unicode escape sequence"),
    asyncpg.exceptions.NumericValueOutOfRangeError("bigint out of range"),
    asyncpg.exceptions.DataError("invalid input for query argument $1"),  # client-side encoding of a value
    asyncpg.exceptions.ProgramLimitExceededError("index row size exceeds btree maximum"),
    CidMismatch("the backend stored something else"), MessageSizeTooLargeError(), KeyError("x"),
    ValueDecodeError("cannot decode value"),
])
def test_failures_of_the_records_own_content(exc: BaseException) -> None:
    assert not is_transient(exc)


async def test_retry_with_is_transient_retries_outages_and_raises_content_failures_at_once() -> None:
    calls: list[int] = []

    async def flaky() -> str:
        calls.append(1)
        if len(calls) < 3:
            raise ConnectionResetError(104, "reset")
        return "done"
    assert await retry(flaky, what="flaky", retry_if=is_transient, base=0.001) == "done"
    assert len(calls) == 3

    async def bad() -> None:
        calls.append(1)
        raise ValueError("bad record")
    calls.clear()
    with pytest.raises(ValueError):
        await retry(bad, what="bad", retry_if=is_transient, base=0.001)
    assert len(calls) == 1
