"""COPY into a table inside the session's transaction: the fast path for batches of rows (metrics ingest).

One helper for every table: the statement is composed from identifiers (psycopg.sql), never by formatting strings,
and JSON columns are sent as JSONB encoded by orjson.
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
    statement = sql.SQL("COPY {} ({}) FROM STDIN").format(
        sql.Identifier(table), sql.SQL(", ").join(sql.Identifier(name) for name in columns)
    )
    driver = session.connection().connection.driver_connection
    assert driver is not None
    with driver.cursor() as cursor:
        # On this cursor only: the connection goes back to the pool with its own JSON settings.
        set_json_dumps(json_text, context=cursor)
        with cursor.copy(statement) as copy:
            for row in rows:
                values = list(row)
                for position in json_positions:
                    values[position] = Jsonb(values[position])
                copy.write_row(values)
    return len(rows)
