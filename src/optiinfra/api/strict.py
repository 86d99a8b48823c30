"""Request input PostgreSQL cannot store is refused up front with 422, not failed on in the database.

JSON allows what JSONB and text columns do not: NaN and Infinity (Python's parser accepts them), the NUL character
(U+0000) in strings and keys, and nesting deep enough to exhaust the serializer. Query strings may carry NUL too.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Coroutine
from typing import Any

from fastapi import Request, Response
from fastapi.routing import APIRoute

from optiinfra.errors import InvalidInputError

MAX_JSON_DEPTH = 64


class _NonFinite:
    """Stands in for NaN or Infinity while parsing, so the walk can say where it was."""

    def __init__(self, name: str) -> None:
        self.name = name


def _refuse(message: str, kind: str, location: list[str | int]) -> InvalidInputError:
    return InvalidInputError(message, details={"problems": [{"location": location, "message": message, "type": kind}]})


def _check_value(value: Any, path: list[str | int]) -> None:
    if len(path) > MAX_JSON_DEPTH:
        raise _refuse(f"JSON nested deeper than {MAX_JSON_DEPTH} levels is not accepted.", "too_deep", ["body", *path])
    if isinstance(value, _NonFinite):
        raise _refuse(f"JSON numbers must be finite; {value.name} is not accepted.", "finite_number", ["body", *path])
    if isinstance(value, str):
        if "\x00" in value:
            raise _refuse("Text may not contain the NUL character (U+0000).", "nul_character", ["body", *path])
    elif isinstance(value, dict):
        for key, item in value.items():
            if "\x00" in key:
                raise _refuse("JSON keys may not contain the NUL character (U+0000).", "nul_character", ["body", *path])
            _check_value(item, [*path, key])
    elif isinstance(value, list):
        for index, item in enumerate(value):
            _check_value(item, [*path, index])


def parse_strict_json(body: bytes) -> Any:
    """Parse a JSON body, refusing non-finite numbers, NUL characters and excessive nesting.

    Returns None when the body is not valid JSON at all, so the framework reports it in its usual way.
    """
    try:
        value = json.loads(body, parse_constant=_NonFinite)
    except RecursionError as error:
        raise _refuse(
            f"JSON nested deeper than {MAX_JSON_DEPTH} levels is not accepted.", "too_deep", ["body"]
        ) from error
    except ValueError:
        return None
    _check_value(value, [])
    return value


class StrictRoute(APIRoute):
    """An APIRoute that vets query strings and JSON bodies before the endpoint sees them."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def strict_handler(request: Request) -> Response:
            for name, value in request.query_params.multi_items():
                if "\x00" in value or "\x00" in name:
                    raise _refuse(
                        "Query parameters may not contain the NUL character (U+0000).", "nul_character", ["query", name]
                    )
            body = await request.body()
            if body and "json" in request.headers.get("content-type", ""):
                parsed = parse_strict_json(body)
                if parsed is not None:
                    # Starlette caches the parsed body here; the framework's own request.json() then reuses it.
                    request._json = parsed
            return await handler(request)

        return strict_handler
