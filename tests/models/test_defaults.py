"""Server-side defaults, JSONB values, updated_at bumps and enum storage."""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.orm import Session

from optiinfra.models import (
    Agent,
    AgentType,
    AlertOutbox,
    AlertRoute,
    Base,
    Customer,
    CustomerPlan,
    MetricCounter,
    PrometheusSource,
    QualityRollup,
    RecommendationStatus,
)
from tests.factories import (
    make_agent,
    make_agent_capability,
    make_agent_config,
    make_agent_state,
    make_approval,
    make_customer,
    make_quality_baseline,
    make_quality_metric,
    make_quality_regression,
    make_recommendation,
    make_scaling_event,
    make_workflow_artifact,
    make_workflow_execution,
    make_workflow_step,
)

NOW = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)


@dataclass
class MinimalInsert:
    """The NOT NULL columns without a server default for one table, and what the server must fill in."""

    required: Callable[[Session], dict[str, Any]]
    server_filled: dict[str, Any] = field(default_factory=dict)
    has_updated_at: bool = True
    created_column: str = "created_at"
    has_id: bool = True  # quality_request_keys is keyed by (customer_id, request_id) (migration 016)


def _ids(session: Session) -> dict[str, Any]:
    """Parents for the raw inserts: one of each, made through the factories."""
    customer = make_customer(session)
    agent = make_agent(session)
    recommendation = make_recommendation(session, customer=customer, agent=agent)
    execution = make_workflow_execution(session, customer=customer, agent=agent)
    baseline = make_quality_baseline(session, customer=customer, agent=agent)
    metric = make_quality_metric(session, customer=customer, agent=agent)
    return {
        "quality_metric_id": metric.id,
        "quality_metric_timestamp": metric.timestamp,
        "customer_id": customer.id,
        "agent_id": agent.id,
        "recommendation_id": recommendation.id,
        "workflow_execution_id": execution.id,
        "baseline_id": baseline.id,
    }


def _unique(template: str) -> Callable[[], str]:
    """A value made unique per insert, for columns with a unique constraint."""
    return lambda: template.format(uuid.uuid4().hex)


def _pick(*names: str, **values: Any) -> Callable[[Session], dict[str, Any]]:
    """The parents' ids named by `names` (made through the factories) plus the given column values."""

    def required(session: Session) -> dict[str, Any]:
        parents = _ids(session) if names else {}
        resolved = {name: value() if callable(value) else value for name, value in values.items()}
        return {**{name: parents[name] for name in names}, **resolved}

    return required


JSON = json.dumps

