"""Building queries on tenant rows: one scoped, filtered page of a list, newest first on (created_at, id) with an
opaque cursor (`list_page`), one scoped row by id (`get_row`); ids by the prefix people type."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any, TypeVar

from sqlalchemy import Select, String, and_, case, cast, func, or_, select
from sqlalchemy.orm import InstrumentedAttribute, Session
from sqlalchemy.sql.elements import ColumnElement

from optiinfra.auth.principal import Principal
from optiinfra.errors import NotFoundError
from optiinfra.listing import Condition, FilterModel, ListQuery
from optiinfra.pagination import Page, decode_cursor, page_of
from optiinfra.tenancy import scope_to_caller

S = TypeVar("S", bound=Select[*tuple[Any, ...]])
T = TypeVar("T")

# A list shows a JSON column as stored up to this many bytes (twice the input limit of a free-form field, so every
# value written since the limits is shown whole); a larger one, stored before the limits, is shown as a stand-in.
LIST_JSON_LIMIT = 128 * 1024


def capped_json(column: InstrumentedAttribute[Any], limit: int = LIST_JSON_LIMIT) -> ColumnElement[Any]:
    """`column`, or `{"truncated": true, "size_bytes": N}` when its JSON text is larger than `limit` bytes, so one
    oversized row cannot make a list answer (or a page) arbitrarily large."""
    size = func.octet_length(cast(column, String))
    return case(
        (size > limit, func.jsonb_build_object("truncated", True, "size_bytes", size)),
        else_=column,
    )


def list_page(
    session: Session,
    table: type[Any],
    filters: ListQuery,
    *,
    principal: Principal | None,
    customer_column: InstrumentedAttribute[Any] | None = None,
    columns: Sequence[Any] | None = None,
) -> Page[Any]:
    """One page of `table`'s rows (or of `columns` of it): scoped to the caller, filtered by `filters`, newest first
    on (created_at, id), from `filters.cursor`, at most `filters.limit` rows.

    The scope is `tenancy.scope_to_caller` for `principal` on the table's `customer_id` (or `customer_column`) and,
    where the table has one, its `agent_id` (the agent that wrote the row); `principal=None` is for rows no tenant
    owns (agents; the service has checked the caller's role). Each filter given names a column of `table`
    (`optiinfra.listing`). The items are entities, or `Row`s when `columns` are named; the service turns them into
    its schema (`Page.map`).
    """
    statement: Select[Any] = select(*columns) if columns is not None else select(table)
    statement = _scoped(statement, table, principal, customer_column)
    statement = where_filters(statement, table, filters)
    created_column, id_column = table.created_at, table.id
    if filters.cursor:
        created_at, row_id = decode_cursor(filters.cursor)
        statement = statement.where(
            or_(created_column < created_at, and_(created_column == created_at, id_column < row_id))
        )
    statement = statement.order_by(created_column.desc(), id_column.desc()).limit(filters.limit + 1)
    rows = session.execute(statement).all() if columns is not None else session.scalars(statement).all()
    return page_of(rows, filters.limit)


def get_row(
    session: Session,
    table: type[T],
    row_id: uuid.UUID,
    principal: Principal | None,
    name: str,
    id_name: str,
    *,
    customer_column: InstrumentedAttribute[Any] | None = None,
    for_update: bool = False,
    options: Sequence[Any] = (),
) -> T:
    """The row of `table` with this id if the caller may see it (scoped as `list_page` scopes), locked with
    `for_update`, loaded with `options`. Otherwise 404 "No such <name>." with the id as `id_name` in its details
    (`get_row(session, AlertRoute, route_id, principal, "alert route", "route_id")`), whether the row is another
    tenant's or nobody's."""
    statement = _scoped(select(table).where(table.id == row_id), table, principal, customer_column)  # type: ignore[attr-defined]
    if options:
        statement = statement.options(*options)
    if for_update:
        statement = statement.with_for_update().execution_options(populate_existing=True)
    row: T | None = session.scalar(statement)
    if row is None:
        raise NotFoundError(f"No such {name}.", details={id_name: str(row_id)})
    return row


def _scoped(
    statement: S, table: type[Any], principal: Principal | None, customer_column: InstrumentedAttribute[Any] | None
) -> S:
    """`tenancy.scope_to_caller` on the table's customer_id (or `customer_column`) and, where the table has one, its
    agent_id; no scope without a principal."""
    if principal is None:
        return statement
    return scope_to_caller(
        statement,
        principal,
        customer_column=customer_column if customer_column is not None else table.customer_id,
        agent_column=getattr(table, "agent_id", None),
    )


def where_filters(statement: S, table: type[Any], filters: FilterModel) -> S:
    """`statement` narrowed by each filter given, on the column of `table` it names (`optiinfra.listing`)."""
    for condition in filters.conditions():
        statement = statement.where(_condition(getattr(table, condition.column), condition))
    return statement


def _condition(column: InstrumentedAttribute[Any], condition: Condition) -> ColumnElement[bool]:
    value = condition.value
    match condition.operator:
        case "==":
            found: ColumnElement[bool] = column == value
        case ">=":
            found = column >= value
        case "<":
            found = column < value
        case "is null":
            found = column.is_(None) if value else column.is_not(None)
    return found


def ids_starting_with(session: Session, column: InstrumentedAttribute[Any], prefix: str, limit: int) -> list[uuid.UUID]:
    """Up to `limit` ids of `column` whose text starts with `prefix` (a bound parameter; the caller checks that it
    holds only hex digits and dashes)."""
    found = session.scalars(select(column).where(cast(column, String).like(f"{prefix}%")).limit(limit))
    return [uuid.UUID(str(value)) for value in found]
