"""Connections to ClickHouse for `store.ClickHouseStore`: a server through clickhouse-connect, or the engine
in-process through chdb (tests, benchmarks). Both receive the same SQL text and server-side parameters
(`{name:Type}`); the store formats every value as ClickHouse's text form of its type before either sees it.

Neither package is a dependency of OptiInfra itself: `pip install 'optiinfra[clickhouse]'` for a server, chdb for
the tests (the `dev` extra).
"""

from __future__ import annotations

import importlib
import json
import os
import re
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from optiinfra.errors import OptiInfraError

URL_VARIABLE = "OPTIINFRA_CLICKHOUSE_URL"
_TYPE = re.compile(r"^(Nullable\((?P<inner>.*)\)|(?P<plain>.*))$")


class ClickHouseUnavailableError(OptiInfraError):
    status_code = 503
    code = "clickhouse_unavailable"


def parameter_text(value: Any) -> str:
    """A value in the text form ClickHouse parses for a `{name:Type}` parameter."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, datetime):
        moment = value if value.tzinfo is None else value.astimezone(UTC)
        return moment.strftime("%Y-%m-%d %H:%M:%S.%f")
    if isinstance(value, list | tuple):
        return "[" + ",".join(_quoted(item) for item in value) + "]"
    return str(value)


def _quoted(value: Any) -> str:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)
    return "'" + parameter_text(value).replace("\\", "\\\\").replace("'", "\\'") + "'"


def _parameters(parameters: dict[str, Any] | None) -> dict[str, str]:
    return {name: parameter_text(value) for name, value in (parameters or {}).items()}


class HttpClickHouse:
    """A ClickHouse server over HTTP(S), through clickhouse-connect (`optiinfra[clickhouse]`)."""

    def __init__(self, url: str) -> None:
        try:
            import clickhouse_connect
        except ImportError as error:
            raise ClickHouseUnavailableError(
                f"{URL_VARIABLE} is set but clickhouse-connect is not installed: pip install 'optiinfra[clickhouse]'."
            ) from error
        self._client = clickhouse_connect.get_client(dsn=url)

    def command(self, sql: str, parameters: dict[str, Any] | None = None) -> None:
        self._client.command(sql, parameters=_parameters(parameters))

    def rows(self, sql: str, parameters: dict[str, Any] | None = None) -> list[tuple[Any, ...]]:
        return [tuple(row) for row in self._client.query(sql, parameters=_parameters(parameters)).result_rows]

    def insert_json_rows(self, table: str, columns: Sequence[str], lines: bytes, deduplication_token: str) -> None:
        self._client.raw_insert(
            table,
            column_names=list(columns),
            insert_block=lines,
            settings={"insert_deduplication_token": deduplication_token},
            fmt="JSONEachRow",
        )


class ChdbClickHouse:
    """The ClickHouse engine in this process (chdb), on a data directory of its own."""

    def __init__(self, path: str) -> None:
        # chdb has no type annotations; the session is used through the few calls below.
        chdb_session: Any = importlib.import_module("chdb.session")
        self._session: Any = chdb_session.Session(path)
        self._session.query("CREATE DATABASE IF NOT EXISTS optiinfra")
        self._session.query("USE optiinfra")

    def close(self) -> None:
        self._session.close()

    def command(self, sql: str, parameters: dict[str, Any] | None = None) -> None:
        self._session.query(sql, "TabSeparated", params=_parameters(parameters))

    def rows(self, sql: str, parameters: dict[str, Any] | None = None) -> list[tuple[Any, ...]]:
        result = self._session.query(sql, "JSONCompact", params=_parameters(parameters))
        data = result.bytes()
        if not data:
            return []
        document = json.loads(data)
        types = [column["type"] for column in document["meta"]]
        return [tuple(_typed(value, kind) for value, kind in zip(row, types, strict=True)) for row in document["data"]]

    def insert_json_rows(self, table: str, columns: Sequence[str], lines: bytes, deduplication_token: str) -> None:
        self._session.query(
            f"INSERT INTO {table} ({', '.join(columns)}) SETTINGS insert_deduplication_token = "
            f"{_quoted(deduplication_token)} FORMAT JSONEachRow\n" + lines.decode()
        )


def _typed(value: Any, kind: str) -> Any:
    """A JSONCompact value as the Python value clickhouse-connect returns for the type (JSON quotes 64-bit
    integers; nested values, such as the histograms' tuples of arrays, are left to the store)."""
    if value is None:
        return None
    match = _TYPE.match(kind)
    base = (match.group("inner") or match.group("plain")) if match else kind
    base = base.removeprefix("LowCardinality(").removesuffix(")") if base.startswith("LowCardinality(") else base
    if base == "UUID":
        return uuid.UUID(value)
    if base.startswith("DateTime"):
        return datetime.fromisoformat(value).replace(tzinfo=UTC)
    if base == "Bool":
        return bool(value)
    if base.startswith(("Float", "Decimal")):
        return float(value)
    if base.startswith(("Int", "UInt")):
        return int(value)
    return value


def client_from_environment() -> HttpClickHouse | None:
    """The ClickHouse server named by OPTIINFRA_CLICKHOUSE_URL, or None when it is not set."""
    url = os.environ.get(URL_VARIABLE, "").strip()
    return HttpClickHouse(url) if url else None
