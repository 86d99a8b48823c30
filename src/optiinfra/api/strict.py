"""Request input PostgreSQL cannot store is refused up front with 422, not failed on in the database.

JSON allows what JSONB and text columns do not: NaN and Infinity (Python's parser accepts them), numbers beyond
the range of a double (`1e999`, a 5,000-digit integer), lone UTF-16 surrogates (`"\\ud800"`, not encodable as
UTF-8), the NUL character (U+0000) in strings and keys, and nesting deep enough to exhaust the serializer. Query
strings may carry NUL too.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Coroutine
from typing import Any

import orjson
from fastapi import Request, Response
from fastapi.routing import APIRoute
from starlette.concurrency import run_in_threadpool

from optiinfra.errors import InvalidInputError
from optiinfra.gcpause import no_cyclic_gc

MAX_JSON_DEPTH = 64
# Bodies larger than this are parsed and vetted on a worker thread: parsing and walking a 1,000-record batch takes
# milliseconds, and on the event loop it would delay every other connection (health checks included) that long.
INLINE_PARSE_BYTES = 16 * 1024


class _NonFinite:
    """Stands in for NaN, Infinity or a number beyond double range while parsing, so the walk can say where it was."""

    def __init__(self, name: str) -> None:
        self.name = name


# The largest finite double is about 1.8e308: an integer with more digits than that cannot be one.
_MAX_INTEGER_DIGITS = 308


def _parse_float(text: str) -> float | _NonFinite:
    value = float(text)
    return _NonFinite(f"{text[:20]} (beyond the range of a double)") if value in (math.inf, -math.inf) else value


def _parse_int(text: str) -> int | _NonFinite:
    if len(text.lstrip("-")) > _MAX_INTEGER_DIGITS:
        return _NonFinite(f"an integer of {len(text.lstrip('-'))} digits (beyond the range of a double)")
    return int(text)


def _has_surrogate(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def _refuse(message: str, kind: str, location: list[str | int]) -> InvalidInputError:
    return InvalidInputError(message, details={"problems": [{"location": location, "message": message, "type": kind}]})


_CONTAINERS = (dict, list)


def _looks_clean(root: Any, *, strings: bool) -> bool:
    """Fast pass, no paths kept: True when nothing needs reporting (the common case)."""
    stack: list[tuple[Any, int]] = [(root, 0)]
    while stack:
        value, depth = stack.pop()
        kind = type(value)
        if kind is dict:
            if depth >= MAX_JSON_DEPTH:
                return False
            if strings and any("\x00" in key or _has_surrogate(key) for key in value):
                return False
            items = value.values()
        elif kind is list:
            if depth >= MAX_JSON_DEPTH:
                return False
            items = value
        elif kind is _NonFinite or (kind is str and ("\x00" in value or _has_surrogate(value))):
            return False
        else:
            continue
        for item in items:
            item_kind = type(item)
            if item_kind is dict or item_kind is list or item_kind is _NonFinite or (strings and item_kind is str):
                stack.append((item, depth + 1))
    return True


def _check_value(root: Any, *, strings: bool) -> None:
    """Walk the parsed body for non-finite numbers, excessive nesting and, if asked, NUL in text; raise with the
    place of the first problem. A fast pass without paths runs first; the slow pass only runs to report."""
    if _looks_clean(root, strings=strings):
        return
    stack: list[tuple[Any, list[str | int]]] = [(root, [])]
    while stack:
        value, path = stack.pop()
        if isinstance(value, dict):
            if len(path) >= MAX_JSON_DEPTH:
                raise _refuse(
                    f"JSON nested deeper than {MAX_JSON_DEPTH} levels is not accepted.", "too_deep", ["body", *path]
                )
            for key, item in value.items():
                if strings and "\x00" in key:
                    raise _refuse(
                        "JSON keys may not contain the NUL character (U+0000).", "nul_character", ["body", *path]
                    )
                if strings and _has_surrogate(key):
                    raise _refuse(
                        "JSON keys must be valid Unicode; a lone surrogate is not accepted.",
                        "invalid_unicode",
                        ["body", *path],
                    )
                if isinstance(item, dict | list | _NonFinite) or (strings and isinstance(item, str)):
                    stack.append((item, [*path, key]))
        elif isinstance(value, list):
            if len(path) >= MAX_JSON_DEPTH:
                raise _refuse(
                    f"JSON nested deeper than {MAX_JSON_DEPTH} levels is not accepted.", "too_deep", ["body", *path]
                )
            for index, item in enumerate(value):
                if isinstance(item, dict | list | _NonFinite) or (strings and isinstance(item, str)):
                    stack.append((item, [*path, index]))
        elif isinstance(value, _NonFinite):
            raise _refuse(
                f"JSON numbers must be finite doubles; {value.name} is not accepted.", "finite_number", ["body", *path]
            )
        elif isinstance(value, str) and "\x00" in value:
            raise _refuse("Text may not contain the NUL character (U+0000).", "nul_character", ["body", *path])
        elif isinstance(value, str) and _has_surrogate(value):
            raise _refuse(
                "Text must be valid Unicode; a lone surrogate is not accepted.", "invalid_unicode", ["body", *path]
            )


def parse_strict_json(body: bytes) -> Any:
    """Parse a JSON body, refusing non-finite or out-of-range numbers, NUL characters, lone surrogates and excessive
    nesting.

    Returns None when the body is not valid JSON at all, so the framework reports it in its usual way.
    """
    try:
        # orjson is several times faster and refuses NaN, Infinity, numbers beyond double range and lone surrogates
        # itself; when it refuses, the standard parser tells those (reported with their place) from malformed JSON.
        value = orjson.loads(body)
    except orjson.JSONDecodeError:
        value = None
    if value is not None:
        _check_value(value, strings=b"\\u0000" in body)
        return value
    try:
        value = json.loads(body, parse_constant=_NonFinite, parse_float=_parse_float, parse_int=_parse_int)
    except RecursionError as error:
        raise _refuse(
            f"JSON nested deeper than {MAX_JSON_DEPTH} levels is not accepted.", "too_deep", ["body"]
        ) from error
    except ValueError:
        return None
    # Only reached when orjson refused the body: strings are searched for lone surrogates as well as NUL.
    _check_value(value, strings=True)
    return value


def _parse_large(body: bytes) -> Any:
    with no_cyclic_gc():  # a large body's parse allocates thousands of objects and no cycle (optiinfra.gcpause)
        return parse_strict_json(body)


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
                try:
                    body.decode("utf-8")
                except UnicodeDecodeError:
                    raise _refuse("The body is not valid UTF-8.", "invalid_utf8", ["body"]) from None
                if len(body) > INLINE_PARSE_BYTES:
                    parsed = await run_in_threadpool(_parse_large, body)
                else:
                    parsed = parse_strict_json(body)
                if parsed is not None:
                    # Starlette caches the parsed body here; the framework's own request.json() then reuses it.
                    request._json = parsed
            return await handler(request)

        return strict_handler
