"""The real OpenTelemetry SDK and its OTLP/HTTP exporters (protobuf and JSON) against an `optiinfra serve` process:
GenAI spans become quality records, evaluation events become their scores whichever arrives first, and what cannot
be used is rejected with a reason or reported, never dropped silently."""

from __future__ import annotations

import json
import random
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from opentelemetry._logs import LogRecord
from opentelemetry.exporter.otlp.json.http._log_exporter import OTLPLogExporter as JsonLogExporter
from opentelemetry.exporter.otlp.json.http.trace_exporter import OTLPSpanExporter as JsonSpanExporter
from opentelemetry.exporter.otlp.proto.http import Compression
from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import SimpleLogRecordProcessor
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.trace import SpanKind, format_span_id, format_trace_id
from sqlalchemy.orm import Session

from optiinfra.client import OptiInfraClient
from optiinfra.quality import monitoring_store
from tests.otlp.conftest import OtlpServer, OtlpTenant, rows_of, wait_for

GENAI = {
    "gen_ai.operation.name": "chat",
    "gen_ai.provider.name": "openai",
    "gen_ai.request.model": "gpt-4o",
    "gen_ai.response.model": "gpt-4o-2024-08-06",
    "gen_ai.usage.input_tokens": 120,
    "gen_ai.usage.output_tokens": 48,
    "gen_ai.response.finish_reasons": ("stop",),
    "server.address": "10.0.0.7",
    "server.port": 8000,
}


def tracer_provider(exporter: Any, **resource: Any) -> TracerProvider:
    provider = TracerProvider(resource=Resource.create({"service.name": "support-bot", **resource}))
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return provider


def logger_provider(exporter: Any, **resource: Any) -> LoggerProvider:
    provider = LoggerProvider(resource=Resource.create({"service.name": "evaluator", **resource}))
    provider.add_log_record_processor(SimpleLogRecordProcessor(exporter))
    return provider


def emit_evaluation(provider: LoggerProvider, name: str, score: float | None = None, **attrs: Any) -> None:
    attributes: dict[str, Any] = {"gen_ai.evaluation.name": name, **attrs}
    if score is not None:
        attributes["gen_ai.evaluation.score.value"] = score
    provider.get_logger("evaluator").emit(LogRecord(event_name="gen_ai.evaluation.result", attributes=attributes))


@pytest.fixture(params=["protobuf", "json"])
def exporters(request: pytest.FixtureRequest, otlp_server: OtlpServer, otlp_tenant: OtlpTenant) -> tuple[Any, Any]:
    headers = {"Authorization": f"Bearer {otlp_tenant.key}"}
    if request.param == "protobuf":
        spans = OTLPSpanExporter(f"{otlp_server.base_url}/v1/traces", headers=headers, compression=Compression.Gzip)
        logs = OTLPLogExporter(f"{otlp_server.base_url}/v1/logs", headers=headers)
    else:
        spans = JsonSpanExporter(f"{otlp_server.base_url}/v1/traces", headers=headers)
        logs = JsonLogExporter(f"{otlp_server.base_url}/v1/logs", headers=headers)
    return spans, logs


