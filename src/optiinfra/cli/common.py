"""What the database commands share: a session factory on a current schema, and ids people can type.

Tables print the first 8 characters of an id (`--wide` prints them whole), and every command that takes an id also
takes a unique prefix of at least 4 characters, so what a table shows can be pasted back.
The database layer is imported inside the functions: the command line's start stays light.
"""

from __future__ import annotations

import re
import uuid
from typing import TYPE_CHECKING, Annotated, Any

import typer

from optiinfra.errors import InvalidInputError, NotFoundError

if TYPE_CHECKING:
    from sqlalchemy.orm import InstrumentedAttribute, Session, sessionmaker

    from optiinfra.auth.principal import Principal

SHORT = 8
MIN_PREFIX = 4
_PREFIX = re.compile(r"^[0-9a-f-]+$")

WideOption = Annotated[bool, typer.Option("--wide", "-w", help="Print whole ids instead of their first 8 characters.")]


def short(value: uuid.UUID | str | None, wide: bool = False) -> str:
    """An id as a table shows it."""
    if value is None:
        return ""
    text = str(value)
    return text if wide else text[:SHORT]


def cli_principal() -> Principal:
    """Who the command line acts as: the system principal "cli" (an operator working on the database directly)."""
    from optiinfra.auth.principal import Principal

    return Principal.system("cli")


def session_factory() -> sessionmaker[Session]:
    """Sessions on the configured database, once its schema is the newest (else a clear error and its fix)."""
    from optiinfra.cli.context import open_engine
    from optiinfra.db import migrations
    from optiinfra.db.engine import make_session_factory

    engine = open_engine()
    migrations.require_current_schema(engine)
    return make_session_factory(engine)


def resolve_id(session: Session, column: InstrumentedAttribute[Any], value: str, what: str) -> uuid.UUID:
    """A whole id, or the one id that starts with the given prefix (at least 4 characters)."""
    from optiinfra.db.queries import ids_starting_with

    text = value.strip().lower()
    try:
        return uuid.UUID(text)
    except ValueError:
        pass
    if len(text) < MIN_PREFIX or not _PREFIX.match(text):
        raise InvalidInputError(
            f"{value!r} is not a {what} id.",
            fix=f"Give the whole id or its first {MIN_PREFIX} characters or more, as the tables print them.",
        )
    found = ids_starting_with(session, column, text, limit=2)
    if not found:
        raise NotFoundError(f"No {what} id starts with {text!r}.")
    if len(found) > 1:
        raise InvalidInputError(
            f"More than one {what} id starts with {text!r}.", fix="Give more characters, or run the list with --wide."
        )
    return found[0]


def customer_id(session: Session, value: str) -> uuid.UUID:
    """A customer by id, id prefix or e-mail address (the command line acts as the operator)."""
    from optiinfra.customers import service as customer_service
    from optiinfra.models import Customer

    if "@" in value:
        return customer_service.customer_id_by_email(session, cli_principal(), value)
    return resolve_id(session, Customer.id, value, "customer")


ID_COLUMNS = frozenset({"id", "customer"})


def add_columns(table: Any, columns: tuple[str, ...], wide: bool = False) -> None:
    """Columns of a list table: short id columns never wrap (they are pasted back), the others fold when narrow."""
    for column in columns:
        if column in ID_COLUMNS and not wide:
            table.add_column(column, no_wrap=True, min_width=SHORT)
        else:
            table.add_column(column, overflow="fold")
