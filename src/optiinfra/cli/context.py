"""What every command needs: settings, a database engine, and one way of reporting errors."""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, NoReturn, ParamSpec, TypeVar

from rich.console import Console

from optiinfra.errors import OptiInfraError

if TYPE_CHECKING:
    from sqlalchemy import Engine

# The database layer (SQLAlchemy, Alembic) is imported by the commands that use it, not by the command line's start.

console = Console()
error_console = Console(stderr=True)

P = ParamSpec("P")
R = TypeVar("R")


def open_engine() -> Engine:
    """Connect to the configured database, or start the embedded one and connect to it."""
    from optiinfra.config import load_settings
    from optiinfra.db.engine import make_engine, resolve_database_url

    settings = load_settings()
    if settings.database_url is None:
        error_console.print(f"[dim]Using the embedded PostgreSQL in {settings.data_dir / 'pgdata'}[/dim]")
    return make_engine(resolve_database_url(settings))


def reports_errors(command: Callable[P, R]) -> Callable[P, R]:
    """Print an OptiInfraError as one sentence plus the fix, and exit 1, instead of a traceback."""

    @functools.wraps(command)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return command(*args, **kwargs)
        except OptiInfraError as error:
            _fail(error.message, error.fix)
        except Exception as error:
            _fail_known(error)
            raise

    return wrapper


def _fail_known(error: Exception) -> None:
    """Report the migration tool's and the database's errors like our own; return for anything else."""
    from alembic.util import CommandError
    from sqlalchemy.exc import DBAPIError

    if isinstance(error, CommandError):
        _fail(f"The migration tool refused: {error}.", "Run: optiinfra db current, to see the schema revision")
    if isinstance(error, DBAPIError):
        detail = str(error.orig).strip().splitlines()[0] if error.orig else type(error).__name__
        _fail(f"The database failed the command: {detail}", "Check the server, then run the command again")


def _fail(message: str, fix: str | None) -> NoReturn:
    error_console.print(f"[bold red]Error:[/bold red] {message}", highlight=False, soft_wrap=True)
    if fix:
        error_console.print(f"[bold]Fix:[/bold] {fix}", highlight=False, soft_wrap=True)
    sys.exit(1)