def test_genai_spans_become_records_and_evaluations_their_scores_in_any_order(
    exporters: Any, otlp_server: OtlpServer, otlp_tenant: OtlpTenant
) -> None:
    span_exporter, log_exporter = exporters
    tracer = tracer_provider(span_exporter, **{"optiinfra.optimization_id": "opt-42"}).get_tracer("app")
    logs = logger_provider(log_exporter)
    early, late, inline = (f"chatcmpl-{uuid.uuid4().hex[:12]}" for _ in range(3))

    # 1. Evaluations of `early` arrive before its span.
    emit_evaluation(logs, "relevance", 0.9, **{"gen_ai.response.id": early})
    emit_evaluation(logs, "Hallucination", **{"gen_ai.response.id": early, "gen_ai.evaluation.score.label": "factual"})
    # 2. Three LLM spans (one carrying its evaluation as a span event) and one HTTP span that is not an LLM call.
    with tracer.start_as_current_span("POST /answer", kind=SpanKind.SERVER):
        for response_id in (early, late, inline):
            with tracer.start_as_current_span("chat gpt-4o", kind=SpanKind.CLIENT) as span:
                span.set_attributes({**GENAI, "gen_ai.response.id": response_id})
                if response_id == inline:
                    span.add_event(
                        "gen_ai.evaluation.result",
                        {"gen_ai.evaluation.name": "coherence", "gen_ai.evaluation.score.value": 0.75},
                    )
                time.sleep(0.03)
    rows = wait_for(
        lambda: (found := rows_of(otlp_server.engine, otlp_tenant.customer_id)) and len(found) == 3 and found
    )
    # 3. The evaluation of `late` arrives after its span, and is sent twice.
    emit_evaluation(logs, "factuality", 0.6, **{"gen_ai.response.id": late})
    emit_evaluation(logs, "factuality", 0.6, **{"gen_ai.response.id": late})
    rows = rows_of(otlp_server.engine, otlp_tenant.customer_id)

    for response_id in (early, late, inline):
        row = rows[response_id]
        assert (row["model_name"], row["model_version"]) == ("gpt-4o", "gpt-4o-2024-08-06")
        assert (row["prompt_tokens"], row["completion_tokens"]) == (120, 48)
        assert 30 <= row["latency_ms"] < 2_000
        meta = row["metadata"]
        assert meta["service_name"] == "support-bot"
        assert meta["route"] == "chat gpt-4o"
        assert meta["instance"] == "10.0.0.7:8000"
        assert meta["optimization_id"] == "opt-42"
        assert len(meta["trace_id"]) == 32
        assert len(meta["span_id"]) == 16
        assert "scores_pending" not in meta
    assert rows[early]["relevance_score"] == pytest.approx(0.9)
    assert rows[early]["hallucination_detected"] is False
    # relevance 0.9 (weight 0.3) and no hallucination (weight 0.1): (0.27 + 0.1) / 0.4
    assert rows[early]["overall_quality_score"] == pytest.approx(0.925)
    assert rows[inline]["coherence_score"] == pytest.approx(0.75)
    assert rows[late]["factuality_score"] == pytest.approx(0.6)
    assert rows[late]["overall_quality_score"] == pytest.approx((0.3 * 0.6 + 0.1) / 0.4)
    # Nothing else was stored: the HTTP span was skipped and counted.
    report = otlp_tenant.client.request("GET", "/otlp/report")
    skipped = [item for item in report["items"] if item["kind"] == "skipped_span"]
    assert skipped
    assert skipped[0]["example"] == "POST /answer"


def test_a_record_without_evaluations_counts_for_latency_not_as_a_score(
    otlp_server: OtlpServer, otlp_tenant: OtlpTenant
) -> None:
    """Spans whose evaluations never come are stored with their latency and tokens; the baseline and the judge
    read their overall score as missing, not as any value."""
    exporter = OTLPSpanExporter(
        f"{otlp_server.base_url}/v1/traces", headers={"Authorization": f"Bearer {otlp_tenant.key}"}
    )
    tracer = tracer_provider(exporter, **{"optiinfra.model_version": "v7"}).get_tracer("app")
    logs = logger_provider(
        OTLPLogExporter(f"{otlp_server.base_url}/v1/logs", headers={"Authorization": f"Bearer {otlp_tenant.key}"})
    )
    scored = []
    for index in range(60):
        with tracer.start_as_current_span("chat") as span:
            span.set_attributes({**GENAI, "gen_ai.response.id": f"r-{index}-{uuid.uuid4().hex[:6]}"})
            if index < 50:
                scored.append(span.get_span_context())
    for context in scored:  # matched by span context alone: no gen_ai.response.id on these evaluations
        logs.get_logger("evaluator").emit(
            LogRecord(
                event_name="gen_ai.evaluation.result",
                trace_id=context.trace_id,
                span_id=context.span_id,
                trace_flags=context.trace_flags,
                attributes={"gen_ai.evaluation.name": "relevance", "gen_ai.evaluation.score.value": 0.8},
            )
        )
    rows = rows_of(otlp_server.engine, otlp_tenant.customer_id)
    assert len(rows) == 60
    pending = [row for row in rows.values() if row["metadata"].get("scores_pending")]
    assert len(pending) == 10
    assert all(row["latency_ms"] is not None and row["prompt_tokens"] == 120 for row in pending)
    by_span = {row["metadata"]["span_id"]: row for row in rows.values()}
    assert all(by_span[format_span_id(c.span_id)]["relevance_score"] == pytest.approx(0.8) for c in scored)
    assert all(
        format_trace_id(c.trace_id) == by_span[format_span_id(c.span_id)]["metadata"]["trace_id"] for c in scored
    )

    baseline = otlp_tenant.client.request(
        "POST", "/quality/baselines", json={"model_name": "gpt-4o", "model_version": "v7", "window": {"last_n": 100}}
    )
    assert baseline["sample_size"] == 60
    # The mean is over the 50 scored records: (0.3 * 0.8 + 0.1) / 0.4 each, never pulled down by the 10 others.
    assert baseline["avg_overall_score"] == pytest.approx(0.85)
    assert baseline["metadata"]["components"]["overall_quality_score"]["n"] == 50
    assert baseline["metadata"]["latency_ms"]["n"] == 60
    # The continuous monitoring's aggregates: every record counts for latency, only the scored ones for quality.
    with Session(otlp_server.engine) as session:
        now = datetime.now(UTC) + timedelta(minutes=1)
        reference = monitoring_store.reference_from_db(
            session, otlp_tenant.customer_id, "gpt-4o", "v7", None, now, [],
            low_quantile=0.02, toxic_threshold=0.5, min_records=1,
        )  # fmt: skip
        assert reference is not None
        (cells,) = monitoring_store.window_cells(
            session, otlp_tenant.customer_id, "gpt-4o", "v7", now, (60,), reference.thresholds, 0.5
        ).values()
    totals = {name: float(values.sum()) for name, values in cells.values.items()}
    assert (totals["n"], totals["lat_n"], totals["ov_n"]) == (60, 60, 50)
    assert totals["ov_s"] / totals["ov_n"] == pytest.approx(0.85)
    verdict = otlp_tenant.client.request(
        "POST",
        "/quality/detect",
        json={"model_name": "gpt-4o", "model_version": "v7", "window": {"last_n": 100}, "dry_run": True},
    )
    assert verdict["verdict"] == "pass"


