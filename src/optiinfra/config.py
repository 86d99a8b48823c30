"""Settings read from the environment: where the database is and where OptiInfra keeps its files."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import platformdirs

from optiinfra.errors import ConfigurationError

if TYPE_CHECKING:
    from sqlalchemy.engine import URL

DATABASE_URL_ENV = "OPTIINFRA_DATABASE_URL"
DATA_DIR_ENV = "OPTIINFRA_DATA_DIR"
ALLOW_PRIVATE_ENDPOINTS_ENV = "OPTIINFRA_ALLOW_PRIVATE_ENDPOINTS"

_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"", "0", "false", "no", "off"})


@dataclass(frozen=True)
class Settings:
    """OptiInfra's configuration. `database_url` None means: use the embedded PostgreSQL."""

    database_url: URL | None
    data_dir: Path


def parse_database_url(raw: str) -> URL:
    """Parse a PostgreSQL URL and pin it to the psycopg 3 driver.

    Accepts `postgresql://`, `postgres://` and `postgresql+psycopg://` URLs.
    """
    from sqlalchemy.engine import make_url  # deferred: the Python client imports this module
    from sqlalchemy.exc import ArgumentError

    try:
        url = make_url(raw.strip())
    except ArgumentError as error:
        raise ConfigurationError(
            f"{DATABASE_URL_ENV} is not a valid database URL.",
            fix=f"Set it like: export {DATABASE_URL_ENV}=postgresql://user:password@localhost:5432/optiinfra",
        ) from error
    backend, _, driver = url.drivername.partition("+")
    if backend not in {"postgresql", "postgres"}:
        raise ConfigurationError(
            f"{DATABASE_URL_ENV} must point to PostgreSQL, not {backend!r}.",
            fix=f"Set it like: export {DATABASE_URL_ENV}=postgresql://user:password@localhost:5432/optiinfra",
        )
    if driver not in {"", "psycopg"}:
        raise ConfigurationError(
            f"{DATABASE_URL_ENV} names the driver {driver!r}; OptiInfra uses psycopg 3.",
            fix=f"Use postgresql:// or postgresql+psycopg:// in {DATABASE_URL_ENV}.",
        )
    return url.set(drivername="postgresql+psycopg")


def load_settings() -> Settings:
    """Read the settings from the environment."""
    raw_url = os.environ.get(DATABASE_URL_ENV, "").strip()
    raw_dir = os.environ.get(DATA_DIR_ENV, "").strip()
    data_dir = Path(raw_dir).expanduser() if raw_dir else platformdirs.user_data_path("optiinfra")
    return Settings(database_url=parse_database_url(raw_url) if raw_url else None, data_dir=data_dir.absolute())


def private_endpoints_allowed() -> bool:
    """Whether outbound calls may go to loopback, private and other non-public addresses (read at each call)."""
    raw = os.environ.get(ALLOW_PRIVATE_ENDPOINTS_ENV, "").strip().lower()
    if raw in _TRUE:
        return True
    if raw in _FALSE:
        return False
    raise ConfigurationError(
        f"{ALLOW_PRIVATE_ENDPOINTS_ENV} must be 1 or 0 (true/false, yes/no, on/off), not {raw!r}.",
        fix=f"export {ALLOW_PRIVATE_ENDPOINTS_ENV}=1 to allow private endpoints, or unset it.",
    )
