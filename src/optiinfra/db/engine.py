"""Engines and the unit of work: one session per command or request, committed at the boundary."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import Engine, create_engine, text
from sqlalchemy.engine import URL
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session, sessionmaker

from optiinfra.config import DATABASE_URL_ENV, Settings
from optiinfra.db.embedded import start_embedded
from optiinfra.errors import DatabaseUnavailableError


def resolve_database_url(settings: Settings) -> URL:
    """The configured database URL, or the embedded PostgreSQL's (started on demand)."""
    if settings.database_url is not None:
        return settings.database_url
    return start_embedded(settings.data_dir)


# A pool of fixed size: the server admits as many requests as this serves (less a few connections kept for
# background work; see optiinfra.api.admission), and a checkout that waits longer than the time-out is a 503.
POOL_SIZE = 20
POOL_TIMEOUT_SECONDS = 10


def make_engine(url: URL) -> Engine:
    """An engine for `url`, checked by connecting once so a bad URL fails here with a clear message."""
    engine = create_engine(
        url, pool_pre_ping=True, pool_size=POOL_SIZE, max_overflow=0, pool_timeout=POOL_TIMEOUT_SECONDS
    )
    try:
        with engine.connect() as connection:
            connection.execute(text("SELECT 1"))
    except OperationalError as error:
        engine.dispose()
        raise describe_connection_error(url, error) from error
    return engine


def describe_connection_error(url: URL, error: OperationalError) -> DatabaseUnavailableError:
    """Turn a driver error into one sentence and the fix, without the password."""
    where = url.render_as_string(hide_password=True)
    lines = [line.strip() for line in str(error.orig or error).splitlines() if line.strip()]
    detail = lines[0] if lines else type(error).__name__
    lowered = detail.lower()
    if "does not exist" in lowered and "database" in lowered:
        return DatabaseUnavailableError(
            f"The database {url.database!r} does not exist on that server ({where}).",
            fix=f"Create it (createdb {url.database}) or point {DATABASE_URL_ENV} at an existing database.",
        )
    if "password authentication failed" in lowered or "authentication" in lowered:
        return DatabaseUnavailableError(
            f"PostgreSQL refused the credentials in {DATABASE_URL_ENV} ({where}).",
            fix=f"Fix the user name and password in {DATABASE_URL_ENV}.",
        )
    return DatabaseUnavailableError(
        f"Cannot connect to PostgreSQL at {where}: {detail}",
        fix=f"Start PostgreSQL there, correct {DATABASE_URL_ENV}, or unset it to use the embedded PostgreSQL.",
    )


def make_session_factory(engine: Engine) -> sessionmaker[Session]:
    """Sessions that keep loaded values after commit, so results can be shown after the unit of work."""
    return sessionmaker(engine, expire_on_commit=False)


@contextmanager
def unit_of_work(factory: sessionmaker[Session]) -> Iterator[Session]:
    """One transaction: committed when the block ends normally, rolled back on any error."""
    with factory() as session, session.begin():
        yield session
