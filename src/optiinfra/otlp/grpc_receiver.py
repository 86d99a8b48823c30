"""OTLP/gRPC: `TraceService/Export` and `LogsService/Export` on their own port, beside the HTTP server.

The OpenTelemetry SDKs' default protocol is OTLP/gRPC (port 4317), so an application instrumented without code
(`opentelemetry-instrument`) reaches OptiInfra with the endpoint and the key alone. Each call goes through exactly
what `POST /v1/traces` and `POST /v1/logs` run: the same body decoding (`decode.parse`), the same key check and
failed-authentication throttle, and `service.export_traces` / `service.export_logs` in one transaction; the answer
carries the same `partial_success`. Errors are gRPC status codes (the ones OTLP exporters retry on are used for
temporary conditions only).

Threads, not the event loop: grpcio's synchronous server works on each call in a thread of its own small pool, so
nothing here runs on uvicorn's event loop. A call's transaction begins once its whole message has arrived and ends
before the answer is sent. Calls beyond the pool (plus a short queue) are refused at once with RESOURCE_EXHAUSTED,
so gRPC callers cannot take the database connections the HTTP server counts on.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, NoReturn, TypeVar

import grpc
import psycopg
from google.protobuf.message import Message
from opentelemetry.proto.collector.logs.v1 import logs_service_pb2
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import (
    ExportLogsServiceRequest,
    ExportLogsServiceResponse,
)
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from sqlalchemy.exc import IntegrityError, OperationalError, SQLAlchemyError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from sqlalchemy.orm import Session, sessionmaker

from optiinfra.api.deps import apply_lock_timeout
from optiinfra.auth.limiter import AuthFailureLimiter, attempt_buckets
from optiinfra.auth.principal import Principal
from optiinfra.auth.service import authenticate
from optiinfra.db.engine import unit_of_work
from optiinfra.errors import ConfigurationError, OptiInfraError, UnauthorizedError
from optiinfra.otlp import decode, service

logger = logging.getLogger("optiinfra.otlp.grpc")

DEFAULT_PORT = 4317
# Calls worked on at once (each holds one pooled connection while it works), and calls that may wait for a thread.
DEFAULT_WORKERS = 4
QUEUED_CALLS = 4
TRACE_SERVICE = trace_service_pb2.DESCRIPTOR.services_by_name["TraceService"].full_name
LOGS_SERVICE = logs_service_pb2.DESCRIPTOR.services_by_name["LogsService"].full_name
_STATUS_BY_VALUE = {status.value[0]: status for status in grpc.StatusCode}
_PROTOBUF = decode.Encoding(decode.PROTOBUF)

M = TypeVar("M", bound=Message)


@dataclass(frozen=True)
class GrpcConfig:
    """What the receiver shares with the HTTP server: its sessions, the operator key, the throttle, the limits."""

    session_factory: sessionmaker[Session]
    operator_key_digest: str
    auth_limiter: AuthFailureLimiter
    max_message_bytes: int
    lock_timeout_ms: int
    workers: int = DEFAULT_WORKERS


def status_of(http_status: int) -> grpc.StatusCode:
    """The gRPC status for an OptiInfra error's HTTP status (the mapping OTLP/HTTP's Status bodies use)."""
    return _STATUS_BY_VALUE[decode.rpc_code(http_status)]


def _bearer_key(metadata: Sequence[tuple[str, str | bytes]] | None) -> str | None:
    for name, value in metadata or ():
        if name.lower() == "authorization" and isinstance(value, str):
            scheme, _, key = value.strip().partition(" ")
            if scheme.lower() == "bearer" and key.strip():
                return key.strip()
    return None


def _peer_address(peer: str) -> str:
    """The client's address from gRPC's peer string ("ipv4:10.0.0.7:51234", "ipv6:[::1]:51234", "unix:...")."""
    kind, _, rest = peer.partition(":")
    if kind == "ipv6" and rest.startswith("["):
        return rest[1 : rest.find("]")]
    if kind == "ipv4":
        return rest.rpartition(":")[0]
    return peer


class OtlpGrpcReceiver:
    """The gRPC server: start() binds the port (or raises ConfigurationError saying why not), stop() drains it."""

    def __init__(self, config: GrpcConfig) -> None:
        self.config = config
        self.server = grpc.server(
            ThreadPoolExecutor(max_workers=config.workers, thread_name_prefix="optiinfra-otlp-grpc"),
            handlers=[
                self._service(TRACE_SERVICE, ExportTraceServiceRequest, self._export_traces),
                self._service(LOGS_SERVICE, ExportLogsServiceRequest, self._export_logs),
            ],
            maximum_concurrent_rpcs=config.workers + QUEUED_CALLS,
            options=[
                # Also applies to a compressed message once decompressed.
                ("grpc.max_receive_message_length", config.max_message_bytes),
                # Without this a second server on the same port would silently share its calls.
                ("grpc.so_reuseport", 0),
            ],
        )

    @staticmethod
    def _service(
        name: str, request_type: type[M], handler: Callable[[M, grpc.ServicerContext], Message]
    ) -> grpc.GenericRpcHandler:
        """The service's Export method. The body arrives as bytes and is parsed by `decode.parse`, like an OTLP/HTTP
        body: an undecodable message is INVALID_ARGUMENT with the reason (grpcio's own deserialisation would answer
        INTERNAL)."""

        def export(body: bytes, context: grpc.ServicerContext) -> Message:
            try:
                request = decode.parse(request_type, body, _PROTOBUF)
            except decode.OtlpBodyError as error:
                _abort(context, grpc.StatusCode.INVALID_ARGUMENT, error.message)
            return handler(request, context)

        method: grpc.RpcMethodHandler[bytes, Message] = grpc.unary_unary_rpc_method_handler(
            export, request_deserializer=None, response_serializer=lambda message: message.SerializeToString()
        )
        return grpc.method_handlers_generic_handler(name, {"Export": method})

    def start(self, host: str, port: int) -> int:
        """Listen on host:port (0: any free port); returns the port."""
        address = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        try:
            bound = self.server.add_insecure_port(address)
        except RuntimeError:
            bound = 0
        if not bound:
            raise ConfigurationError(
                f"OTLP/gRPC cannot listen on {address} (the port is in use or the address is not this machine's).",
                fix="Choose another port with --otlp-grpc-port, or turn OTLP/gRPC off with --otlp-grpc-port 0.",
            )
        self.server.start()
        return bound

    def stop(self, grace_seconds: float = 5.0) -> None:
        self.server.stop(grace_seconds).wait()

    # --- calls ---------------------------------------------------------------------------------------------------

    def _export_traces(self, request: ExportTraceServiceRequest, context: grpc.ServicerContext) -> Message:
        outcome = self._run(context, lambda session, principal: service.export_traces(session, principal, request))
        response = ExportTraceServiceResponse()
        if outcome.rejected:
            response.partial_success.rejected_spans = outcome.rejected
            response.partial_success.error_message = outcome.message
        return response

    def _export_logs(self, request: ExportLogsServiceRequest, context: grpc.ServicerContext) -> Message:
        outcome = self._run(context, lambda session, principal: service.export_logs(session, principal, request))
        response = ExportLogsServiceResponse()
        if outcome.rejected:
            response.partial_success.rejected_log_records = outcome.rejected
            response.partial_success.error_message = outcome.message
        return response

    def _run(
        self, context: grpc.ServicerContext, export: Callable[[Session, Principal], service.ExportOutcome]
    ) -> service.ExportOutcome:
        """Authenticate and export in one transaction; any failure is rolled back, then answered with a status."""
        key = _bearer_key(context.invocation_metadata())
        try:
            with unit_of_work(self.config.session_factory) as session:
                apply_lock_timeout(session, self.config.lock_timeout_ms)
                principal = self._authenticate(session, key, context.peer())
                outcome = export(session, principal)
        except OptiInfraError as error:
            _abort(context, status_of(error.status_code), error.message)
        except (OperationalError, PoolTimeoutError, IntegrityError, psycopg.Error) as error:
            _abort(context, *_database_status(error))
        except SQLAlchemyError as error:
            logger.error("OTLP/gRPC export: database error %s", type(error).__name__)
            _abort(context, grpc.StatusCode.INTERNAL, "The database refused the request.")
        context.set_trailing_metadata(
            (
                ("x-optiinfra-stored", str(outcome.stored)),
                ("x-optiinfra-duplicates", str(outcome.duplicates)),
                ("x-optiinfra-skipped", str(outcome.skipped)),
            )
        )
        return outcome

    def _authenticate(self, session: Session, key: str | None, peer: str) -> Principal:
        try:
            return authenticate(session, key, self.config.operator_key_digest)
        except UnauthorizedError:
            # Counted with the HTTP server's failures: the same throttle, per client address and key prefix.
            self.config.auth_limiter.refuse_failure(attempt_buckets(_peer_address(peer), key))
            raise


def _database_status(error: Exception) -> tuple[grpc.StatusCode, str]:
    """Temporary database conditions as the statuses OTLP exporters retry on; the rest as INTERNAL."""
    original: Any = getattr(error, "orig", None) or error
    conflicts = psycopg.errors.LockNotAvailable | psycopg.errors.DeadlockDetected | psycopg.errors.SerializationFailure
    if isinstance(original, conflicts) or isinstance(error, IntegrityError):
        return grpc.StatusCode.ABORTED, "The change conflicts with another made at the same time; retry."
    if isinstance(error, PoolTimeoutError | OperationalError) or isinstance(original, psycopg.OperationalError):
        logger.warning("OTLP/gRPC export: database unavailable (%s)", type(original).__name__)
        return grpc.StatusCode.UNAVAILABLE, "The database is unavailable; retry shortly."
    logger.error("OTLP/gRPC export: database error %s", type(original).__name__)
    return grpc.StatusCode.INTERNAL, "The database refused the request."


def _abort(context: grpc.ServicerContext, code: grpc.StatusCode, message: str) -> NoReturn:
    context.abort(code, message)
    raise AssertionError("grpc.ServicerContext.abort returned")  # it raises; this satisfies the type checker
