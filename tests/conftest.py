"""Test fixtures: every test runs on real PostgreSQL whose schema was built by the migrations.

Set OPTIINFRA_TEST_DATABASE_URL to a server URL whose user may create databases (CI points it at a throwaway
PostgreSQL 15); without it the tests start the embedded PostgreSQL in a temporary directory.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import psycopg
import pytest
from psycopg import sql
from sqlalchemy import Engine, create_engine
from sqlalchemy.engine import URL, make_url
from sqlalchemy.orm import Session

from optiinfra.config import parse_database_url
from optiinfra.db import migrations
from optiinfra.db.embedded import start_embedded

TEST_DATABASE_URL_ENV = "OPTIINFRA_TEST_DATABASE_URL"


@pytest.fixture(scope="session")
def server_url(tmp_path_factory: pytest.TempPathFactory) -> URL:
    """A URL to a PostgreSQL server's maintenance database, used to create and drop test databases."""
    raw = os.environ.get(TEST_DATABASE_URL_ENV)
    if raw:
        return parse_database_url(raw)
    data_dir: Path = tmp_path_factory.mktemp("embedded")
    return start_embedded(data_dir, database="postgres")


def _libpq(url: URL) -> str:
    return url.set(drivername="postgresql").render_as_string(hide_password=False)


DatabaseFactory = Callable[[], URL]


@pytest.fixture(scope="session")
def create_database(server_url: URL) -> Iterator[DatabaseFactory]:
    """A factory of fresh, empty databases on the test server; all are dropped when the session ends."""
    created: list[str] = []

    def factory() -> URL:
        name = f"optiinfra_test_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(_libpq(server_url), autocommit=True) as connection:
            connection.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        created.append(name)
        return server_url.set(database=name)

    yield factory
    with psycopg.connect(_libpq(server_url), autocommit=True) as connection:
        for name in created:
            connection.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


@pytest.fixture
def empty_engine(create_database: DatabaseFactory) -> Iterator[Engine]:
    """An engine on a brand-new empty database, for tests that migrate it themselves."""
    engine = create_engine(create_database())
    yield engine
    engine.dispose()


@pytest.fixture(scope="session")
def migrated_engine(create_database: DatabaseFactory) -> Iterator[Engine]:
    """An engine on a database upgraded to head once per test session."""
    engine = create_engine(create_database())
    migrations.upgrade(engine)
    yield engine
    engine.dispose()


@pytest.fixture
def session(migrated_engine: Engine) -> Iterator[Session]:
    """A session inside a transaction that is rolled back after the test; commits become savepoints."""
    with migrated_engine.connect() as connection:
        transaction = connection.begin()
        with Session(bind=connection, join_transaction_mode="create_savepoint") as db_session:
            yield db_session
        transaction.rollback()


@pytest.fixture
def database_url(create_database: DatabaseFactory) -> URL:
    """The URL of a fresh empty database, for CLI tests that run `optiinfra` against it."""
    return create_database()


def url_for_env(url: URL) -> str:
    """Render a URL for OPTIINFRA_DATABASE_URL, password included."""
    return make_url(url).render_as_string(hide_password=False)