MINIMAL_INSERTS: dict[str, MinimalInsert] = {
    "customers": MinimalInsert(
        _pick(
            name="Acme",
            email=_unique("raw-{}@acme.example"),
            api_key=lambda: hashlib.sha256(uuid.uuid4().bytes).hexdigest(),
        ),
        {"plan": "free", "status": "active", "metadata": {}},
    ),
    "agents": MinimalInsert(
        _pick(type="cost", name=_unique("raw-agent-{}")),
        {"status": "starting", "capabilities": [], "metadata": {}, "last_heartbeat": None},
    ),
    "events": MinimalInsert(
        _pick("customer_id", event_type="agent.registered"),
        {"severity": "info", "data": {}, "agent_id": None},
        has_updated_at=False,
    ),
    "recommendations": MinimalInsert(
        _pick("customer_id", "agent_id", type="spot_migration", title="Use spot"),
        {"confidence_score": 0.0, "priority": "medium", "status": "pending", "data": {}},
    ),
    "approvals": MinimalInsert(_pick("recommendation_id", approved_by="ops@acme.example"), {"status": "pending"}),
    "optimizations": MinimalInsert(
        _pick("recommendation_id", "customer_id", "agent_id"),
        {"status": "queued", "progress": 0, "result": {}},
        has_updated_at=False,
    ),
    "agent_customers": MinimalInsert(_pick("agent_id", "customer_id"), {}, has_updated_at=False),
    "agent_configs": MinimalInsert(
        _pick("agent_id", config_key="poll_seconds", config_value="30"), {"config_type": "string"}
    ),
    "agent_states": MinimalInsert(
        _pick("agent_id"),
        {
            "current_status": "idle",
            "active_workflows": [],
            "locks": {},
            "resource_usage": {},
            "metadata": {},
            "current_workflow_id": None,
        },
    ),
    "agent_capabilities": MinimalInsert(
        _pick("agent_id", capability_name="rightsizing"),
        {"capability_version": "1.0.0", "enabled": True, "config": {}},
    ),
    "agent_metrics": MinimalInsert(
        _pick("agent_id", metric_name="queue_depth", metric_value=3.0),
        {"metric_type": "gauge", "tags": {}},
        has_updated_at=False,
        # A time series sample: SCHEMA.md gives agent_metrics recorded_at instead of created_at.
        created_column="recorded_at",
    ),
    "workflow_executions": MinimalInsert(
        _pick("agent_id", "customer_id", workflow_type="cost_analysis"),
        {"status": "pending", "input_data": {}, "output_data": {}, "metadata": {}, "error_details": None},
    ),
    "workflow_steps": MinimalInsert(
        _pick("workflow_execution_id", step_name="collect", step_order=1),
        {
            "status": "pending",
            "input_data": {},
            "output_data": {},
            "retry_count": 0,
            "max_retries": 3,
            "metadata": {},
        },
    ),
    "workflow_artifacts": MinimalInsert(
        _pick("workflow_execution_id", artifact_type="report", artifact_name="r.json", artifact_path="/tmp/r"),
        {"metadata": {}, "workflow_step_id": None},
    ),
    "resource_metrics": MinimalInsert(
        _pick(
            "agent_id",
            "customer_id",
            instance_id="i-1",
            resource_type="gpu",
            metric_name="utilization",
            metric_value=0.7,
            unit="ratio",
            timestamp=NOW,
        ),
        {"metadata": {}},
        has_updated_at=False,
    ),
    "scaling_events": MinimalInsert(
        _pick(
            "agent_id",
            "customer_id",
            event_type="scale_up",
            trigger_reason="utilization",
            before_state=JSON({"instance_count": 1}),
            after_state=JSON({"instance_count": 2}),
            executed_at=NOW,
        ),
        {"success": False, "metadata": {}, "workflow_execution_id": None},
    ),
    "quality_metrics": MinimalInsert(
        _pick(
            "agent_id",
            "customer_id",
            request_id=_unique("req-{}"),
            model_name="llama-3-70b",
            model_version="v1",
            overall_quality_score=0.9,
            timestamp=NOW,
        ),
        {"hallucination_detected": False, "metadata": {}},
        has_updated_at=False,
    ),
    "quality_baselines": MinimalInsert(
        _pick(
            "agent_id",
            "customer_id",
            model_name="llama-3-70b",
            model_version="v1",
            sample_size=100,
            avg_overall_score=0.9,
            established_at=NOW,
        ),
        {"baseline_type": "initial", "metadata": {}},
        has_updated_at=False,
    ),
    "quality_regressions": MinimalInsert(
        _pick(
            "agent_id",
            "customer_id",
            "baseline_id",
            regression_type="quality_drop",
            severity="high",
            detected_at=NOW,
            metric_name="overall_quality_score",
            baseline_value=0.9,
            current_value=0.7,
            delta_percent=-22.2,
            sample_size=50,
        ),
        {"action_taken": "alert_only", "metadata": {}, "resolved_at": None},
    ),
    "scoring_texts": MinimalInsert(
        _pick("quality_metric_id", "quality_metric_timestamp", "customer_id", prompt="q", response="a", expires_at=NOW),
        {"context": None, "claimed_until": None, "attempts": 0, "last_error": None, "scored_at": None},
        has_updated_at=False,
    ),
    "quality_request_keys": MinimalInsert(
        _pick(
            "customer_id",
            request_id=_unique("req-{}"),
            quality_metric_id=uuid.uuid4,
            quality_metric_timestamp=NOW,
        ),
        has_updated_at=False,
        has_id=False,
    ),
    "dashboard_sessions": MinimalInsert(
        _pick(
            token_digest=lambda: hashlib.sha256(uuid.uuid4().bytes).hexdigest(),
            key_digest="c" * 64,
            csrf_token="d" * 64,
            expires_at=NOW,
        ),
        {"customer_id": None},
        has_updated_at=False,
    ),
    "alert_routes": MinimalInsert(
        _pick("customer_id", name="pager", destination="webhook", url="https://hooks.example.com/x"),
        {"event_kinds": [], "model_names": [], "min_severity": "info", "throttle_seconds": 900, "enabled": True},
    ),
    "prometheus_sources": MinimalInsert(
        _pick("customer_id", name="main", base_url="https://prometheus.example.com"),
        {
            "auth_type": "none",
            "instance_label": "instance",
            "instance_type_label": "instance_type",
            "zone_label": "zone",
            "purchase_option_label": "capacity_type",
            "step_seconds": 60,
            "lookback_hours": 168,
            "enabled": True,
            "consecutive_failures": 0,
            "collected_until": None,
        },
    ),
    "alert_outbox": MinimalInsert(
        lambda session: {
            "route_id": make_alert_route(session).id,
            "customer_id": make_alert_route(session).customer_id,
            "kind": "test",
            "severity": "info",
            "subject_key": "test:raw",
            "group_key": "test:raw",
        },
        {"status": "pending", "attempts": 0, "max_attempts": 8, "payload": {}, "event_id": None},
    ),
    "alert_deliveries": MinimalInsert(
        lambda session: {"outbox_id": make_alert(session).id, "attempt": 1, "outcome": "delivered", "duration_ms": 5},
        {"status_code": None, "error": None},
        has_updated_at=False,
    ),
    "metric_counters": MinimalInsert(
        _pick(name="optiinfra_rollbacks", labels="{}", customer_key="", shard=1), {"value": 0}
    ),
    "quality_rollups": MinimalInsert(
        _pick("customer_id", model_name="gpt", model_version="v1", hour_start=NOW, latency_histogram=[0] * 146),
        {"route": "", "record_count": 0, "overall_sum": 0.0, "latency_count": 0, "prompt_tokens_sum": 0},
    ),
}


