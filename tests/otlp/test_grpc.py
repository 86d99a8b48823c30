"""OTLP/gRPC against an `optiinfra serve` process: the real SDK's gRPC exporters configured by the two environment
variables, zero-code `opentelemetry-instrument` with its default protocol, and the protocol's edges (partial
success, authentication, undecodable and oversized messages) with grpcio's own client."""

from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys
import uuid
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import grpc
import pytest
from opentelemetry.exporter.otlp.proto.grpc._log_exporter import OTLPLogExporter
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.logs.v1.logs_service_pb2_grpc import LogsServiceStub
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2_grpc import TraceServiceStub
from opentelemetry.trace import SpanKind
from sqlalchemy import create_engine
from sqlalchemy.orm import sessionmaker

from optiinfra.api import processes
from optiinfra.auth.limiter import AuthFailureLimiter
from optiinfra.errors import ConfigurationError
from optiinfra.otlp import decode, grpc_receiver
from optiinfra.otlp.grpc_receiver import GrpcConfig, OtlpGrpcReceiver
from tests.otlp.conftest import SERVED_MODEL, FakeOpenAI, OtlpServer, OtlpTenant, rows_of
from tests.otlp.test_sdk_export import (
    GENAI,
    _raw_evaluation,
    _raw_trace,
    emit_evaluation,
    logger_provider,
    tracer_provider,
)

MAX_MESSAGE_BYTES = 16 * 1024 * 1024  # the server's body limit, which the gRPC receiver shares


def _message(message_type: type[Any], body: dict[str, Any]) -> Any:
    return decode.parse(message_type, json.dumps(body).encode(), decode.Encoding(decode.JSON))


