"""The application agent at work, on a committed database: records ingested with text and no scores are scored by a
real worker (procrastinate job), written back once, their text dropped or kept by setting, and the monitor judges
them, treating a change of scorers as a baseline boundary."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import Engine, create_engine, select, text
from sqlalchemy.orm import Session, sessionmaker

from optiinfra.auth.principal import Principal
from optiinfra.db import migrations
from optiinfra.db.engine import make_session_factory
from optiinfra.models import AgentType, Customer, Event, QualityBaseline, QualityMetric, ScoringText
from optiinfra.quality import monitoring_pass as monitor
from optiinfra.quality.service import ingest
from optiinfra.quality.settings import QualitySettings, settings_of, store_settings
from optiinfra.recommendations.service import rollback_for_quality
from optiinfra.scoring import service as scoring
from optiinfra.scoring.suite import default_scorers, scorer_set
from optiinfra.workflows import queue
from tests.conftest import DatabaseFactory
from tests.factories import assign, make_agent, make_customer

CONTEXT = (
    "Mercury is the smallest planet and the closest to the Sun. It has no moons. Venus is the hottest planet, "
    "with surface temperatures around 465 degrees Celsius caused by a runaway greenhouse effect."
)
GOOD = ("Which planet is the hottest?", "Venus is the hottest planet, at around 465 degrees Celsius.")
MADE_UP = ("Which planet is the hottest?", "Jupiter, because its storms release enormous heat every winter.")


@pytest.fixture(scope="module")
def engine(create_database: DatabaseFactory) -> Iterator[Engine]:
    engine = create_engine(create_database(), pool_size=8)
    migrations.upgrade(engine)
    yield engine
    engine.dispose()


@pytest.fixture
def factory(engine: Engine) -> sessionmaker[Session]:
    return make_session_factory(engine)


def _customer(factory: sessionmaker[Session], **scoring: Any) -> uuid.UUID:
    with factory() as session, session.begin():
        customer = make_customer(session)
        assign(session, make_agent(session, type=AgentType.APPLICATION), customer)
        settings = QualitySettings.model_validate(
            {
                "monitoring": {"baseline_min_records": 50, "baseline_min_hours": 1},
                "scoring": {"text_retention_days": 3, **scoring},
            }
        )
        store_settings(customer, settings)
        return customer.id


def _text_records(count: int, now: datetime, hours: float = 3.0) -> list[dict[str, Any]]:
    records = []
    for index in range(count):
        prompt, response = MADE_UP if index % 4 == 0 else GOOD
        records.append(
            {
                "request_id": f"req-{index}",
                "model_name": "gpt-test",
                "model_version": "v1",
                "timestamp": (now - timedelta(hours=hours) + timedelta(hours=hours) * index / count).isoformat(),
                "latency_ms": 400 + index % 50,
                "prompt": prompt,
                "response": response,
                "context": CONTEXT,
            }
        )
    return records


def _run_worker(engine: Engine, factory: sessionmaker[Session]) -> None:
    def advance(execution_id: uuid.UUID) -> None:
        raise AssertionError("no workflow job expected")

    queue.Worker(engine.url, advance, factory, concurrency=2).run(once=True)


def test_a_record_sent_with_text_and_no_scores_is_scored_by_a_worker_and_judged_by_the_monitor(
    engine: Engine, factory: sessionmaker[Session]
) -> None:
    customer_id = _customer(factory)
    now = datetime.now(UTC)
    records = _text_records(80, now)
    records.append({**records[1], "request_id": "own-scores", "relevance_score": 0.9, "coherence_score": 0.8})
    with factory() as session, session.begin():
        result = ingest(session, Principal.operator(), records, customer_id=customer_id, agent_id=None)
    assert result.inserted == 81
    with factory() as session:
        pending = session.scalar(
            select(text("count(*)"))
            .select_from(QualityMetric)
            .where(QualityMetric.customer_id == customer_id, QualityMetric.metadata_.has_key("scores_pending"))
        )
        assert pending == 80  # the record with its own scores is not queued, and its text is not kept
        assert session.scalar(select(text("count(*)")).select_from(ScoringText)) >= 80
        jobs = session.scalar(
            text("SELECT count(*) FROM procrastinate_jobs WHERE queue_name = 'scoring' AND status = 'todo'")
        )
        assert jobs == 1

    _run_worker(engine, factory)

    expected_versions = {scorer.name: scorer.version for scorer in default_scorers()}
    with factory() as session:
        rows = session.scalars(
            select(QualityMetric).where(
                QualityMetric.customer_id == customer_id, QualityMetric.request_id != "own-scores"
            )
        ).all()
        assert len(rows) == 80
        for row in rows:
            assert "scores_pending" not in row.metadata_
            assert row.metadata_["scorers"] == expected_versions
            assert row.metadata_["scorer_set"] == scorer_set(default_scorers())
            for column in (row.relevance_score, row.coherence_score, row.factuality_score, row.toxicity_score):
                assert column is not None
                assert 0 <= column <= 1
            made_up = row.metadata_ and int(row.request_id.split("-")[1]) % 4 == 0
            assert row.hallucination_detected is bool(made_up)
        assert (
            session.scalar(
                select(text("count(*)")).select_from(ScoringText).where(ScoringText.customer_id == customer_id)
            )
            == 0
        )  # text dropped once scored
        first_scores = {row.id: (row.relevance_score, row.metadata_) for row in rows}

    # Scoring again, and sending the same records again, change nothing.
    assert scoring.score_pending(factory).scored == 0
    with factory() as session, session.begin():
        again = ingest(session, Principal.operator(), records, customer_id=customer_id, agent_id=None)
    assert again.duplicates == 81
    with factory() as session:
        rows = session.scalars(select(QualityMetric).where(QualityMetric.id.in_(list(first_scores)))).all()
        assert {row.id: (row.relevance_score, row.metadata_) for row in rows} == first_scores
        assert (
            session.scalar(
                select(text("count(*)")).select_from(ScoringText).where(ScoringText.customer_id == customer_id)
            )
            == 0
        )

    report = monitor.run_monitoring_pass(factory, now + timedelta(seconds=1), rollback=rollback_for_quality)
    assert report.baselines >= 1
    with factory() as session:
        baseline = session.scalars(select(QualityBaseline).where(QualityBaseline.customer_id == customer_id)).one()
        assert baseline.metadata_["scorer_set"] == scorer_set(default_scorers())
        assert baseline.avg_relevance_score is not None
        assert baseline.avg_factuality_score is not None
        assert baseline.sample_size == 81


def test_text_kept_by_setting_stays_until_its_retention_then_is_deleted(
    engine: Engine, factory: sessionmaker[Session]
) -> None:
    customer_id = _customer(factory, keep_text=True)
    with factory() as session, session.begin():
        ingest(session, Principal.operator(), _text_records(3, datetime.now(UTC)), customer_id=customer_id,
               agent_id=None)  # fmt: skip
    scoring.score_pending(factory)
    with factory() as session, session.begin():
        kept = session.scalars(select(ScoringText).where(ScoringText.customer_id == customer_id)).all()
        assert len(kept) == 3
        for row in kept:
            assert row.scored_at is not None
            assert timedelta(days=2.9) < row.expires_at - datetime.now(UTC) <= timedelta(days=3)
            row.expires_at = datetime.now(UTC) - timedelta(seconds=1)
    scoring.housekeeping(factory)
    with factory() as session:
        assert not session.scalars(select(ScoringText).where(ScoringText.customer_id == customer_id)).all()


def _scored(index: int, at: datetime, scorer_fingerprint: str, relevance: float) -> dict[str, Any]:
    return {
        "request_id": f"{scorer_fingerprint}-{index}",
        "model_name": "gpt-test",
        "model_version": "v1",
        "timestamp": at.isoformat(),
        "latency_ms": 400.0,
        "relevance_score": relevance,
        "coherence_score": 0.8,
        "factuality_score": 0.7,
        "toxicity_score": 0.01,
        "metadata": {"scorer_set": scorer_fingerprint},
    }


def test_a_new_scorer_version_ends_the_baseline_and_the_next_one_starts_at_the_boundary(
    factory: sessionmaker[Session],
) -> None:
    customer_id = _customer(factory)
    start = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=6)
    upgrade_at = start + timedelta(hours=3)
    old = [_scored(i, start + timedelta(minutes=2 * i), "relevance@1.0", 0.80) for i in range(90)]
    # The upgraded scorer reads the same answers 0.3 lower: on the old baseline that would be a large regression.
    new = [_scored(i, upgrade_at + timedelta(minutes=2 * i), "relevance@2.0", 0.50) for i in range(90)]
    with factory() as session, session.begin():
        ingest(session, Principal.operator(), old + new, customer_id=customer_id, agent_id=None)

    def judge(at: datetime) -> str:
        with factory() as session, session.begin():
            return monitor.monitor_version(session, customer_id, "gpt-test", "v1", at, rollback_for_quality)

    judge(upgrade_at)
    with factory() as session:
        first = session.scalars(select(QualityBaseline).where(QualityBaseline.customer_id == customer_id)).one()
        assert first.metadata_["scorer_set"] == "relevance@1.0"

    assert judge(upgrade_at + timedelta(minutes=30)) == "no_baseline"  # a wait, never a pass or a regression
    with factory() as session:
        ended = session.get(QualityBaseline, first.id)
        assert ended is not None
        assert ended.valid_until == upgrade_at + timedelta(minutes=30)
        assert datetime.fromisoformat(ended.metadata_["scorer_boundary_at"]) == upgrade_at
        assert session.scalars(
            select(Event).where(Event.customer_id == customer_id, Event.event_type == "quality.baseline_ended")
        ).one()
        customer = session.get(Customer, customer_id)
        assert customer is not None
        assert settings_of(customer).monitoring.baseline_min_hours == 1
        assert not session.scalars(
            select(text("1"))
            .select_from(QualityMetric)
            .where(QualityMetric.customer_id == customer_id, QualityMetric.metadata_.has_key("scores_pending"))
        ).all()

    verdict = judge(upgrade_at + timedelta(hours=2, minutes=59))
    assert verdict != "no_baseline"
    with factory() as session:
        baselines = session.scalars(
            select(QualityBaseline)
            .where(QualityBaseline.customer_id == customer_id)
            .order_by(QualityBaseline.established_at)
        ).all()
        assert len(baselines) == 2
        second = baselines[1]
        assert second.metadata_["scorer_set"] == "relevance@2.0"
        assert datetime.fromisoformat(second.metadata_["monitoring"]["start"]) == upgrade_at
        assert second.avg_relevance_score == pytest.approx(0.50)
        assert datetime.fromisoformat(second.metadata_["scorer_since"]) == upgrade_at
        # No regression was opened by the scorer change.
        assert (
            session.scalar(text("SELECT count(*) FROM quality_regressions WHERE customer_id = :c"), {"c": customer_id})
            == 0
        )

    # A day later the policy moves the baseline forward: its reference still starts at the boundary, not 7 days back.
    judge(upgrade_at + timedelta(hours=27, minutes=1))
    with factory() as session:
        latest = session.scalars(
            select(QualityBaseline)
            .where(QualityBaseline.customer_id == customer_id)
            .order_by(QualityBaseline.established_at.desc())
            .limit(1)
        ).one()
        assert latest.id != second.id
        assert latest.avg_relevance_score == pytest.approx(0.50)
        assert datetime.fromisoformat(latest.metadata_["monitoring"]["start"]) == upgrade_at


def test_an_otlp_span_carrying_its_messages_is_scored_like_a_json_record(factory: sessionmaker[Session]) -> None:
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
    from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue

    from optiinfra.otlp import service as otlp_service

    customer_id = _customer(factory)
    end = int(datetime.now(UTC).timestamp() * 1e9)
    attrs = {
        "gen_ai.operation.name": "chat",
        "gen_ai.request.model": "gpt-test",
        "optiinfra.model_version": "v1",
        "gen_ai.prompt.0.role": "user",
        "gen_ai.prompt.0.content": MADE_UP[0],
        "gen_ai.completion.0.role": "assistant",
        "gen_ai.completion.0.content": MADE_UP[1],
    }
    request = ExportTraceServiceRequest()
    resource_spans = request.resource_spans.add()
    resource_spans.resource.attributes.append(
        KeyValue(key="optiinfra.customer_id", value=AnyValue(string_value=str(customer_id)))
    )
    span = resource_spans.scope_spans.add().spans.add()
    span.trace_id, span.span_id, span.name = bytes(range(1, 17)), bytes(range(1, 9)), "chat gpt-test"
    span.start_time_unix_nano, span.end_time_unix_nano = end - 500_000_000, end
    for key, value in attrs.items():
        span.attributes.append(KeyValue(key=key, value=AnyValue(string_value=value)))
    with factory() as session, session.begin():
        outcome = otlp_service.export_traces(session, Principal.operator(), request)
    assert outcome.stored == 1
    with factory() as session:
        assert session.scalars(select(ScoringText).where(ScoringText.customer_id == customer_id)).one()
    scoring.score_pending(factory)
    with factory() as session:
        (row,) = session.scalars(select(QualityMetric).where(QualityMetric.customer_id == customer_id)).all()
        assert "scores_pending" not in row.metadata_
        assert row.metadata_["scorer_set"] == scorer_set(default_scorers())
        assert row.relevance_score is not None
        assert row.factuality_score is None  # no context in the span: groundedness has nothing to check against
        assert not session.scalars(select(ScoringText).where(ScoringText.customer_id == customer_id)).all()
