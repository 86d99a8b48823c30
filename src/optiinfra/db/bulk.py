"""COPY into a table inside the session's transaction: the fast path for batches of rows (metrics ingest).

One helper for every table: the statement is composed from identifiers (psycopg.sql), never by formatting strings,
and JSON columns are sent as JSONB encoded by orjson. Rows travel in COPY's binary format, with each column's type
read from the catalog: the server then parses no text (timestamps, UUIDs, numbers, JSON), which made a 5,000-record
quality batch about 1.6 times faster to store than the text format (benchmarks/quality_scale.py, docs/scale.md).
"""

from __future__ import annotations

import json
from collections.abc import Collection, Sequence
from typing import Any

import orjson
from psycopg import sql
from psycopg.types.json import Jsonb, set_json_dumps
from sqlalchemy.orm import Session


def json_text(value: Any) -> str:
    """JSON text by orjson (several times faster than the standard encoder), or by the standard encoder for what
    orjson refuses (integers beyond 64 bits)."""
    try:
        return orjson.dumps(value).decode()
    except TypeError:
        return json.dumps(value, ensure_ascii=False)


# (table, columns) -> the columns' type OIDs if all are built-in types (their OIDs are the same in every database),
# else None (text COPY). A table's column types change only with a migration, which restarts the processes.
_builtin_types: dict[tuple[str, tuple[str, ...]], list[int] | None] = {}
_FIRST_USER_OID = 16384  # PostgreSQL's FirstNormalObjectId: OIDs below it are built in

_COLUMN_TYPES = (
    "SELECT a.attname, a.atttypid FROM pg_attribute AS a "
    "WHERE a.attrelid = to_regclass(%(table)s) AND a.attname = ANY(%(columns)s) AND a.attnum > 0 AND NOT a.attisdropped"
)


def _builtin_column_types(cursor: Any, table: str, columns: Sequence[str]) -> list[int] | None:
    """The columns' type OIDs if all are built-in types (binary COPY), else None (text COPY: enums and other types
    created by the migrations have an OID of their own in each database)."""
    key = (table, tuple(columns))
    if key not in _builtin_types:
        cursor.execute(_COLUMN_TYPES, {"table": table, "columns": list(columns)})
        by_name = {name: int(oid) for name, oid in cursor.fetchall()}
        builtin = all(name in by_name for name in columns) and all(oid < _FIRST_USER_OID for oid in by_name.values())
        _builtin_types[key] = [by_name[name] for name in columns] if builtin else None
    return _builtin_types[key]


def copy_rows(
    session: Session,
    table: str,
    columns: Sequence[str],
    rows: Sequence[Sequence[Any]],
    *,
    json_columns: Collection[str] = (),
) -> int:
    """COPY `rows` (values in `columns` order) into `table` on the session's connection, in its transaction; the
    values of `json_columns` are sent as JSONB. Returns how many rows were sent."""
    if not rows:
        return 0
    json_positions = [position for position, name in enumerate(columns) if name in json_columns]
    target = sql.SQL("COPY {} ({}) FROM STDIN").format(
        sql.Identifier(table), sql.SQL(", ").join(sql.Identifier(name) for name in columns)
    )
    driver = session.connection().connection.driver_connection
    assert driver is not None
    with driver.cursor() as cursor:
        # On this cursor only: the connection goes back to the pool with its own JSON settings.
        set_json_dumps(json_text, context=cursor)
        types = _builtin_column_types(cursor, table, columns)
        statement = target if types is None else sql.SQL("{} (FORMAT BINARY)").format(target)
        with cursor.copy(statement) as copy:
            if types is not None:
                copy.set_types(types)
            for row in rows:
                values = list(row)
                for position in json_positions:
                    values[position] = Jsonb(values[position])
                copy.write_row(values)
    return len(rows)