@pytest.fixture
def two_variables(monkeypatch: pytest.MonkeyPatch, otlp_server: OtlpServer, otlp_tenant: OtlpTenant) -> None:
    for name in [name for name in os.environ if name.startswith("OTEL_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", otlp_server.grpc_endpoint)
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_HEADERS", f"Authorization=Bearer%20{otlp_tenant.key}")


@pytest.mark.usefixtures("two_variables")
def test_the_sdk_grpc_exporters_deliver_spans_and_evaluations(otlp_server: OtlpServer, otlp_tenant: OtlpTenant) -> None:
    tracer = tracer_provider(OTLPSpanExporter()).get_tracer("app")
    logs = logger_provider(OTLPLogExporter())
    inline, late = (f"chatcmpl-{uuid.uuid4().hex[:12]}" for _ in range(2))
    with tracer.start_as_current_span("POST /answer", kind=SpanKind.SERVER):
        for response_id in (inline, late):
            with tracer.start_as_current_span("chat gpt-4o", kind=SpanKind.CLIENT) as span:
                span.set_attributes({**GENAI, "gen_ai.response.id": response_id})
                if response_id == inline:
                    span.add_event(
                        "gen_ai.evaluation.result",
                        {"gen_ai.evaluation.name": "coherence", "gen_ai.evaluation.score.value": 0.75},
                    )
    emit_evaluation(logs, "relevance", 0.6, **{"gen_ai.response.id": late})
    rows = rows_of(otlp_server.engine, otlp_tenant.customer_id)
    assert sorted(rows) == sorted([inline, late])
    for row in rows.values():
        assert (row["model_name"], row["model_version"]) == ("gpt-4o", "gpt-4o-2024-08-06")
        assert (row["prompt_tokens"], row["completion_tokens"]) == (120, 48)
        assert row["metadata"]["instance"] == "10.0.0.7:8000"
        assert "scores_pending" not in row["metadata"]
    assert rows[inline]["coherence_score"] == pytest.approx(0.75)
    assert rows[late]["relevance_score"] == pytest.approx(0.6)
    skipped = otlp_tenant.client.request("GET", "/otlp/report")["items"]
    assert [item["example"] for item in skipped if item["kind"] == "skipped_span"] == ["POST /answer"]


def test_grpc_answers_partial_success_and_status_codes(otlp_server: OtlpServer, otlp_tenant: OtlpTenant) -> None:
    target = otlp_server.grpc_endpoint.removeprefix("http://")
    key = (("authorization", f"Bearer {otlp_tenant.key}"),)
    span = {"gen_ai.operation.name": "chat", "gen_ai.request.model": "m", "gen_ai.response.model": "m-1"}
    with grpc.insecure_channel(target) as channel:
        traces, logs = TraceServiceStub(channel), LogsServiceStub(channel)
        body = _raw_trace({**span, "gen_ai.response.id": "g-1"}, {"gen_ai.operation.name": "chat"})
        response, call = traces.Export.with_call(_message(ExportTraceServiceRequest, body), metadata=key)
        assert response.partial_success.rejected_spans == 1
        assert "no model name" in response.partial_success.error_message
        assert ("x-optiinfra-stored", "1") in call.trailing_metadata()
        # The evaluation lands on the stored record through LogsService.
        answer = logs.Export(_message(ExportLogsServiceRequest, _raw_evaluation("g-1", 0.4)), metadata=key)
        assert not answer.HasField("partial_success")
        assert rows_of(otlp_server.engine, otlp_tenant.customer_id)["g-1"]["relevance_score"] == pytest.approx(0.4)

        def status(request: Any, metadata: Any = key, **options: Any) -> grpc.StatusCode:
            with pytest.raises(grpc.RpcError) as raised:
                traces.Export(request, metadata=metadata, **options)
            code: grpc.StatusCode = raised.value.code()
            return code

        empty = ExportTraceServiceRequest()
        assert status(empty, metadata=()) is grpc.StatusCode.UNAUTHENTICATED
        assert status(empty, metadata=(("authorization", "Bearer oi_cu_not-a-key"),)) is grpc.StatusCode.UNAUTHENTICATED
        # A message that is not an ExportTraceServiceRequest: INVALID_ARGUMENT with the reason, not INTERNAL.
        raw = channel.unary_unary("/opentelemetry.proto.collector.trace.v1.TraceService/Export")
        with pytest.raises(grpc.RpcError) as raised:
            raw(b"\xff\xff\xff not protobuf", metadata=key)
        assert raised.value.code() is grpc.StatusCode.INVALID_ARGUMENT
        assert "not a protobuf ExportTraceServiceRequest" in str(raised.value.details())
        # Over the size limit, also once a small gzip message is decompressed.
        huge = _message(ExportTraceServiceRequest, _raw_trace({**span, "padding": "x" * MAX_MESSAGE_BYTES}))
        assert status(huge) is grpc.StatusCode.RESOURCE_EXHAUSTED
        assert len(gzip.compress(huge.SerializeToString())) < 100_000
        assert status(huge, compression=grpc.Compression.Gzip) is grpc.StatusCode.RESOURCE_EXHAUSTED
        # An agent key names its customer in the resource, as over HTTP.
        agent = (("authorization", f"Bearer {otlp_tenant.agent_key}"),)
        unnamed = traces.Export(_message(ExportTraceServiceRequest, _raw_trace(dict(span))), metadata=agent)
        assert "optiinfra.customer_id" in unnamed.partial_success.error_message
    assert list(rows_of(otlp_server.engine, otlp_tenant.customer_id)) == ["g-1"]


APP = """
import sys

import openai

client = openai.OpenAI(base_url=sys.argv[1], api_key="sk-test")
client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "Capital of Spain?"}])
"""


def test_zero_code_instrumentation_with_two_variables(
    fake_openai: str, otlp_server: OtlpServer, otlp_tenant: OtlpTenant, tmp_path: Path
) -> None:
    """`opentelemetry-instrument python app.py` with its defaults (OTLP/gRPC) and only the endpoint and the key set
    (and a service name, which is optional)."""
    app = tmp_path / "app.py"
    app.write_text(APP)
    env = {name: value for name, value in os.environ.items() if not name.startswith("OTEL_")}
    env["OTEL_EXPORTER_OTLP_ENDPOINT"] = otlp_server.grpc_endpoint
    env["OTEL_EXPORTER_OTLP_HEADERS"] = f"Authorization=Bearer%20{otlp_tenant.key}"
    env["OTEL_SERVICE_NAME"] = "madrid-bot"
    instrument = Path(sys.executable).parent / "opentelemetry-instrument"
    finished = subprocess.run(
        [str(instrument), sys.executable, str(app), fake_openai], env=env, capture_output=True, timeout=120
    )
    assert finished.returncode == 0, finished.stderr.decode()[-3000:]
    (answer,) = FakeOpenAI.answered
    rows = rows_of(otlp_server.engine, otlp_tenant.customer_id)
    assert answer["id"] in rows
    for row in rows.values():
        assert row["model_version"] == SERVED_MODEL
        assert row["prompt_tokens"] == answer["usage"]["prompt_tokens"]
        assert row["metadata"]["service_name"] == "madrid-bot"


def test_a_taken_port_is_refused_unless_it_is_the_default(monkeypatch: pytest.MonkeyPatch) -> None:
    """grpcio would share a port with another server (SO_REUSEPORT) and split the calls between them; the receiver
    refuses a taken port instead. `optiinfra serve` then stops if the port was chosen, and goes on without
    OTLP/gRPC (with a warning) if it was the default."""
    config = GrpcConfig(
        session_factory=sessionmaker(),
        operator_key_digest="",
        auth_limiter=AuthFailureLimiter(30),
        max_message_bytes=MAX_MESSAGE_BYTES,
        lock_timeout_ms=5_000,
    )
    first = OtlpGrpcReceiver(config)
    port = first.start("127.0.0.1", 0)
    try:
        with pytest.raises(ConfigurationError, match=f"127.0.0.1:{port}"):
            OtlpGrpcReceiver(config).start("127.0.0.1", port)
        state = SimpleNamespace(
            session_factory=config.session_factory,
            operator_key_digest="",
            auth_limiter=config.auth_limiter,
            max_body_bytes=MAX_MESSAGE_BYTES,
            lock_timeout_ms=5_000,
            max_in_flight=8,
        )
        engine = create_engine("postgresql+psycopg://nobody@127.0.0.1:1/none", pool_size=20, max_overflow=0)
        with pytest.raises(ConfigurationError):
            processes.start_otlp_grpc(state, engine, "127.0.0.1", port)
        monkeypatch.setattr(grpc_receiver, "DEFAULT_PORT", port)
        assert processes.start_otlp_grpc(state, engine, "127.0.0.1", None) is None
        assert processes.start_otlp_grpc(state, engine, "127.0.0.1", 0) is None
    finally:
        first.stop(0)
