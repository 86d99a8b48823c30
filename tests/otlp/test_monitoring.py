"""The monitor judges OTLP data, end to end.

A chat application in its own process calls the real `openai` SDK, instrumented by the stock
opentelemetry-instrumentation-openai-v2, against a small OpenAI-compatible server where a canary of the model runs
beside the stable version (each answer names its served model string, which becomes the record's version). An
evaluator in the application sends `gen_ai.evaluation.result` events for most answers; the others never get one.
The SDK's OTLP exporters are configured by OTEL_EXPORTER_OTLP_ENDPOINT and OTEL_EXPORTER_OTLP_HEADERS alone, and
send to `optiinfra serve`. Then the worker's monitoring pass (`run_monitoring_pass`) runs at chosen moments: record
time, not wall time, so an hour of traffic history takes seconds.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from optiinfra.db.engine import make_session_factory
from optiinfra.models import QualityBaseline, QualityRegression
from optiinfra.quality.evaluation import evaluate
from optiinfra.quality.monitoring_pass import run_monitoring_pass
from optiinfra.quality.schemas import BaselineWindow
from optiinfra.quality.settings import QualitySettings
from optiinfra.recommendations.service import rollback_for_quality
from tests.otlp.conftest import Backend, FakeOpenAI, OtlpServer, OtlpTenant, rows_of

STABLE, CANARY = "gpt-4o-mini-2024-07-18", "gpt-4o-mini-2025-04-14"
# Seconds the deployments take to answer: spread widely, so that the client's own overhead on a busy machine (a few
# to tens of milliseconds) moves the latency quantiles little.
HEALTHY = (0.05, 0.15)
SLOW = (0.4, 0.5)
CALLS = 160  # per phase, half to each version

APP = """
import sys
import threading
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import openai
from opentelemetry._logs import LogRecord
from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.instrumentation.openai_v2 import OpenAIInstrumentor
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import BatchLogRecordProcessor
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor

base_url, calls, unevaluated_per_10 = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
# Exporters without arguments: endpoint and headers come from the environment.
tracing = TracerProvider()
tracing.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
logs = LoggerProvider()
logs.add_log_record_processor(BatchLogRecordProcessor(OTLPLogExporter()))
OpenAIInstrumentor().instrument(tracer_provider=tracing)
evaluator = logs.get_logger("answer-evaluator")
client = openai.OpenAI(base_url=base_url, api_key="sk-test")
answers, counting = Counter(), threading.Lock()


def evaluate(score, name, response_id, label=None):
    attributes = {"gen_ai.evaluation.name": name, "gen_ai.evaluation.score.value": score,
                  "gen_ai.response.id": response_id}
    if label:
        attributes["gen_ai.evaluation.score.label"] = label
    evaluator.emit(LogRecord(event_name="gen_ai.evaluation.result", attributes=attributes))


def ask(index):
    response = client.chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "What is the capital of France?"}]
    )
    with counting:  # per served version: of every 10 answers, the first `unevaluated_per_10` are not evaluated
        answers[response.model] += 1
        if (answers[response.model] - 1) % 10 < unevaluated_per_10:
            return  # this answer's evaluation never comes
    correct = response.choices[0].message.content.startswith("Paris")
    spread = (index * 37 % 100) / 1000  # 0 to 0.099, the same for both versions
    evaluate((0.88 if correct else 0.35) + spread, "relevance", response.id)
    evaluate(0.0 if correct else 1.0, "hallucination", response.id, "factual" if correct else "hallucinated")


with ThreadPoolExecutor(8) as pool:
    list(pool.map(ask, range(calls)))
