"""Building list queries: optional equality filters and keyset pagination, newest first on (created_at, id); ids
by the prefix people type."""

from __future__ import annotations

import uuid
from typing import Any, TypeVar

from sqlalchemy import Select, String, and_, case, cast, func, or_, select
from sqlalchemy.orm import InstrumentedAttribute, Session
from sqlalchemy.sql.elements import ColumnElement

from optiinfra.pagination import decode_cursor

S = TypeVar("S", bound=Select[Any])

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


def where_given(statement: S, *filters: tuple[InstrumentedAttribute[Any], object]) -> S:
    """Add `column == value` for each (column, value) pair whose value was given; None means "any"."""
    for column, value in filters:
        if value is not None:
            statement = statement.where(column == value)
    return statement


def paginate(
    statement: S,
    *,
    created_column: InstrumentedAttribute[Any],
    id_column: InstrumentedAttribute[Any],
    cursor: str | None,
    limit: int,
) -> S:
    """Order newest first and apply the cursor; fetch limit + 1 rows to know whether another page exists."""
    if cursor:
        created_at, row_id = decode_cursor(cursor)
        statement = statement.where(
            or_(created_column < created_at, and_(created_column == created_at, id_column < row_id))
        )
    return statement.order_by(created_column.desc(), id_column.desc()).limit(limit + 1)


def ids_starting_with(session: Session, column: InstrumentedAttribute[Any], prefix: str, limit: int) -> list[uuid.UUID]:
    """Up to `limit` ids of `column` whose text starts with `prefix` (a bound parameter; the caller checks that it
    holds only hex digits and dashes)."""
    found = session.scalars(select(column).where(cast(column, String).like(f"{prefix}%")).limit(limit))
    return [uuid.UUID(str(value)) for value in found]