def make_alert_route(session: Session) -> AlertRoute:
    route = AlertRoute(
        customer_id=make_customer(session).id, name="pager", destination="slack", url="https://hooks.example.com/x"
    )
    session.add(route)
    session.flush()
    return route


def make_prometheus_source(session: Session) -> PrometheusSource:
    source = PrometheusSource(
        customer_id=make_customer(session).id, name="main", base_url="https://prometheus.example.com"
    )
    session.add(source)
    session.flush()
    return source


def make_alert(session: Session) -> AlertOutbox:
    route = make_alert_route(session)
    alert = AlertOutbox(
        route_id=route.id,
        customer_id=route.customer_id,
        kind="test",
        severity="info",
        subject_key="test:factory",
        group_key="test:factory",
    )
    session.add(alert)
    session.flush()
    return alert


def make_metric_counter(session: Session) -> MetricCounter:
    counter = MetricCounter(name="optiinfra_rollbacks", labels="{}", customer_key="", shard=2, value=1)
    session.add(counter)
    session.flush()
    return counter


def make_quality_rollup(session: Session) -> QualityRollup:
    rollup = QualityRollup(
        customer_id=make_customer(session).id,
        model_name="gpt",
        model_version="v1",
        hour_start=NOW,
        latency_histogram=[0] * 146,
    )
    session.add(rollup)
    session.flush()
    return rollup


JSONB_COLUMNS = {"before_state", "after_state"}


def test_the_minimal_inserts_cover_every_table() -> None:
    assert set(MINIMAL_INSERTS) == set(Base.metadata.tables)
    assert {name for name, spec in MINIMAL_INSERTS.items() if spec.has_updated_at} == {
        name for name, table in Base.metadata.tables.items() if "updated_at" in table.c
    }
    assert all(spec.created_column in Base.metadata.tables[name].c for name, spec in MINIMAL_INSERTS.items())


@pytest.mark.parametrize("table", sorted(MINIMAL_INSERTS))
def test_raw_insert_of_only_required_columns_gets_server_defaults(session: Session, table: str) -> None:
    spec = MINIMAL_INSERTS[table]
    values = spec.required(session)
    placeholders = [f"CAST(:{name} AS jsonb)" if name in JSONB_COLUMNS else f":{name}" for name in values]
    # Identifiers come from the table above; every value is a bound parameter.
    statement = text(f"INSERT INTO {table} ({', '.join(values)}) VALUES ({', '.join(placeholders)}) RETURNING *")

    row = session.execute(statement, values).mappings().one()
    transaction_start = session.scalar(text("SELECT now()"))

    assert row["id"] is not None if spec.has_id else "id" not in row
    assert row[spec.created_column] == transaction_start
    assert row[spec.created_column].utcoffset() is not None
    if spec.has_updated_at:
        assert row["updated_at"] == transaction_start
    filled = {column: row[column] for column in spec.server_filled}
    assert filled == spec.server_filled


def test_raw_inserts_get_distinct_generated_ids(session: Session) -> None:
    agent_id = make_agent(session).id
    insert = text("INSERT INTO agent_metrics (agent_id, metric_name, metric_value) VALUES (:a, :n, :v) RETURNING id")

    ids = {session.scalar(insert, {"a": agent_id, "n": "queue_depth", "v": float(i)}) for i in range(5)}

    assert len(ids) == 5


def test_json_defaults_are_fresh_per_row(session: Session) -> None:
    first = Agent(type=AgentType.COST, name="fresh-defaults-1")
    second = Agent(type=AgentType.COST, name="fresh-defaults-2")
    session.add_all([first, second])
    session.flush()

    first.capabilities.append("rightsizing")
    first.metadata_["region"] = "eu-west-1"

    assert second.capabilities == []
    assert second.metadata_ == {}
    assert first.capabilities is not second.capabilities
    assert first.metadata_ is not second.metadata_


