"""One error hierarchy for the whole system, and the one classification of failures.

Each error knows the HTTP status it maps to (the gateway maps them in one place) and whether retrying
can help, so callers never need to know every concrete type. `is_transient` extends that question to the
libraries' own errors (PostgreSQL, Kafka, sockets): a transient failure is retried and the record waits;
any other failure is the record's own fault, and retrying it would stall its partition forever.
"""
from __future__ import annotations

import asyncio

from aiokafka.errors import KafkaTimeoutError, ProducerClosed, ProducerFenced
from asyncpg.exceptions import InterfaceError as PgInterfaceError
from faust.exceptions import DecodeError as FaustDecodeError
from faust.exceptions import FaustError
from faust.exceptions import ValidationError as FaustValidationError

__all__ = [
    "IngestflowError", "ConfigError", "ValidationError", "AuthError", "ForbiddenError",
    "UnsupportedMediaType", "PayloadTooLarge", "RequestTimeout", "RateLimited", "Unavailable", "NotFound",
    "SpoolFull", "ArchiveError", "IntegrityError", "is_transient",
]

# SQLSTATE classes and codes of PostgreSQL failures that say nothing about the data: connection exception,
# transaction rollback (serialization failure, deadlock), insufficient resources (too many connections, disk
# full), operator intervention (admin shutdown, cannot connect now, statement timeout), system error.
_TRANSIENT_SQLSTATE_CLASSES = ("08", "40", "53", "57", "58")
_TRANSIENT_SQLSTATES = ("55P03",)  # lock_not_available
# aiokafka errors about time or the client's state (a fenced producer: the partition moved), not flagged
# `retriable` by aiokafka.
_TRANSIENT_KAFKA = (KafkaTimeoutError, ProducerClosed, ProducerFenced)


def is_transient(exc: BaseException) -> bool:
    """True when trying again later may succeed: connection lost, refused or reset, a timeout, a PostgreSQL
    serialization failure, deadlock, too many connections or shutdown, a backend's 5xx/429
    (ArchiveError.retriable), a Kafka error flagged retriable, Faust's own state. Anything else is the record's
    own fault."""
    if isinstance(exc, (OSError, asyncio.TimeoutError, *_TRANSIENT_KAFKA)):  # ConnectionError is an OSError
        return True
    if getattr(exc, "retriable", False) is True:  # IngestflowError, aiokafka's KafkaError
        return True
    if isinstance(exc, FaustError):  # the framework's state (a changelog's partitions not yet in the metadata)
        return not isinstance(exc, (FaustDecodeError, FaustValidationError))
    sqlstate = getattr(exc, "sqlstate", None)  # asyncpg's PostgresError
    if isinstance(sqlstate, str):
        return sqlstate[:2] in _TRANSIENT_SQLSTATE_CLASSES or sqlstate in _TRANSIENT_SQLSTATES
    # The client's own state (a pool closing, a connection closed under it), except an argument it could not
    # encode (asyncpg's DataError, a ValueError: a value out of range for its column type).
    return isinstance(exc, PgInterfaceError) and not isinstance(exc, ValueError)


class IngestflowError(Exception):
    status: int = 500
    retriable: bool = False

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def to_dict(self) -> dict[str, object]:
        return {"error": type(self).__name__, "message": self.message}


class ConfigError(IngestflowError):
    """A setting is missing or malformed; start-up stops with one line naming it."""

    def __init__(self, variable: str, reason: str) -> None:
        super().__init__(f"{variable}: {reason}")
        self.variable = variable


class ValidationError(IngestflowError):
    status = 400

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason

    def to_dict(self) -> dict[str, object]:
        return {"error": "ValidationError", "field": self.field, "reason": self.reason}


class AuthError(IngestflowError):
    status = 401


class ForbiddenError(IngestflowError):
    status = 403


class NotFound(IngestflowError):
    status = 404


class RequestTimeout(IngestflowError):
    """The client stopped sending its request half-way; sending it again (whole) may succeed."""

    status = 408
    retriable = True


class PayloadTooLarge(IngestflowError):
    status = 413


class UnsupportedMediaType(IngestflowError):
    status = 415


class RateLimited(IngestflowError):
    status = 429

    def __init__(self, message: str, retry_after: float, limit: int, remaining: int = 0) -> None:
        super().__init__(message)
        self.retry_after = retry_after
        self.limit = limit
        self.remaining = remaining


class Unavailable(IngestflowError):
    """A dependency is down; the caller may try again after `retry_after` seconds."""

    status = 503
    retriable = True

    def __init__(self, message: str, retry_after: float = 5.0) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class SpoolFull(Unavailable):
    """The disk spool reached its bound: refuse new input rather than lose any."""


class ArchiveError(IngestflowError):
    status = 502
    retriable = True


class IntegrityError(IngestflowError):
    """Stored or received bytes fail authentication: never return them as data."""

    status = 422