def _raw_trace(*spans: dict[str, Any], resource: dict[str, Any] | None = None) -> dict[str, Any]:
    def attrs(values: dict[str, Any]) -> list[dict[str, Any]]:
        out = []
        for key, value in values.items():
            if isinstance(value, bool):
                out.append({"key": key, "value": {"boolValue": value}})
            elif isinstance(value, int):
                out.append({"key": key, "value": {"intValue": str(value)}})
            else:
                out.append({"key": key, "value": {"stringValue": str(value)}})
        return out

    now = time.time_ns()
    return {
        "resourceSpans": [
            {
                "resource": {"attributes": attrs({"service.name": "raw", **(resource or {})})},
                "scopeSpans": [
                    {
                        "spans": [
                            {
                                "traceId": uuid.uuid4().hex,
                                "spanId": uuid.uuid4().hex[:16],
                                "name": span.pop("name", "chat"),
                                "startTimeUnixNano": str(now - 250_000_000),
                                "endTimeUnixNano": str(now),
                                "attributes": attrs(span),
                            }
                            for span in spans
                        ]
                    }
                ],
            }
        ]
    }


def test_unusable_spans_are_rejected_with_reasons_and_unknown_attributes_reported(
    otlp_server: OtlpServer, otlp_tenant: OtlpTenant
) -> None:
    headers = {"Authorization": f"Bearer {otlp_tenant.key}"}
    body = _raw_trace(
        {
            "gen_ai.operation.name": "chat",
            "gen_ai.request.model": "m",
            "gen_ai.response.model": "m-1",
            "gen_ai.usage.cache_read.input_tokens": 99,
            "gen_ai.response.id": "ok-1",
        },
        {"gen_ai.operation.name": "chat"},  # no model at all
        {
            "gen_ai.operation.name": "chat",
            "gen_ai.request.model": "m",
            "gen_ai.response.model": "m-1",
            "gen_ai.usage.input_tokens": -5,
        },  # negative tokens
        {"gen_ai.operation.name": "embeddings", "gen_ai.request.model": "e"},
        {"name": "SELECT", "db.system": "postgresql"},
    )
    answer = httpx.post(f"{otlp_server.base_url}/v1/traces", json=body, headers=headers)
    assert answer.status_code == 200
    partial = answer.json()["partialSuccess"]
    assert partial["rejectedSpans"] == "2"
    assert "no model name" in partial["errorMessage"]
    assert "prompt_tokens" in partial["errorMessage"]
    assert list(rows_of(otlp_server.engine, otlp_tenant.customer_id)) == ["ok-1"]
    assert answer.headers["X-OptiInfra-Skipped"] == "2"

    report = otlp_tenant.client.request("GET", "/otlp/report")["items"]
    by_name = {(item["kind"], item["name"]): item for item in report}
    assert by_name[("attribute", "gen_ai.usage.cache_read.input_tokens")]["example"] == "99"
    assert by_name[("skipped_span", "operation embeddings is not an LLM generation")]["count"] == 1
    assert ("skipped_span", "not a GenAI span (no gen_ai.operation.name, model or LLM span kind)") in by_name
    with httpx.Client(base_url=otlp_server.base_url) as browser:  # the same report on the dashboard
        assert browser.post("/login", data={"api_key": otlp_tenant.key}).status_code == 303
        page = browser.get("/quality").text
    assert 'id="otlp-not-understood"' in page
    assert "gen_ai.usage.cache_read.input_tokens" in page

    # An evaluation name nobody mapped is rejected and reported; once the customer maps it, it lands.
    logs = {
        "resourceLogs": [
            {
                "scopeLogs": [
                    {
                        "logRecords": [
                            {
                                "eventName": "gen_ai.evaluation.result",
                                "attributes": [
                                    {"key": "gen_ai.evaluation.name", "value": {"stringValue": "on_topic"}},
                                    {"key": "gen_ai.evaluation.score.value", "value": {"doubleValue": 0.4}},
                                    {"key": "gen_ai.response.id", "value": {"stringValue": "ok-1"}},
                                ],
                            },
                            {"body": {"stringValue": "an application log line"}},
                        ]
                    }
                ]
            }
        ]
    }
    answer = httpx.post(f"{otlp_server.base_url}/v1/logs", json=logs, headers=headers)
    assert answer.json()["partialSuccess"]["rejectedLogRecords"] == "2"
    assert "'on_topic' is not mapped" in answer.json()["partialSuccess"]["errorMessage"]
    settings = otlp_tenant.client.request("GET", "/otlp/settings")
    settings["evaluation_names"] = {"On_Topic": "relevance"}
    otlp_tenant.client.request("PUT", "/otlp/settings", json=settings)
    answer = httpx.post(f"{otlp_server.base_url}/v1/logs", json=logs, headers=headers)
    assert answer.json()["partialSuccess"]["rejectedLogRecords"] == "1"
    assert rows_of(otlp_server.engine, otlp_tenant.customer_id)["ok-1"]["relevance_score"] == pytest.approx(0.4)


