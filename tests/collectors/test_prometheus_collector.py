"""The collector against a real Prometheus (Debian's package) that scrapes Debian's node exporter and our DCGM/vLLM
exporter, with 50 hours of history backfilled: rows collected, recommendations from those numbers alone (a spot
migration and a scale-up among them), idempotency, and recovery after Prometheus is stopped and restarted."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from sqlalchemy import Engine, create_engine, func, select, tuple_
from sqlalchemy.orm import Session, sessionmaker

from optiinfra.auth.principal import Principal
from optiinfra.collectors import service
from optiinfra.collectors.collector import RetryPolicy, collect_source
from optiinfra.collectors.prometheus import Connection, query_range
from optiinfra.collectors.schemas import PrometheusSourceCreate
from optiinfra.db import migrations
from optiinfra.db.engine import make_session_factory, unit_of_work
from optiinfra.models import (
    Agent,
    AgentMetric,
    AgentType,
    Event,
    PrometheusSource,
    Recommendation,
    ResourceMetric,
    ResourceType,
    WorkflowStatus,
)
from optiinfra.workflows.catalog import load_catalog
from optiinfra.workflows.service import build_runner
from tests.collectors.exporter import MODEL
from tests.collectors.stack import Stack, start_stack
from tests.conftest import DatabaseFactory
from tests.factories import assign, make_customer

OPERATOR = Principal.operator()
STEP = 15
FAST_RETRY = RetryPolicy(attempts=2, backoff_seconds=0.2)


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    running = start_stack(tmp_path_factory.mktemp("monitoring"))
    yield running
    running.close()


@pytest.fixture(scope="module")
def engine(create_database: DatabaseFactory) -> Iterator[Engine]:
    engine = create_engine(create_database(), pool_size=5)
    migrations.upgrade(engine)
    yield engine
    engine.dispose()


def _tenant(factory: sessionmaker[Session]) -> tuple[uuid.UUID, dict[AgentType, uuid.UUID]]:
    with unit_of_work(factory) as session:
        customer = make_customer(session)
        agents = {}
        for kind in (AgentType.RESOURCE, AgentType.PERFORMANCE, AgentType.COST):
            agent = Agent(type=kind, name=f"{kind}-{uuid.uuid4().hex[:8]}")
            session.add(agent)
            session.flush()
            assign(session, agent, customer)
            agents[kind] = agent.id
        return customer.id, agents


def _source(factory: sessionmaker[Session], customer_id: uuid.UUID, url: str) -> uuid.UUID:
    with unit_of_work(factory) as session:
        created = service.create_source(
            session,
            OPERATOR,
            PrometheusSourceCreate(
                customer_id=customer_id,
                name="prod",
                base_url=url,
                instance_label="node",
                purchase_option_label="capacity_type",
                step_seconds=STEP,
                lookback_hours=50,
            ),
        )
    return created.id


def _source_row(factory: sessionmaker[Session], source_id: uuid.UUID) -> PrometheusSource:
    with factory() as session:
        source = session.get(PrometheusSource, source_id)
        assert source is not None
        session.expunge(source)
        return source


def _resource_count(factory: sessionmaker[Session], customer_id: uuid.UUID) -> tuple[int, int]:
    """(rows, distinct (instance, resource type, metric, timestamp)) of the customer's resource metrics."""
    with factory() as session:
        key = tuple_(
            ResourceMetric.instance_id,
            ResourceMetric.resource_type,
            ResourceMetric.metric_name,
            ResourceMetric.timestamp,
        )
        rows, distinct = session.execute(
            select(func.count(), func.count(func.distinct(key))).where(ResourceMetric.customer_id == customer_id)
        ).one()
        return int(rows), int(distinct)


def _stored_times(factory: sessionmaker[Session], customer_id: uuid.UUID, instance: str) -> list[datetime]:
    with factory() as session:
        return list(
            session.scalars(
                select(ResourceMetric.timestamp)
                .where(
                    ResourceMetric.customer_id == customer_id,
                    ResourceMetric.instance_id == instance,
                    ResourceMetric.resource_type == ResourceType.GPU,
                    ResourceMetric.metric_name == "utilization",
                )
                .order_by(ResourceMetric.timestamp)
            )
        )


