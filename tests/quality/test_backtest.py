"""The worker's monitoring pass against PostgreSQL, the backtest that replays it, and attribution before rollback."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from types import SimpleNamespace

import psycopg
import pytest
from sqlalchemy import Engine, create_engine, func, select, text
from sqlalchemy.engine import URL
from sqlalchemy.orm import Session
from typer.testing import CliRunner

from optiinfra.auth.principal import Principal
from optiinfra.cli import app
from optiinfra.dashboard.routes import templates
from optiinfra.db import migrations
from optiinfra.db.engine import make_session_factory
from optiinfra.errors import InvalidInputError
from optiinfra.models import (
    Agent,
    AgentType,
    Customer,
    Event,
    Optimization,
    OptimizationStatus,
    QualityBaseline,
    QualityRegression,
    RecommendationStatus,
    RegressionAction,
)
from optiinfra.quality import service
from optiinfra.quality.backtest import run_backtest
from optiinfra.quality.monitoring_pass import run_monitoring_pass
from optiinfra.quality.replay import columns_of, replay
from optiinfra.quality.schemas import Regression
from optiinfra.quality.settings import QualitySettings, store_settings
from optiinfra.quality.traffic import Effect, TrafficModel, generate, start_of_day
from optiinfra.recommendations.service import rollback_for_quality
from tests.conftest import DatabaseFactory, url_for_env
from tests.factories import assign, make_customer, make_optimization, make_recommendation

# Short runs: the first baseline after 6 hours of traffic.
FAST = QualitySettings.model_validate({"monitoring": {"baseline_min_hours": 6, "baseline_min_records": 500}})


def _scenario(seed: int) -> tuple[datetime, list[Effect]]:
    base = start_of_day(3)
    start = base + timedelta(hours=8)
    return base, [Effect("overall_factor", 0.85, start, end=start + timedelta(minutes=50))]


# Incidents resolve after 30 minutes without a flag; a recurrence within 60 minutes of that reopens the incident.
REOPENING = FAST.model_copy(
    update={"monitoring": FAST.monitoring.model_copy(update={"recovery_minutes": 30, "reopen_minutes": 60})}
)


def test_backtest_and_the_worker_procedure_in_memory_agree(server_url: URL) -> None:
    # Three episodes of a 15 % lower score: the second recurs within the horizon after the first incident resolved
    # (the same incident, reopened), the third long after (a new incident).
    base = start_of_day(3)
    start = base + timedelta(hours=8)
    effects = [
        Effect("overall_factor", 0.85, start, end=start + timedelta(minutes=40)),
        Effect("overall_factor", 0.85, start + timedelta(minutes=100), end=start + timedelta(minutes=130)),
        Effect("overall_factor", 0.85, start + timedelta(minutes=270), end=start + timedelta(minutes=300)),
    ]
    traffic = generate(TrafficModel(requests_per_day=12_000), base, 15 / 24, 1, tuple(effects))
    result = run_backtest(traffic.records("m", "v1"), REOPENING, server_url, rollback=rollback_for_quality)
    incidents, baselines = replay(columns_of(traffic), REOPENING)

    assert baselines
    from_db = sorted(
        (r["metric_name"], r["detected_at"], r["resolved_at"], r["severity"], r["action"]) for r in result.regressions
    )
    in_memory = sorted(
        (
            i.metric,
            i.detected_at.isoformat(),
            i.resolved_at.isoformat() if i.resolved_at else None,
            i.severity.value,
            i.action.value,
        )
        for i in incidents
    )
    assert from_db == in_memory
    overall = [i for i in incidents if i.metric == "overall_quality_score"]
    assert len(overall) == 2  # the first reopened once, then a new one
    first, second = sorted(overall, key=lambda i: i.detected_at)
    assert len(first.reopened_at) == 1
    assert start + timedelta(minutes=100) <= first.reopened_at[0] < start + timedelta(minutes=130)
    assert second.detected_at >= start + timedelta(minutes=270)
    assert second.reopened_at == []
    assert first.resolved_at is not None
    assert second.resolved_at is not None  # after the sustained recovery
    assert result.days == pytest.approx((traffic.timestamp[-1] - traffic.timestamp[0]) / 86_400, abs=1e-3)


runner = CliRunner()


@pytest.fixture
def live(create_database: DatabaseFactory) -> Iterator[tuple[URL, Engine]]:
    url = create_database()
    engine = create_engine(url)
    migrations.upgrade(engine)
    yield url, engine
    engine.dispose()


def test_backtest_command_prints_the_documented_json_and_never_touches_live_data(
    live: tuple[URL, Engine], tmp_path: Path, server_url: URL
) -> None:
    url, engine = live
    base, effects = _scenario(2)
    traffic = generate(TrafficModel(requests_per_day=12_000), base, 9.5 / 24, 2, tuple(effects))
    path = tmp_path / "traffic.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in traffic.records("m", "v1")) + "\n")
    settings = tmp_path / "settings.json"
    settings.write_text(FAST.model_dump_json())
    with psycopg.connect(url_for_env(server_url.set(drivername="postgresql")), autocommit=True) as connection:
        before = {row[0] for row in connection.execute("SELECT datname FROM pg_database")}

    result = runner.invoke(
        app,
        ["quality", "backtest", str(path), "--settings", str(settings), "--json"],
        env={"OPTIINFRA_DATABASE_URL": url_for_env(url), "COLUMNS": "200"},
    )

    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    assert set(payload) == {"days", "regressions"}
    assert isinstance(payload["days"], float)
    assert payload["regressions"]
    for regression in payload["regressions"]:
        assert set(regression) == {
            "detected_at", "resolved_at", "model_name", "model_version", "regression_type", "metric_name",
            "severity", "action",
        }  # fmt: skip
        assert regression["model_name"] == "m"
    with engine.connect() as connection:
        assert connection.execute(text("SELECT count(*) FROM quality_metrics")).scalar_one() == 0
        assert connection.execute(text("SELECT count(*) FROM quality_regressions")).scalar_one() == 0
    with psycopg.connect(url_for_env(server_url.set(drivername="postgresql")), autocommit=True) as connection:
        after = {row[0] for row in connection.execute("SELECT datname FROM pg_database")}
    assert after - before == set()  # the scratch database is gone


def test_backtest_refuses_an_invalid_file_whole(live: tuple[URL, Engine], tmp_path: Path) -> None:
    url, _ = live
    path = tmp_path / "bad.jsonl"
    path.write_text(json.dumps({"request_id": "x", "model_name": "m"}) + "\n")
    result = runner.invoke(
        app, ["quality", "backtest", str(path), "--json"], env={"OPTIINFRA_DATABASE_URL": url_for_env(url)}
    )
    assert result.exit_code == 1
    assert "invalid" in result.output
    assert "Traceback" not in result.output


def _world(engine: Engine) -> tuple[uuid.UUID, uuid.UUID]:
    with Session(engine) as session, session.begin():
        customer = make_customer(session)
        agent = Agent(type=AgentType.APPLICATION, name=f"app-{uuid.uuid4().hex[:6]}")
        session.add(agent)
        session.flush()
        assign(session, agent, customer)
        store_settings(customer, FAST)
        return customer.id, agent.id


def _ingest(engine: Engine, customer_id: uuid.UUID, records: list[dict]) -> None:
    with Session(engine) as session, session.begin():
        for offset in range(0, len(records), 10_000):
            service.ingest(
                session, Principal.operator(), records[offset : offset + 10_000], customer_id=customer_id, agent_id=None
            )


def _completed_optimization(engine: Engine, customer_id: uuid.UUID, agent_id: uuid.UUID, **data: object) -> uuid.UUID:
    with Session(engine) as session, session.begin():
        customer = session.get(Customer, customer_id)
        agent = session.get(Agent, agent_id)
        recommendation = make_recommendation(
            session, customer, agent, data=dict(data), status=RecommendationStatus.COMPLETED
        )
        optimization = make_optimization(
            session,
            recommendation,
            status=OptimizationStatus.COMPLETED,
            started_at=datetime.now(UTC) - timedelta(days=12),
            completed_at=datetime.now(UTC) - timedelta(days=12),
            actual_savings=Decimal("10"),
        )
        return optimization.id


def _run_monitoring(engine: Engine, start: datetime, end: datetime) -> None:
    factory = make_session_factory(engine)
    moment = start
    while moment <= end:
        run_monitoring_pass(factory, moment, rollback=rollback_for_quality)
        moment += timedelta(minutes=1)


@pytest.mark.parametrize("tag", ["none", "optimization_id", "instance_id"])
def test_monitoring_rolls_back_only_the_optimization_the_evidence_names(live: tuple[URL, Engine], tag: str) -> None:
    _, engine = live
    customer_id, agent_id = _world(engine)
    unrelated = _completed_optimization(engine, customer_id, agent_id)
    moved = _completed_optimization(engine, customer_id, agent_id, instances=["i-1", "i-2"])
    base = datetime.now(UTC).replace(second=0, microsecond=0) - timedelta(hours=8)
    start = base + timedelta(hours=7, minutes=30)
    effect = Effect(
        "overall_factor",
        0.8,
        start,
        optimization_id=str(moved) if tag == "optimization_id" else None,
        instance_id="i-2" if tag == "instance_id" else None,
    )
    traffic = generate(TrafficModel(requests_per_day=12_000), base, 7.75 / 24, 3, (effect,))
    _ingest(engine, customer_id, traffic.records("m", "v1"))

    _run_monitoring(engine, start - timedelta(minutes=2), start + timedelta(minutes=14))

    with Session(engine) as session:
        baseline = session.scalars(select(QualityBaseline)).one()
        assert baseline.metadata_["policy"] == "automatic"
        regressions = session.scalars(select(QualityRegression)).all()
        statuses = {o.id: o.status for o in session.scalars(select(Optimization))}
        count = session.scalar(select(func.count()).select_from(QualityRegression))
    severe = [r for r in regressions if r.severity.value in {"high", "critical"}]
    assert severe
    assert count == len({r.metric_name for r in regressions})  # one incident per metric, updated, not repeated
    if tag == "none":
        assert statuses == {unrelated: OptimizationStatus.COMPLETED, moved: OptimizationStatus.COMPLETED}
        for regression in severe:
            assert regression.action_taken is RegressionAction.MANUAL_REVIEW
            named = {entry["optimization_id"] for entry in regression.metadata_["active_optimizations"]}
            assert named == {str(unrelated), str(moved)}
        # The dashboard's incident page shows the incident with its evidence and the changes to review.
        incidents = service.group_incidents([Regression.model_validate(r) for r in regressions])
        incident = next(i for i in incidents if severe[0].id in {r.id for r in i.regressions})
        found = SimpleNamespace(
            incident=incident, start=incident.window_start, end=datetime.now(UTC), routes=[], instances=[], records=[]
        )
        html = templates.env.get_template("incident.html").render(
            found=found,
            incident=incident,
            customer_name="Acme",
            route=None,
            instance=None,
            link=lambda **_: "",
            principal=Principal.operator(),
            csrf="x",
            now=datetime.now(UTC),
            request=SimpleNamespace(url=SimpleNamespace(path=f"/incidents/{incident.id}")),
        )
        assert "incident:" in html
        assert "for its mix of routes and hours" in html
        assert "no attributable change" in html
        assert str(unrelated)[:8] in html
    else:
        assert statuses == {unrelated: OptimizationStatus.COMPLETED, moved: OptimizationStatus.ROLLED_BACK}
        assert any(r.action_taken is RegressionAction.ROLLBACK_TRIGGERED for r in severe)
        rolled = next(r for r in severe if r.action_taken is RegressionAction.ROLLBACK_TRIGGERED)
        assert rolled.metadata_["rolled_back_optimization_id"] == str(moved)
        assert rolled.metadata_["attribution"]["by"] == f"metadata.{tag}"


def test_the_worker_reopens_an_incident_that_recurs_soon_after_it_resolved(live: tuple[URL, Engine]) -> None:
    _, engine = live
    customer_id, _ = _world(engine)
    with Session(engine) as session, session.begin():
        customer = session.get(Customer, customer_id)
        assert customer is not None
        store_settings(customer, REOPENING)
    base = datetime.now(UTC).replace(second=0, microsecond=0) - timedelta(hours=9)
    start = base + timedelta(hours=6, minutes=10)
    effects = (
        Effect("overall_factor", 0.8, start, end=start + timedelta(minutes=20)),
        Effect("overall_factor", 0.8, start + timedelta(minutes=110)),
    )
    traffic = generate(TrafficModel(requests_per_day=12_000), base, 8.75 / 24, 4, effects)
    _ingest(engine, customer_id, traffic.records("m", "v1"))

    _run_monitoring(engine, start - timedelta(minutes=10), base + timedelta(hours=8, minutes=45))

    with Session(engine) as session:
        [incident] = session.scalars(
            select(QualityRegression).where(QualityRegression.metric_name == "overall_quality_score")
        ).all()
        kinds = [e.event_type for e in session.scalars(select(Event).order_by(Event.created_at))]
    assert incident.resolved_at is None
    assert incident.metadata_["reopened"] == 1
    [reopened_at] = incident.metadata_["reopened_at"]
    assert datetime.fromisoformat(reopened_at) >= start + timedelta(minutes=110)
    [resolved_before] = incident.metadata_["previously_resolved_at"]
    assert datetime.fromisoformat(resolved_before) >= start + timedelta(minutes=20 + 30)
    assert "quality.regression_reopened" in kinds
    assert kinds.index("quality.regression_resolved") < kinds.index("quality.regression_reopened")


def test_files_longer_than_one_batch_are_validated_whole_with_file_indexes() -> None:
    traffic = generate(TrafficModel(requests_per_day=12_000), start_of_day(3), 0.9, 9)
    records = traffic.records("m", "v1")
    assert len(records) > 10_000
    assert len(service.validate_file_records(records, datetime.now(UTC))) == len(records)
    records[10_003] = {**records[10_003], "overall_quality_score": 2.0}
    with pytest.raises(InvalidInputError) as refused:
        service.validate_file_records(records, datetime.now(UTC))
    assert refused.value.details["invalid_count"] == 1
    assert refused.value.details["records"][0]["index"] == 10_003


def _before_the_tail_score(reference: dict) -> dict:
    """A stored reference as baselines made before the tail score have it (no p90 thresholds, no score)."""
    old = {key: value for key, value in reference.items() if not key.startswith("score_")}
    old["thresholds"] = {
        "cells": [row[:5] for row in reference["thresholds"]["cells"]],
        "routes": {route: values[:3] for route, values in reference["thresholds"]["routes"].items()},
    }
    old["cells"] = [
        [r, h, {m: v for m, v in metrics.items() if m != "latency_tail_score"}] for r, h, metrics in old["cells"]
    ]
    old["routes"] = {
        route: {m: v for m, v in metrics.items() if m != "latency_tail_score"}
        for route, metrics in old["routes"].items()
    }
    old["tau2"] = {m: v for m, v in old["tau2"].items() if m != "latency_tail_score"}
    return old


def test_the_worker_judges_a_baseline_made_before_the_tail_score_by_its_p95_share(live: tuple[URL, Engine]) -> None:
    # Two versions with the same traffic, whose p95 latency doubles (median unchanged): v-new keeps the baseline the
    # policy establishes, v-old's is rewritten as a baseline stored before the tail score. Both are judged and
    # flagged, v-new by the tail score, v-old by the share above the p95 alone, without an error.
    _, engine = live
    customer_id, _ = _world(engine)
    base = start_of_day(1) + timedelta(hours=6)  # a fixed hour of day: the effect starts at 13:30 UTC, a busy hour
    start = base + timedelta(hours=7, minutes=30)
    traffic = generate(TrafficModel(requests_per_day=12_000), base, 7.75 / 24, 5, (Effect("latency_tail", 2.0, start),))
    _ingest(engine, customer_id, traffic.records("m", "v-new", "n") + traffic.records("m", "v-old", "o"))
    factory = make_session_factory(engine)
    run_monitoring_pass(
        factory, start - timedelta(minutes=1), rollback=rollback_for_quality
    )  # establishes both baselines
    with Session(engine) as session, session.begin():
        baselines = {b.model_version: b for b in session.scalars(select(QualityBaseline))}
        reference = baselines["v-new"].metadata_["monitoring"]
        assert len(reference["thresholds"]["cells"][0]) == 6  # route, hour, low, p50, p95, p90
        assert reference["score_slope"] is not None
        baselines["v-old"].metadata_ = {
            **baselines["v-old"].metadata_,
            "monitoring": _before_the_tail_score(baselines["v-old"].metadata_["monitoring"]),
        }

    _run_monitoring(engine, start, start + timedelta(minutes=15))

    with Session(engine) as session:
        tail = {
            r.model_version: r
            for r in session.scalars(
                select(QualityRegression).where(QualityRegression.metric_name == "latency_share_above_p95")
            )
        }
    assert set(tail) == {"v-new", "v-old"}
    assert tail["v-new"].metadata_["evidence"]["test"].startswith("tail score")
    assert "test" not in tail["v-old"].metadata_["evidence"]
