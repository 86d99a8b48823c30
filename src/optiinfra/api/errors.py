"""One JSON shape for every error: {"error": {"code", "message", "details"}}."""

from __future__ import annotations

import logging
from typing import Any

import psycopg
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from sqlalchemy.exc import DBAPIError, IntegrityError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from starlette.exceptions import HTTPException as StarletteHTTPException

from optiinfra.errors import OptiInfraError

logger = logging.getLogger("optiinfra.api")


class ErrorBody(BaseModel):
    code: str
    message: str
    details: dict[str, Any]


class ErrorResponse(BaseModel):
    error: ErrorBody


RETRY_AFTER_SECONDS = 1


def error_response(status: int, code: str, message: str, details: dict[str, Any] | None = None) -> JSONResponse:
    response = JSONResponse(
        status_code=status, content={"error": {"code": code, "message": message, "details": details or {}}}
    )
    if status == 503:
        # Every 503 is temporary: say when to come back.
        response.headers["Retry-After"] = str(RETRY_AFTER_SECONDS)
    return response


# Bodies that may take one of two shapes, told apart by a key: report only the shape the client meant, not why the
# body is not the other one too. (shape with the key, shape without it, the key)
BODY_SHAPES = (("IngestRequest", "SingleRecord", "records"),)


def _validation_details(error: RequestValidationError) -> dict[str, Any]:
    raw = list(error.errors())
    body = getattr(error, "body", None)
    for with_key, without_key, key in BODY_SHAPES:
        branches = {with_key, without_key}
        if any(len(p.get("loc", ())) > 1 and p["loc"][0] == "body" and p["loc"][1] in branches for p in raw):
            chosen = with_key if isinstance(body, dict) and key in body else without_key
            raw = [
                {**p, "loc": (p["loc"][0], *p["loc"][2:])} if p["loc"][1] == chosen else p
                for p in raw
                if not (len(p.get("loc", ())) > 1 and p["loc"][0] == "body" and p["loc"][1] in branches - {chosen})
            ]
    problems = [
        {
            "location": [str(part) for part in problem.get("loc", ())],
            "message": problem.get("msg", ""),
            "type": problem.get("type", ""),
        }
        for problem in raw
    ]
    return {"problems": problems}


HTTP_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "invalid_input",
    429: "too_many_requests",
}


def _locked() -> JSONResponse:
    # The request waited for a row lock longer than the lock time-out: another transaction is changing that row.
    return error_response(
        409,
        "conflict",
        "Another change to the same data is in progress; retry the request.",
        {"reason": "lock_timeout"},
    )


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(OptiInfraError)
    async def _domain(_: Request, error: OptiInfraError) -> JSONResponse:
        details = dict(error.details)
        if error.fix:
            details["fix"] = error.fix
        response = error_response(error.status_code, error.code, error.message, details)
        if "retry_after_seconds" in details:
            response.headers["Retry-After"] = str(details["retry_after_seconds"])
        return response

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, error: RequestValidationError) -> JSONResponse:
        return error_response(422, "invalid_input", "The request is not valid.", _validation_details(error))

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, error: StarletteHTTPException) -> JSONResponse:
        code = HTTP_CODES.get(error.status_code, "http_error")
        return error_response(error.status_code, code, str(error.detail))

    @app.exception_handler(IntegrityError)
    async def _integrity(_: Request, error: IntegrityError) -> JSONResponse:
        # A concurrent request created the same row first (unique key) or a row it relied on went away.
        constraint = getattr(getattr(error.orig, "diag", None), "constraint_name", None)
        return error_response(
            409,
            "conflict",
            "The change conflicts with another change made at the same time; retry the request.",
            {"constraint": constraint} if constraint else {},
        )

    @app.exception_handler(PoolTimeoutError)
    async def _pool_exhausted(_: Request, error: PoolTimeoutError) -> JSONResponse:
        # Admission control keeps requests within the pool; this is work outside requests crowding it.
        logger.warning("no database connection free within the pool timeout")
        return error_response(503, "overloaded", "The server has no database connection free; retry shortly.")

    @app.exception_handler(OperationalError)
    async def _unavailable(_: Request, error: OperationalError) -> JSONResponse:
        if isinstance(error.orig, psycopg.errors.LockNotAvailable):
            return _locked()
        logger.warning("database unavailable: %s", type(error.orig).__name__ if error.orig else error)
        return error_response(503, "database_unavailable", "The database is unavailable; retry shortly.")

    @app.exception_handler(DBAPIError)
    async def _database(_: Request, error: DBAPIError) -> JSONResponse:
        logger.error("database error: %s", type(error.orig).__name__ if error.orig else error)
        return error_response(500, "database_error", "The database refused the request.")

    @app.exception_handler(psycopg.Error)
    async def _driver(_: Request, error: psycopg.Error) -> JSONResponse:
        # Raised by code that talks to the driver directly (the COPY fast path), not wrapped by SQLAlchemy.
        if isinstance(error, psycopg.errors.DeadlockDetected | psycopg.errors.SerializationFailure):
            return error_response(
                409, "conflict", "The change conflicts with another change made at the same time; retry the request."
            )
        if isinstance(error, psycopg.errors.LockNotAvailable):
            return _locked()
        if isinstance(error, psycopg.OperationalError):
            return error_response(503, "database_unavailable", "The database is unavailable; retry shortly.")
        logger.error("database error: %s", type(error).__name__)
        return error_response(500, "database_error", "The database refused the request.")

    @app.exception_handler(Exception)
    async def _unexpected(_: Request, error: Exception) -> JSONResponse:
        logger.exception("unhandled error")
        return error_response(500, "internal_error", "An unexpected error occurred; it has been logged.")


ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorResponse, "description": description}
    for status, description in {
        401: "Missing or invalid API key",
        403: "The key's role may not do this, or the tenant is suspended",
        404: "No such row, or not the caller's",
        409: "The change conflicts with the current state",
        413: "Request body too large",
        422: "Invalid input",
        429: "Too many failed authentication attempts (`Retry-After` says when to try again)",
        503: "The server is at capacity or the database is unavailable (`Retry-After` says when to try again)",
    }.items()
}
for _status in (429, 503):
    ERROR_RESPONSES[_status]["headers"] = {
        "Retry-After": {"description": "Seconds to wait before retrying.", "schema": {"type": "integer"}}
    }