def test_protocol_errors_answer_with_a_status_in_the_request_encoding(
    otlp_server: OtlpServer, otlp_tenant: OtlpTenant
) -> None:
    url = f"{otlp_server.base_url}/v1/traces"
    good = {"Authorization": f"Bearer {otlp_tenant.key}", "Content-Type": "application/x-protobuf"}
    garbage = httpx.post(url, content=b"\xff\xff\xff not protobuf", headers=good)
    assert garbage.status_code == 400
    assert garbage.headers["content-type"] == "application/x-protobuf"
    unauthenticated = httpx.post(url, content=b"", headers={"Content-Type": "application/json"})
    assert unauthenticated.status_code == 401
    assert "message" in unauthenticated.json()
    wrong_type = httpx.post(url, content=b"x", headers={**good, "Content-Type": "text/plain"})
    assert wrong_type.status_code == 415
    bad_gzip = httpx.post(url, content=b"not gzip", headers={**good, "Content-Encoding": "gzip"})
    assert bad_gzip.status_code == 400
    empty = httpx.post(url, content=ExportTraceServiceRequest().SerializeToString(), headers=good)
    assert empty.status_code == 200
    assert not ExportTraceServiceResponse.FromString(empty.content).HasField("partial_success")


def test_agent_keys_name_the_customer_in_the_resource(otlp_server: OtlpServer, otlp_tenant: OtlpTenant) -> None:
    headers = {"Authorization": f"Bearer {otlp_tenant.agent_key}"}
    span = {"gen_ai.operation.name": "chat", "gen_ai.request.model": "m", "gen_ai.response.model": "m-1"}
    unnamed = httpx.post(f"{otlp_server.base_url}/v1/traces", json=_raw_trace(dict(span)), headers=headers).json()
    assert "optiinfra.customer_id" in unnamed["partialSuccess"]["errorMessage"]
    nobody = str(uuid.uuid4())
    stranger = httpx.post(
        f"{otlp_server.base_url}/v1/traces",
        json=_raw_trace(dict(span), resource={"optiinfra.customer_id": nobody}),
        headers=headers,
    ).json()
    assert stranger["partialSuccess"]["rejectedSpans"] == "1"
    # A customer the agent does not serve is refused exactly like one that does not exist.
    with OptiInfraClient(otlp_server.base_url, otlp_server.operator_key) as operator:
        suffix = uuid.uuid4().hex[:8]
        unserved = operator.create_customer(f"Unserved {suffix}", f"unserved-{suffix}@tenant.example").id
    not_served = httpx.post(
        f"{otlp_server.base_url}/v1/traces",
        json=_raw_trace(dict(span), resource={"optiinfra.customer_id": str(unserved)}),
        headers=headers,
    ).json()
    assert json.dumps(not_served).replace(str(unserved), "ID") == json.dumps(stranger).replace(nobody, "ID")
    assert rows_of(otlp_server.engine, unserved) == {}
    named = httpx.post(
        f"{otlp_server.base_url}/v1/traces",
        json=_raw_trace(dict(span), resource={"optiinfra.customer_id": str(otlp_tenant.customer_id)}),
        headers=headers,
    )
    assert named.json() == {}
    assert named.headers["X-OptiInfra-Stored"] == "1"
    (row,) = rows_of(otlp_server.engine, otlp_tenant.customer_id).values()
    assert row["agent_id"] == otlp_tenant.agent_id
    # The exporter retrying the same export: nothing is stored twice.
    again = httpx.post(
        f"{otlp_server.base_url}/v1/traces", content=named.request.content, headers=named.request.headers
    )
    assert again.json() == {}
    assert (again.headers["X-OptiInfra-Stored"], again.headers["X-OptiInfra-Duplicates"]) == ("0", "1")
    assert len(rows_of(otlp_server.engine, otlp_tenant.customer_id)) == 1