def test_prometheus_to_recommendations_idempotent_and_recovering(
    stack: Stack, engine: Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPTIINFRA_ALLOW_PRIVATE_ENDPOINTS", "1")  # Prometheus is on loopback here
    factory = make_session_factory(engine)
    customer_id, agents = _tenant(factory)
    source_id = _source(factory, customer_id, stack.prometheus_url)
    # The node exporter has no history: wait until Prometheus has two scrapes of it (a CPU rate), then for two
    # steps more, since the collector stops a step before now.
    stack.wait_for_live_cpu()
    ready = time.time()
    while time.time() < ready + 2 * STEP + 1:
        time.sleep(0.5)

    # --- first collection: 50 hours backfilled ---------------------------------------------------------------
    first = collect_source(factory, source_id, retry=FAST_RETRY)
    assert first.ok, first.error
    assert first.start is not None
    assert first.end is not None
    assert first.start <= datetime.now(UTC) - timedelta(hours=49, minutes=59)
    assert first.resource_rows > 3 * 4 * 11_000  # 3 GPU machines x 4 metrics x ~12,000 steps
    assert first.agent_rows > 0
    with factory() as session:
        by_kind: dict[str, float] = {
            f"{instance}:{kind}:{name}": average
            for instance, kind, name, average in session.execute(
                select(
                    ResourceMetric.instance_id,
                    ResourceMetric.resource_type,
                    ResourceMetric.metric_name,
                    func.avg(ResourceMetric.metric_value),
                )
                .where(ResourceMetric.customer_id == customer_id)
                .group_by(ResourceMetric.instance_id, ResourceMetric.resource_type, ResourceMetric.metric_name)
            ).all()
        }
        # Machine metrics from the real node exporter, attributed to gpu-node-1 by the label mapping.
        assert 0 <= by_kind["gpu-node-1:cpu:utilization"] <= 100
        assert 0 < by_kind["gpu-node-1:memory:utilization"] < 100
        assert by_kind["gpu-node-1:memory:memory_used"] > 0
        # GPU metrics from the DCGM-format exporter: the script's values.
        assert 85 <= by_kind["gpu-node-1:gpu:utilization"] <= 91
        assert by_kind["gpu-node-2:gpu:gpu_count"] == 4
        assert 7 <= by_kind["gpu-node-2:gpu:utilization"] <= 10
        assert by_kind["gpu-node-1:gpu:memory_used"] == 20_000
        assert by_kind["gpu-node-1:gpu:memory_utilization"] == pytest.approx(100 * 20_000 / 22_731, abs=0.01)
        sample = session.scalar(select(ResourceMetric).where(ResourceMetric.instance_id == "gpu-node-3").limit(1))
        assert sample is not None
        assert sample.agent_id == agents[AgentType.RESOURCE]
        assert sample.metadata_ == {
            "source": "prometheus",
            "source_id": str(source_id),
            "instance_type": "g5.2xlarge",
            "zone": "us-east-1c",
            "purchase_option": "spot",
        }
        serving = dict(
            session.execute(
                select(AgentMetric.metric_name, func.max(AgentMetric.metric_value))
                .where(
                    AgentMetric.agent_id == agents[AgentType.PERFORMANCE],
                    AgentMetric.recorded_at >= first.end - timedelta(minutes=10),
                )
                .group_by(AgentMetric.metric_name)
            ).all()
        )
        assert serving["vllm.kv_cache_usage"] == pytest.approx(0.96)
        assert serving["vllm.requests_finished_per_second"] == pytest.approx(4.0, rel=0.01)
        assert serving["vllm.generation_tokens_per_second"] == pytest.approx(1000.0, rel=0.01)
        assert 1.0 < serving["vllm.ttft_p50_seconds"] < 3.0  # saturated: median 1.8 s
        assert 0.04 < serving["vllm.tpot_p95_seconds"] < 0.2

    # --- recommendations from those numbers alone ------------------------------------------------------------
    made = {r["type"]: r for r in first.recommendations if r.get("outcome") == "created"}
    assert set(made) == {"scale_up", "gpu_downsize"}, first.recommendations
    catalog = load_catalog()
    with factory() as session:
        scale_up = session.get(Recommendation, uuid.UUID(made["scale_up"]["recommendation_id"]))
        assert scale_up is not None
        assert scale_up.agent_id == agents[AgentType.PERFORMANCE]
        assert (scale_up.data["instance_id"], scale_up.data["model_name"]) == ("gpu-node-1", MODEL)
        evidence = scale_up.data["evidence"]
        assert "KV cache at or above 90% in 100% of the steps" in evidence["signals"][0]
        queries = {series["metric_name"]: series for series in evidence["series"]}
        assert "vllm:gpu_cache_usage_perc" in queries["vllm.kv_cache_usage"]["query"]
        assert "by (node, instance_type, zone, capacity_type, model_name)" in queries["vllm.kv_cache_usage"]["query"]
        assert len(queries["vllm.requests_waiting"]["values"]) >= 25  # per-minute values over 30 minutes
        estimate = scale_up.data["estimate"]
        assert estimate["queue_wait_seconds"] == pytest.approx(
            estimate["mean_waiting_recent"] / estimate["finished_per_second_recent"], rel=0.01
        )
        assert estimate["queue_wait_seconds"] > 2  # about 20 requests waiting at 4 finished per second
        assert estimate["added_monthly_cost"] == pytest.approx(1.006 * 730, abs=0.01)

        downsize = session.get(Recommendation, uuid.UUID(made["gpu_downsize"]["recommendation_id"]))
        assert downsize is not None
        assert downsize.agent_id == agents[AgentType.COST]
        found = downsize.data["estimate"]
        assert (downsize.data["instance_id"], found["current_type"], found["gpus_needed"]) == (
            "gpu-node-2",
            "g5.12xlarge",
            1,
        )
        cheapest = min((p.on_demand_hourly, name) for name, p in catalog.instance_types.items() if p.gpus >= 1)
        assert found["proposed_type"] == cheapest[1]
        assert downsize.estimated_savings == Decimal(str(round((5.672 - cheapest[0]) * 730, 2)))
        assert len(downsize.data["evidence"]["hourly_utilization"]) == 48
        assert "DCGM_FI_DEV_GPU_UTIL" in downsize.data["evidence"]["query"]

    # The spot-migration analysis on what was collected: steady gpu-node-1 (on demand) moves; gpu-node-2 varies
    # too much; gpu-node-3 is already on spot.
    runner = build_runner(factory, tmp_path)
    analysis = runner.create(
        "spot_migration_analysis",
        customer_id=customer_id,
        agent_id=agents[AgentType.COST],
        input_data={"lookback_days": 3},
        actor=OPERATOR,
    )
    assert runner.run(analysis, OPERATOR) is WorkflowStatus.COMPLETED
    with factory() as session:
        spot = session.scalar(
            select(Recommendation).where(
                Recommendation.customer_id == customer_id, Recommendation.type == "spot_migration"
            )
        )
        assert spot is not None
        assert spot.data["instances"] == ["gpu-node-1"]
        assert spot.data["candidates"][0]["zone"] == "us-east-1a"
        assert spot.estimated_savings == Decimal(str(round((1.006 - 0.385) * 730, 2)))

    # --- idempotency: the same range collected again stores nothing twice ------------------------------------
    before = _resource_count(factory, customer_id)
    assert before[0] == before[1]
    again = collect_source(
        factory, source_id, now=first.end + timedelta(seconds=STEP), retry=FAST_RETRY, since=first.start
    )
    assert again.ok
    assert (again.resource_rows, again.agent_rows) == (0, 0)
    assert again.skipped_duplicates >= first.resource_rows
    assert _resource_count(factory, customer_id) == before
    assert all(r.get("outcome") != "created" for r in again.recommendations)  # pending ones are not made twice

    # --- Prometheus down: retries, one event, nothing skipped ------------------------------------------------
    stopped_at = _source_row(factory, source_id).collected_until
    stack.stop_prometheus()
    for attempt in (1, 2):
        failed = collect_source(factory, source_id, retry=FAST_RETRY)
        assert not failed.ok
        assert failed.error is not None
        assert "cannot be reached" in failed.error
        row = _source_row(factory, source_id)
        assert (row.consecutive_failures, row.collected_until) == (attempt, stopped_at)
    with factory() as session:
        kinds = list(
            session.scalars(
                select(Event.event_type).where(Event.customer_id == customer_id, Event.event_type.like("collector.%"))
            )
        )
        assert kinds == ["collector.source_unreachable"]

    # --- restarted: the collection resumes where it stopped, without gaps or duplicates ----------------------
    stack.start_prometheus()
    assert stopped_at is not None
    while datetime.now(UTC) < stopped_at + timedelta(seconds=2 * STEP + 2):
        time.sleep(1)
    recovered = collect_source(factory, source_id, retry=FAST_RETRY)
    assert recovered.ok, recovered.error
    assert recovered.start == stopped_at
    assert recovered.resource_rows > 0
    row = _source_row(factory, source_id)
    assert (row.consecutive_failures, row.last_error) == (0, None)
    with factory() as session:
        recovery = session.scalar(
            select(Event).where(Event.customer_id == customer_id, Event.event_type == "collector.source_recovered")
        )
        assert recovery is not None
        assert recovery.data["failed_collections"] == 2
    rows, distinct = _resource_count(factory, customer_id)
    assert rows == distinct
    # Every step Prometheus answers for, over the whole collected range, is stored, once: no gap (a step Prometheus
    # has no sample for, e.g. a scrape that timed out on a loaded machine, is absent from both).
    assert row.collected_until is not None
    stored = _stored_times(factory, customer_id, "gpu-node-1")
    answered: list[datetime] = []
    start, last = first.start, row.collected_until - timedelta(seconds=STEP)
    while start <= last:
        end = min(last, start + timedelta(seconds=STEP * 9_999))
        (series,) = query_range(
            Connection(stack.prometheus_url),
            'avg by (node) (DCGM_FI_DEV_GPU_UTIL{node="gpu-node-1"})',
            start,
            end,
            STEP,
        )
        answered += [moment for moment, _ in series.points]
        start = end + timedelta(seconds=STEP)
    assert stored == answered
    assert stored[0] == first.start
    assert stored[-1] == last
    assert any(moment > stopped_at for moment in stored)
