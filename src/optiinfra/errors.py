"""Typed errors that the edges (CLI, API) turn into one clear message."""

from __future__ import annotations


class OptiInfraError(Exception):
    """Base class: a message for the user and, where there is one, the command that fixes it."""

    def __init__(self, message: str, *, fix: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.fix = fix


class ConfigurationError(OptiInfraError):
    """The environment is set up wrongly (bad database URL, unusable data directory)."""


class DatabaseUnavailableError(OptiInfraError):
    """The database cannot be reached or refuses the connection."""


class SchemaNotCurrentError(OptiInfraError):
    """The database schema is not at the revision this version of OptiInfra needs."""
