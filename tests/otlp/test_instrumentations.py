"""Stock instrumentations, unchanged: the real `openai` SDK calls a small OpenAI-compatible server on loopback,
instrumented by opentelemetry-instrumentation-openai-v2, OpenLLMetry's opentelemetry-instrumentation-openai or
openinference-instrumentation-openai, exporting to an `optiinfra serve` process configured by two environment
variables. The rows that arrive carry the model, tokens, latency and ids the fake server answered with."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import openai
import pytest
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor

from optiinfra.scoring.suite import SCORERS_KEY
from tests.otlp.conftest import (
    DELAY_SECONDS,
    SERVED_MODEL,
    FakeOpenAI,
    OtlpServer,
    OtlpTenant,
    rows_of,
    wait_for,
)


@pytest.fixture
def tracing(monkeypatch: pytest.MonkeyPatch, otlp_server: OtlpServer, otlp_tenant: OtlpTenant) -> TracerProvider:
    """The two environment variables of the setup in docs/otlp.md, and nothing else."""
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", otlp_server.base_url)
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_HEADERS", f"Authorization=Bearer%20{otlp_tenant.key}")
    provider = TracerProvider(resource=Resource.create({"service.name": "capital-bot", "service.version": "2.1"}))
    provider.add_span_processor(SimpleSpanProcessor(OTLPSpanExporter()))
    return provider


def _instrumentor(name: str) -> Any:
    if name == "openai-v2":
        from opentelemetry.instrumentation.openai_v2 import OpenAIInstrumentor

        return OpenAIInstrumentor()
    if name == "openllmetry":
        from opentelemetry.instrumentation.openai import OpenAIInstrumentor as OpenLLMetryInstrumentor

        return OpenLLMetryInstrumentor()
    from openinference.instrumentation.openai import OpenAIInstrumentor as OpenInferenceInstrumentor

    return OpenInferenceInstrumentor()


@pytest.mark.parametrize("instrumentation", ["openai-v2", "openllmetry", "openinference"])
def test_an_instrumented_openai_application_produces_quality_records(
    instrumentation: str,
    fake_openai: str,
    tracing: TracerProvider,
    otlp_server: OtlpServer,
    otlp_tenant: OtlpTenant,
) -> None:
    instrumentor = _instrumentor(instrumentation)
    instrumentor.instrument(tracer_provider=tracing)
    try:
        client = openai.OpenAI(base_url=fake_openai, api_key="sk-test")
        FakeOpenAI.answered.clear()
        for question in ("Capital of France?", "Capital of Italy?"):
            client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": question}])
    finally:
        instrumentor.uninstrument()
    rows = wait_for(lambda: len(found := rows_of(otlp_server.engine, otlp_tenant.customer_id)) == 2 and found)
    answered = FakeOpenAI.answered
    assert len(answered) == 2
    for row, answer in zip(rows.values(), answered, strict=True):
        if instrumentation == "openinference":
            # OpenInference records the served model and no response id: the record is keyed by its span.
            assert row["model_name"] == SERVED_MODEL
            assert row["request_id"] == f"{row['metadata']['trace_id']}-{row['metadata']['span_id']}"
        else:
            assert row["model_name"] == "gpt-4o-mini"
            assert row["request_id"] == answer["id"]
        assert row["model_version"] == SERVED_MODEL
        assert row["prompt_tokens"] == answer["usage"]["prompt_tokens"]
        assert row["completion_tokens"] == 3
        assert DELAY_SECONDS * 1000 <= row["latency_ms"] < 5_000
        assert row["metadata"]["service_name"] == "capital-bot"
    if instrumentation == "openai-v2":
        # No message content (not captured by default) and no evaluations: the records wait for their scores.
        assert all(row["metadata"]["scores_pending"] is True for row in rows.values())
    else:
        # OpenLLMetry and OpenInference carry the messages: the server's worker scores them offline (issue 14).
        def all_scored() -> dict[str, Any] | None:
            found = rows_of(otlp_server.engine, otlp_tenant.customer_id)
            return found if all(SCORERS_KEY in row["metadata"] for row in found.values()) else None

        scored = wait_for(all_scored, timeout=180)
        for row in scored.values():
            assert "scores_pending" not in row["metadata"]
            assert set(row["metadata"][SCORERS_KEY]) >= {"relevance", "toxicity"}


APP = """
import sys

import openai

client = openai.OpenAI(base_url=sys.argv[1], api_key="sk-test")
client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "Capital of Spain?"}])
"""


def test_zero_code_instrumentation_with_environment_variables_only(
    fake_openai: str, otlp_server: OtlpServer, otlp_tenant: OtlpTenant, tmp_path: Path
) -> None:
    """`opentelemetry-instrument python app.py`, configured only by environment variables as in docs/otlp.md."""
    app = tmp_path / "app.py"
    app.write_text(APP)
    env = {
        **os.environ,
        "OTEL_EXPORTER_OTLP_ENDPOINT": otlp_server.base_url,
        "OTEL_EXPORTER_OTLP_HEADERS": f"Authorization=Bearer%20{otlp_tenant.key}",
        "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
        "OTEL_SERVICE_NAME": "spain-bot",
        "OTEL_METRICS_EXPORTER": "none",
        "OTEL_LOGS_EXPORTER": "none",
    }
    FakeOpenAI.answered.clear()
    instrument = Path(sys.executable).parent / "opentelemetry-instrument"
    finished = subprocess.run(
        [str(instrument), sys.executable, str(app), fake_openai], env=env, capture_output=True, timeout=120
    )
    assert finished.returncode == 0, finished.stderr.decode()[-3000:]
    (answer,) = FakeOpenAI.answered
    rows = rows_of(otlp_server.engine, otlp_tenant.customer_id)
    # Every OpenAI instrumentation installed in this environment takes part (they share the entry-point name
    # "openai"); each one's span is a record with the served model, the tokens and the latency.
    assert answer["id"] in rows
    for row in rows.values():
        assert row["model_version"] == SERVED_MODEL
        assert row["prompt_tokens"] == answer["usage"]["prompt_tokens"]
        assert row["completion_tokens"] == 3
        assert row["latency_ms"] >= DELAY_SECONDS * 1000
        assert row["metadata"]["service_name"] == "spain-bot"