def test_json_defaults_are_fresh_per_row_on_child_tables(session: Session) -> None:
    first, second = make_agent_state(session), make_agent_state(session)

    first.active_workflows.append("wf-1")
    first.locks["gpu-0"] = "wf-1"

    assert (second.active_workflows, second.locks) == ([], {})


@pytest.mark.parametrize(
    "value",
    [
        {"thresholds": {"gpu": {"high": 0.85, "low": [0.2, 0.3]}}, "enabled": True, "owner": None},
        [1, "two", {"three": [3.5]}, [], {}],
        {"note": "Überprüfung — 日本語 ✓ 🚀", "quote": 'it\'s "quoted"\n'},
        {"big": 2**70, "beyond_float": 2**53 + 1, "negative": -(2**63), "float": 0.1},
        {},
    ],
    ids=["nested", "list", "unicode", "large_ints", "empty"],
)
def test_jsonb_round_trips(session: Session, value: Any) -> None:
    execution = make_workflow_execution(session, input_data={"payload": value}, output_data={"payload": value})
    session.expunge_all()

    stored = session.scalar(text("SELECT input_data FROM workflow_executions WHERE id = :id"), {"id": execution.id})
    loaded = session.get(type(execution), execution.id)

    assert stored == {"payload": value}
    assert loaded is not None
    assert loaded.output_data == {"payload": value}


def test_agent_capabilities_list_round_trips_in_order(session: Session) -> None:
    agent = make_agent(session, capabilities=["scale", "rightsizing", "spot"])
    session.expunge_all()

    assert session.get(Agent, agent.id).capabilities == ["scale", "rightsizing", "spot"]  # type: ignore[union-attr]


UPDATABLE: dict[str, tuple[Callable[[Session], Any], str, Any]] = {
    "customers": (make_customer, "name", "Renamed"),
    "agents": (make_agent, "version", "2.0.0"),
    "recommendations": (make_recommendation, "title", "Renamed"),
    "approvals": (make_approval, "comment", "looks good"),
    "agent_configs": (make_agent_config, "config_value", "60"),
    "agent_states": (make_agent_state, "locks", {"gpu-0": "wf-9"}),
    "agent_capabilities": (make_agent_capability, "enabled", False),
    "workflow_executions": (make_workflow_execution, "output_data", {"done": True}),
    "workflow_steps": (make_workflow_step, "retry_count", 1),
    "workflow_artifacts": (make_workflow_artifact, "content_type", "application/json"),
    "scaling_events": (make_scaling_event, "success", True),
    "quality_regressions": (make_quality_regression, "resolution_notes", "rolled back"),
    "alert_routes": (make_alert_route, "enabled", False),
    "prometheus_sources": (make_prometheus_source, "consecutive_failures", 1),
    "alert_outbox": (make_alert, "status", "delivered"),
    "metric_counters": (make_metric_counter, "value", 2),
    "quality_rollups": (make_quality_rollup, "record_count", 3),
}


def test_every_table_with_updated_at_is_checked_for_the_bump() -> None:
    assert set(UPDATABLE) == {name for name, table in Base.metadata.tables.items() if "updated_at" in table.c}


@pytest.mark.parametrize("table", sorted(UPDATABLE))
def test_updated_at_is_bumped_on_orm_update_and_created_at_is_kept(session: Session, table: str) -> None:
    factory, attribute, new_value = UPDATABLE[table]
    row = factory(session)
    old = datetime(2020, 1, 1, tzinfo=UTC)
    session.execute(
        text(f"UPDATE {table} SET created_at = :old, updated_at = :old WHERE id = :id"),
        {"old": old, "id": row.id},
    )
    session.expire(row)
    assert row.updated_at == old

    setattr(row, attribute, new_value)
    session.flush()

    assert row.created_at == old
    assert row.updated_at == session.scalar(text("SELECT now()"))
    assert row.updated_at > old


def test_enum_columns_store_the_value_strings(session: Session) -> None:
    customer = make_customer(session)
    recommendation = make_recommendation(session, customer=customer, status=RecommendationStatus.ROLLED_BACK)

    plan = session.scalar(text("SELECT plan::text FROM customers WHERE id = :id"), {"id": customer.id})
    status = session.scalar(text("SELECT status::text FROM recommendations WHERE id = :id"), {"id": recommendation.id})

    assert plan == "free"
    assert status == "rolled_back"


def test_enum_value_written_by_sql_reads_back_as_the_python_enum(session: Session) -> None:
    customer_id = session.scalar(
        text("INSERT INTO customers (name, email, api_key, plan) VALUES (:name, :email, :api_key, :plan) RETURNING id"),
        {"name": "Raw", "email": "raw-enum@acme.example", "api_key": "c" * 64, "plan": "enterprise"},
    )

    customer = session.get(Customer, customer_id)

    assert customer is not None
    assert customer.plan is CustomerPlan.ENTERPRISE
