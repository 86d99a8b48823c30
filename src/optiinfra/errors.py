"""Typed errors. The edges turn them into one shape: a CLI message plus fix, or JSON
`{"error": {"code", "message", "details"}}` with the error's HTTP status."""

from __future__ import annotations

from typing import Any, ClassVar


class OptiInfraError(Exception):
    """Base class: a message for the user, the command that fixes it where there is one, and details."""

    status_code: ClassVar[int] = 500
    code: ClassVar[str] = "internal_error"

    def __init__(self, message: str, *, fix: str | None = None, details: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.fix = fix
        self.details = details or {}


class ConfigurationError(OptiInfraError):
    """The environment is set up wrongly (bad database URL, unusable data directory)."""

    code = "configuration_error"


class DatabaseUnavailableError(OptiInfraError):
    """The database cannot be reached or refuses the connection."""

    status_code = 503
    code = "database_unavailable"


class SchemaNotCurrentError(OptiInfraError):
    """The database schema is not at the revision this version of OptiInfra needs."""

    status_code = 503
    code = "schema_not_current"


class InvalidInputError(OptiInfraError):
    """The request is well-formed but its values break a rule."""

    status_code = 422
    code = "invalid_input"


class UnauthorizedError(OptiInfraError):
    """No API key, or one that matches no operator, customer or agent."""

    status_code = 401
    code = "unauthorized"


class ForbiddenError(OptiInfraError):
    """A valid key whose role may not do this, or a suspended tenant trying to change something."""

    status_code = 403
    code = "forbidden"


class NotFoundError(OptiInfraError):
    """No such row, or one the caller may not see (never revealed as existing)."""

    status_code = 404
    code = "not_found"


class ConflictError(OptiInfraError):
    """The change conflicts with the current state (a refused transition, a duplicate)."""

    status_code = 409
    code = "conflict"


class InvalidTransitionError(ConflictError):
    """A state machine refused a transition; details carry the current state."""

    code = "invalid_transition"


class TooManyRequestsError(OptiInfraError):
    """Throttled; details carry `retry_after_seconds`."""

    status_code = 429
    code = "too_many_requests"


class PayloadTooLargeError(OptiInfraError):
    """The request body is larger than the server accepts."""

    status_code = 413
    code = "payload_too_large"
