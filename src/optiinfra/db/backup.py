"""Backups with PostgreSQL's own tools: `pg_dump` in its custom format, `pg_restore` back.

The client tools are chosen to match the server's major version (Debian's `/usr/lib/postgresql/<major>/bin`, or
whatever is on PATH at that version), falling back to the ones bundled with the embedded PostgreSQL, which can dump
older servers too. The password travels in `PGPASSWORD`, never on the command line.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from sqlalchemy import Engine, text
from sqlalchemy.engine import URL

from optiinfra.db.embedded import bundled_tool
from optiinfra.errors import InvalidInputError, OptiInfraError


class BackupError(OptiInfraError):
    code = "backup_failed"


def _server_major(engine: Engine) -> int:
    with engine.connect() as connection:
        return int(connection.execute(text("SHOW server_version_num")).scalar_one()) // 10_000


def _tool(name: str, major: int) -> str:
    candidates = [Path(f"/usr/lib/postgresql/{major}/bin/{name}")]
    on_path = shutil.which(name)
    if on_path:
        candidates.append(Path(on_path))
    for candidate in candidates:
        if candidate.is_file() and os.access(candidate, os.X_OK):
            version = subprocess.run(  # noqa: S603 (a PostgreSQL tool found above, fixed arguments)
                [str(candidate), "--version"], capture_output=True, text=True, check=False
            ).stdout
            if f" {major}." in version or version.rstrip().endswith(f" {major}"):
                return str(candidate)
    bundled = bundled_tool(name)
    if bundled is None:
        raise BackupError(f"No {name} was found for PostgreSQL {major}.", fix=f"Install postgresql-client-{major}.")
    return bundled


def _connection(url: URL) -> tuple[str, dict[str, str]]:
    """A libpq URL without the password, and the environment carrying it."""
    env = {**os.environ}
    if url.password:
        env["PGPASSWORD"] = str(url.password)
    plain = url.set(drivername="postgresql", password=None)
    return plain.render_as_string(hide_password=False), env


def _run(command: list[str], env: dict[str, str], what: str) -> None:
    result = subprocess.run(command, capture_output=True, text=True, env=env, check=False)  # noqa: S603
    if result.returncode != 0:
        detail = (result.stderr.strip().splitlines() or ["no output"])[-1]
        raise BackupError(f"{what} failed: {detail}", fix="Check the message above, then run the command again.")


def backup(engine: Engine, destination: Path) -> int:
    """Dump the database to `destination` (pg_dump custom format); returns the file's size in bytes."""
    if destination.exists() and destination.is_dir():
        raise InvalidInputError(f"{destination} is a directory; name a file.")
    destination.parent.mkdir(parents=True, exist_ok=True)
    url, env = _connection(engine.url)
    tool = _tool("pg_dump", _server_major(engine))
    partial = destination.with_name(destination.name + ".partial")
    _run([tool, "--format=custom", "--no-owner", "--no-privileges", f"--file={partial}", url], env, "pg_dump")
    partial.replace(destination)  # a crash mid-dump never leaves a truncated file under the final name
    return destination.stat().st_size


def restore(engine: Engine, source: Path) -> None:
    """Replace the database's OptiInfra objects and data with those of a backup, in one transaction."""
    if not source.is_file():
        raise InvalidInputError(f"{source} is not a backup file.")
    url, env = _connection(engine.url)
    major = _server_major(engine)
    with tempfile.TemporaryDirectory(prefix="optiinfra-restore-") as directory:
        script = Path(directory) / "restore.sql"
        _run(
            [
                _tool("pg_restore", major),
                "--clean",
                "--if-exists",
                "--no-owner",
                "--no-privileges",
                f"--file={script}",
                str(source),
            ],
            env,
            "pg_restore",
        )
        # pg_restore's clean step drops each partition's constraints on their own, which PostgreSQL refuses for
        # constraints a partition inherits: dropping the partitioned quality_metrics first (with its partitions)
        # makes those steps no-ops. All of it runs in one transaction: a failure changes nothing.
        first = Path(directory) / "first.sql"
        first.write_text("DROP TABLE IF EXISTS public.quality_metrics CASCADE;\n")
        _run(
            [
                _tool("psql", major),
                "--single-transaction",
                "--quiet",
                "--set=ON_ERROR_STOP=1",
                f"--file={first}",
                f"--file={script}",
                f"--dbname={url}",
            ],
            env,
            "restore",
        )