tracing.shutdown()
logs.shutdown()
"""


def run_application(base_url: str, otlp_server: OtlpServer, key: str, app: Path, unevaluated_per_10: int) -> None:
    env = {name: value for name, value in os.environ.items() if not name.startswith("OTEL_")}
    env["OTEL_EXPORTER_OTLP_ENDPOINT"] = otlp_server.base_url
    env["OTEL_EXPORTER_OTLP_HEADERS"] = f"Authorization=Bearer%20{key}"
    finished = subprocess.run(
        [sys.executable, str(app), base_url, str(CALLS), str(unevaluated_per_10)],
        env=env,
        capture_output=True,
        timeout=180,
    )
    assert finished.returncode == 0, finished.stderr.decode()[-3000:]


def verdicts_logged(caplog: pytest.LogCaptureFixture, customer_id: uuid.UUID) -> dict[str, str]:
    """The pass's verdict per model version of this customer, from the worker's log."""
    out = {}
    for record in caplog.records:
        if record.name == "optiinfra.worker" and str(customer_id) in record.getMessage():
            _, _, version_and_verdict = record.getMessage().partition(" gpt-4o-mini ")
            version, _, verdict = version_and_verdict.partition(": ")
            out[version] = verdict
    caplog.clear()
    return out


def test_the_monitor_judges_an_instrumented_application(
    fake_openai: str,
    otlp_server: OtlpServer,
    otlp_tenant: OtlpTenant,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="optiinfra.worker")
    settings: dict[str, Any] = otlp_tenant.client.request("GET", "/quality/settings")
    # A first baseline after one hour and 50 records (the least the settings allow), one 61-minute window, and
    # verdicts from 30 records.
    settings["min_samples"] = 30
    settings["monitoring"].update(baseline_min_hours=1, baseline_min_records=50, windows_minutes=[61])
    otlp_tenant.client.request("PUT", "/quality/settings", json=settings)
    app = tmp_path / "app.py"
    app.write_text(APP)
    factory = make_session_factory(otlp_server.engine)

    # Phase 1: both versions healthy; 1 answer in 10 is never evaluated.
    FakeOpenAI.backends = [Backend(STABLE, HEALTHY, "Paris."), Backend(CANARY, HEALTHY, "Paris.")]
    run_application(fake_openai, otlp_server, otlp_tenant.key, app, unevaluated_per_10=1)
    healthy = rows_of(otlp_server.engine, otlp_tenant.customer_id)
    assert len(healthy) == CALLS
    assert {row["model_version"] for row in healthy.values()} == {STABLE, CANARY}
    assert sum(bool(row["metadata"].get("scores_pending")) for row in healthy.values()) == CALLS // 10

    # An hour after the first record (the baseline's minimum history), the pass establishes each version's
    # baseline from its healthy records and judges the 61-minute window that holds them: no regression.
    first = min(row["timestamp"] for row in healthy.values())
    now = first + timedelta(minutes=61)
    assert max(row["timestamp"] for row in healthy.values()) < now
    run_monitoring_pass(factory, now, rollback=rollback_for_quality)
    assert verdicts_logged(caplog, otlp_tenant.customer_id) == {STABLE: "pass", CANARY: "pass"}
    with Session(otlp_server.engine) as session:
        baselines = session.scalars(
            select(QualityBaseline).where(QualityBaseline.customer_id == otlp_tenant.customer_id)
        ).all()
        assert sorted(b.model_version for b in baselines) == [STABLE, CANARY]
        for baseline in baselines:
            assert baseline.metadata_["policy"] == "automatic"
            assert baseline.established_at == now
            assert baseline.sample_size == CALLS // 2  # every record, with latency
            assert baseline.metadata_["components"]["overall_quality_score"]["n"] == CALLS // 2 - CALLS // 20
            assert baseline.metadata_["hallucination"]["n"] == CALLS // 2 - CALLS // 20
        assert _regressions(session, otlp_tenant.customer_id) == []

    # Phase 2: the canary answers wrongly and slowly; the stable version does not change. 4 answers in 10 get no
    # evaluation now: read as zeros they would sink the stable version, read as ones they would hide the canary.
    FakeOpenAI.backends = [Backend(STABLE, HEALTHY, "Paris."), Backend(CANARY, SLOW, "Lyon, I believe.")]
    run_application(fake_openai, otlp_server, otlp_tenant.key, app, unevaluated_per_10=4)
    rows = rows_of(otlp_server.engine, otlp_tenant.customer_id)
    degraded = {request_id: row for request_id, row in rows.items() if request_id not in healthy}
    assert len(degraded) == CALLS
    start = min(row["timestamp"] for row in degraded.values())
    assert start > max(row["timestamp"] for row in healthy.values())
    pending = [row for row in degraded.values() if row["metadata"].get("scores_pending")]
    assert len(pending) == 4 * CALLS // 10
    assert all(row["prompt_tokens"] > 0 and row["latency_ms"] > 0 for row in pending)

    # 61 minutes after the change the window holds exactly the phase-2 records.
    later = start + timedelta(minutes=61)
    run_monitoring_pass(factory, later, rollback=rollback_for_quality)
    assert verdicts_logged(caplog, otlp_tenant.customer_id) == {STABLE: "pass", CANARY: "regression"}
    scored = CALLS // 2 - 4 * CALLS // 20
    with Session(otlp_server.engine) as session:
        regressions = _regressions(session, otlp_tenant.customer_id)
        assert {r.model_version for r in regressions} == {CANARY}
        by_metric = {r.metric_name: r for r in regressions}
        assert {"overall_quality_score", "hallucination_rate", "latency_share_above_p50"} <= set(by_metric)
        # Scores are judged over the answers that have them; latency over every answer.
        assert by_metric["overall_quality_score"].sample_size == scored
        assert by_metric["hallucination_rate"].sample_size == scored
        assert by_metric["latency_share_above_p50"].sample_size == CALLS // 2
        overall = by_metric["overall_quality_score"]
        assert overall.current_value < 0.5 < overall.baseline_value

        # The per-window judge (detect, quality gates) on the same window agrees, and counts the same way.
        quality_settings = QualitySettings.model_validate(settings)
        window = BaselineWindow(start=start, end=later)
        for version in (STABLE, CANARY):
            _, _, findings, verdict = evaluate(
                session, otlp_tenant.customer_id, "gpt-4o-mini", version, window, quality_settings, later
            )
            flagged = {finding.metric_name for finding in findings if finding.verdict == "regression"}
            if version == CANARY:
                assert verdict == "regression"
                assert {"overall_quality_score", "hallucination_rate", "p95_latency_ms"} <= flagged
            else:
                # The per-window judge compares latency quantiles without the monitor's load model, so the load
                # of a shared test machine between the two phases can move the stable version's p95; its scores
                # must not move.
                assert flagged <= {"p95_latency_ms", "p50_latency_ms"}, flagged
            sizes = {finding.metric_name: finding.sample_size for finding in findings}
            assert sizes["overall_quality_score"] == sizes["hallucination_rate"] == scored
            assert sizes["p95_latency_ms"] == CALLS // 2


def _regressions(session: Session, customer_id: uuid.UUID) -> list[QualityRegression]:
    return list(session.scalars(select(QualityRegression).where(QualityRegression.customer_id == customer_id)))
