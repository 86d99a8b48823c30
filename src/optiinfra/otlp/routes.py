"""POST /v1/traces and /v1/logs (OTLP/HTTP), and /api/v1/otlp/settings and /report."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Coroutine
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request, Response
from fastapi.routing import APIRoute
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import (
    ExportLogsServiceRequest,
    ExportLogsServiceResponse,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)

from optiinfra.api.deps import PrincipalDep, SessionDep
from optiinfra.api.strict import StrictRoute
from optiinfra.errors import OptiInfraError
from optiinfra.otlp import decode, service
from optiinfra.otlp import schemas as otlp_schemas
from optiinfra.otlp.settings import OtlpSettings


class OtlpRoute(APIRoute):
    """Errors on the OTLP paths are answered as OTLP/HTTP says: a google.rpc.Status in the request's encoding."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def otlp_handler(request: Request) -> Response:
            try:
                return await handler(request)
            except OptiInfraError as error:
                try:
                    encoding = decode.encoding_of(request.headers.get("content-type"))
                except decode.UnsupportedMediaTypeError:
                    encoding = decode.Encoding(decode.JSON)
                headers = {}
                if "retry_after_seconds" in error.details:
                    headers["Retry-After"] = str(error.details["retry_after_seconds"])
                return Response(
                    decode.status_body(error.status_code, error.message, encoding),
                    status_code=error.status_code,
                    media_type=encoding.media_type,
                    headers=headers,
                )

        return otlp_handler


async def _raw_body(request: Request) -> bytes:
    return await request.body()


RawBody = Annotated[bytes, Depends(_raw_body)]

_OTLP_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            decode.PROTOBUF: {"schema": {"type": "string", "format": "binary"}},
            decode.JSON: {"schema": {"type": "object"}},
        },
    },
}
# OTLP errors are a google.rpc.Status, not the API's error shape (except 413 from the body-size limit, which answers
# before any route).
_OTLP_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {"description": "Accepted; `partial_success` counts the rejected items and says why"},
    **{
        status: {"model": otlp_schemas.OtlpStatus, "description": description}
        for status, description in {
            400: "The body cannot be decoded",
            401: "Missing or invalid API key",
            403: "The key may not write (suspended customer)",
            415: "Content-Type or Content-Encoding not supported",
            429: "Too many failed authentication attempts; retry after Retry-After",
        }.items()
    },
}

ingest_router = APIRouter(tags=["otlp"], route_class=OtlpRoute)


def _reply(message: Any, encoding: decode.Encoding, outcome: service.ExportOutcome) -> Response:
    return Response(
        decode.serialize(message, encoding),
        media_type=encoding.media_type,
        headers={
            "X-OptiInfra-Stored": str(outcome.stored),
            "X-OptiInfra-Duplicates": str(outcome.duplicates),
            "X-OptiInfra-Skipped": str(outcome.skipped),
        },
    )


@ingest_router.post("/v1/traces", response_class=Response, responses=_OTLP_RESPONSES, openapi_extra=_OTLP_BODY)
def export_traces(request: Request, body: RawBody, session: SessionDep, principal: PrincipalDep) -> Response:
    """OTLP/HTTP trace export (protobuf or JSON, optionally gzip): each LLM span becomes a quality record, and its
    gen_ai.evaluation.result events become the record's scores. Non-LLM spans are skipped and counted."""
    encoding = decode.encoding_of(request.headers.get("content-type"))
    data = decode.decompress(body, request.headers.get("content-encoding"))
    outcome = service.export_traces(session, principal, decode.parse(ExportTraceServiceRequest, data, encoding))
    response = ExportTraceServiceResponse()
    if outcome.rejected:
        response.partial_success.rejected_spans = outcome.rejected
        response.partial_success.error_message = outcome.message
    return _reply(response, encoding, outcome)


@ingest_router.post("/v1/logs", response_class=Response, responses=_OTLP_RESPONSES, openapi_extra=_OTLP_BODY)
def export_logs(request: Request, body: RawBody, session: SessionDep, principal: PrincipalDep) -> Response:
    """OTLP/HTTP log export: gen_ai.evaluation.result events become scores on the evaluated request, matched by
    gen_ai.response.id or the log record's span context; other log records are rejected with a reason."""
    encoding = decode.encoding_of(request.headers.get("content-type"))
    data = decode.decompress(body, request.headers.get("content-encoding"))
    outcome = service.export_logs(session, principal, decode.parse(ExportLogsServiceRequest, data, encoding))
    response = ExportLogsServiceResponse()
    if outcome.rejected:
        response.partial_success.rejected_log_records = outcome.rejected
        response.partial_success.error_message = outcome.message
    return _reply(response, encoding, outcome)


api_router = APIRouter(prefix="/api/v1/otlp", tags=["otlp"], route_class=StrictRoute)


@api_router.get("/settings", response_model=OtlpSettings)
def get_settings(session: SessionDep, principal: PrincipalDep, customer_id: uuid.UUID | None = None) -> OtlpSettings:
    """Where model name, version and route come from, and the customer's own evaluation names."""
    return service.get_settings(session, principal, customer_id)


@api_router.put("/settings", response_model=OtlpSettings)
def update_settings(
    payload: OtlpSettings, session: SessionDep, principal: PrincipalDep, customer_id: uuid.UUID | None = None
) -> OtlpSettings:
    return service.update_settings(session, principal, customer_id, payload)


@api_router.get("/report", response_model=otlp_schemas.NotUnderstoodReport)
def not_understood(
    session: SessionDep,
    principal: PrincipalDep,
    customer_id: uuid.UUID | None = None,
    days: Annotated[int, Query(ge=1, le=90)] = 7,
    limit: Annotated[int, Query(ge=1, le=1000)] = 200,
) -> otlp_schemas.NotUnderstoodReport:
    """Attributes, evaluation names, spans and log records that did not become part of a quality record, with
    counts and an example each, over the last `days` days."""
    return service.not_understood(session, principal, customer_id, days, limit)


router = APIRouter()
router.include_router(ingest_router)
router.include_router(api_router)