def _raw_evaluation(response_id: str, score: float) -> dict[str, Any]:
    return {
        "resourceLogs": [
            {
                "scopeLogs": [
                    {
                        "logRecords": [
                            {
                                "eventName": "gen_ai.evaluation.result",
                                "attributes": [
                                    {"key": "gen_ai.evaluation.name", "value": {"stringValue": "relevance"}},
                                    {"key": "gen_ai.evaluation.score.value", "value": {"doubleValue": score}},
                                    {"key": "gen_ai.response.id", "value": {"stringValue": response_id}},
                                ],
                            }
                        ]
                    }
                ]
            }
        ]
    }


def test_spans_and_evaluations_racing_each_other_always_meet(otlp_server: OtlpServer, otlp_tenant: OtlpTenant) -> None:
    """Each span and its evaluation sent at the same moment on different connections: every record ends up scored."""
    headers = {"Authorization": f"Bearer {otlp_tenant.key}"}
    ids = [f"race-{index}-{uuid.uuid4().hex[:6]}" for index in range(40)]
    span = {"gen_ai.operation.name": "chat", "gen_ai.request.model": "m", "gen_ai.response.model": "m-1"}
    requests = [("/v1/traces", _raw_trace({**span, "gen_ai.response.id": rid})) for rid in ids]
    requests += [("/v1/logs", _raw_evaluation(rid, 0.5)) for rid in ids]
    random.Random(7).shuffle(requests)
    barrier = threading.Barrier(8)

    def send(chunk: list[tuple[str, dict[str, Any]]]) -> None:
        with httpx.Client(base_url=otlp_server.base_url, headers=headers, timeout=60) as client:
            barrier.wait()
            for path, body in chunk:
                assert client.post(path, json=body).status_code == 200

    with ThreadPoolExecutor(max_workers=8) as pool:
        for future in [pool.submit(send, requests[i::8]) for i in range(8)]:
            future.result()
    rows = rows_of(otlp_server.engine, otlp_tenant.customer_id)
    assert sorted(rows) == sorted(ids)
    assert all(row["relevance_score"] == pytest.approx(0.5) for row in rows.values())
    assert not any(row["metadata"].get("scores_pending") for row in rows.values())
