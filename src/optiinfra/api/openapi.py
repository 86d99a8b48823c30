"""The OpenAPI document as clients generate code from it: short stable operation ids, and per operation only the
error responses it can give.

Operation ids are `<tag>_<function>` (`recommendations_decide`), unique across the API (tested), so generated
clients get readable method names that do not change when a path does. The error responses are declared once for
the whole API (ERROR_RESPONSES) and then pruned by what each operation can meet: no 401, 403 or 429 without
authentication, no 413 without a request body, no 422 without any input, no 409 on a read, no 404 on a fixed
path without input. (`/healthz` bypasses admission control but keeps its 503: `optiinfra serve`'s front gives it
while no API process runs.)
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import FastAPI
from fastapi.routing import APIRoute

_READS = {"get", "head", "options"}


def operation_id(route: APIRoute) -> str:
    """`<first tag>_<endpoint function name>`, or the function's name for an untagged route."""
    tag = str(route.tags[0]).replace("-", "_").replace(" ", "_") if route.tags else ""
    return f"{tag}_{route.name}" if tag else route.name


def _prune(operation: dict[str, Any], method: str) -> None:
    responses: dict[str, Any] = operation.get("responses", {})
    drop: set[str] = set()
    if not operation.get("security"):
        drop |= {"401", "403", "429"}
    if "requestBody" not in operation:
        drop.add("413")
        if not operation.get("parameters"):
            drop.add("422")
    if method in _READS:
        drop.add("409")
    if not operation.get("security") and "requestBody" not in operation and not operation.get("parameters"):
        drop.add("404")  # a fixed path with no input (the health checks, /metrics)
    for status in drop:
        responses.pop(status, None)


def install_openapi(app: FastAPI) -> None:
    """Make `app.openapi()` return the pruned document (built once, then cached by FastAPI)."""
    build: Callable[[], dict[str, Any]] = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        schema = build()
        for item in schema.get("paths", {}).values():
            for method, operation in item.items():
                if isinstance(operation, dict) and "responses" in operation:
                    _prune(operation, method)
        return schema

    app.openapi = openapi  # type: ignore[method-assign]
