"""One error hierarchy for the whole system.

Each error knows the HTTP status it maps to (the gateway maps them in one place) and whether retrying
can help, so callers never need to know every concrete type.
"""
from __future__ import annotations

__all__ = [
    "IngestflowError", "ConfigError", "ValidationError", "AuthError", "ForbiddenError",
    "UnsupportedMediaType", "PayloadTooLarge", "RateLimited", "Unavailable", "NotFound",
    "SpoolFull", "ArchiveError", "IntegrityError",
]


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
