"""Demo data for all 19 tables: three customers, five agents and a few days of their life.

The story: Acme Analytics runs GPT-4o and Llama 3 70B on a small GPU fleet. The cost agent found a spot
migration (completed, savings realised); a vLLM tuning change raised GPT-4o latency, the application agent
caught the regression and the change was rolled back (resolved); an int8 quantization of Llama 3 is live and its
hallucination rate is up (open, waiting for a human). Nimbus Chat is a smaller startup with a cost analysis in
progress; Quillbyte Labs is a suspended free account.

Idempotent: every row has a deterministic id (uuid5 of a stable key) and is inserted with ON CONFLICT DO
NOTHING, all in one transaction, so running the seed again adds nothing and changes nothing.
"""

from __future__ import annotations

import hashlib
import random
import uuid
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import ARRAY, Engine, Uuid, any_, bindparam, func, inspect, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

from optiinfra.models import (
    Agent,
    AgentCapability,
    AgentConfig,
    AgentCustomer,
    AgentMetric,
    AgentState,
    AgentStatus,
    AgentStatusDetail,
    AgentType,
    AlertDelivery,
    AlertOutbox,
    AlertRoute,
    Approval,
    ApprovalStatus,
    ArtifactType,
    Base,
    BaselineType,
    ConfigType,
    Customer,
    CustomerPlan,
    CustomerStatus,
    Event,
    EventSeverity,
    MetricType,
    Optimization,
    OptimizationStatus,
    QualityBaseline,
    QualityMetric,
    QualityRegression,
    Recommendation,
    RecommendationPriority,
    RecommendationStatus,
    RegressionAction,
    RegressionSeverity,
    ResourceMetric,
    ResourceType,
    ScalingEvent,
    ScalingEventType,
    StepStatus,
    WorkflowArtifact,
    WorkflowExecution,
    WorkflowStatus,
    WorkflowStep,
    WorkflowType,
)
from optiinfra.quality.judge import judge
from optiinfra.quality.repository import WindowRows
from optiinfra.quality.schemas import Finding
from optiinfra.quality.scoring import overall_quality_score
from optiinfra.quality.service import build_baseline
from optiinfra.quality.settings import QualitySettings
from optiinfra.quality.statistics import WindowSummary

SEED_NAMESPACE = uuid.UUID("6f1c2a7e-3b9d-4c55-9a0e-0d5e7f4b2c11")

# Insert order respects the foreign keys.
SEEDED_MODELS: tuple[type[Base], ...] = (
    Customer,
    Agent,
    AgentCustomer,
    AgentConfig,
    AgentCapability,
    AgentMetric,
    Recommendation,
    Approval,
    Optimization,
    WorkflowExecution,
    WorkflowStep,
    WorkflowArtifact,
    AgentState,
    ResourceMetric,
    ScalingEvent,
    QualityMetric,
    QualityBaseline,
    QualityRegression,
    Event,
    AlertRoute,
    AlertOutbox,
    AlertDelivery,
)


def demo_id(key: str) -> uuid.UUID:
    """The stable id of a demo row."""
    return uuid.uuid5(SEED_NAMESPACE, key)


@dataclass
class DemoData:
    """Rows to insert, per model, as attribute dictionaries."""

    anchor: datetime
    rows: dict[type[Base], list[dict[str, Any]]] = field(default_factory=dict)

    def add(self, model: type[Base], key: str, **values: Any) -> uuid.UUID:
        row_id = demo_id(f"{model.__tablename__}:{key}")
        self.rows.setdefault(model, []).append({"id": row_id, **values})
        return row_id

    def at(self, *, days: float = 0, hours: float = 0, minutes: float = 0) -> datetime:
        """A moment relative to the anchor (negative is in the past)."""
        return self.anchor + timedelta(days=days, hours=hours, minutes=minutes)


def seed_demo_data(engine: Engine, *, now: datetime | None = None) -> dict[str, tuple[int, int]]:
    """Insert the demo data in one transaction; return {table: (rows added, rows now)}."""
    anchor = (now or datetime.now(UTC)).replace(minute=0, second=0, microsecond=0)
    data = build_demo_data(anchor)
    with Session(engine) as session, session.begin():
        before = _counts(session)
        for model in SEEDED_MODELS:
            rows = data.rows.get(model, [])
            if model is QualityMetric and rows:
                # A record seeded before (another anchor, so another timestamp) conflicts on its idempotency key,
                # which lives in quality_request_keys (migration 016), not on quality_metrics' primary key.
                ids = bindparam("ids", [row["id"] for row in rows], type_=ARRAY(Uuid))
                stored = set(session.scalars(select(QualityMetric.id).where(QualityMetric.id == any_(ids))))
                rows = [row for row in rows if row["id"] not in stored]
            if rows:
                session.execute(insert(model).on_conflict_do_nothing(), rows)
        after = _counts(session)
    return {name: (after[name] - before[name], after[name]) for name in after}


def _counts(session: Session) -> dict[str, int]:
    return {
        model.__tablename__: session.scalar(select(func.count()).select_from(model)) or 0 for model in SEEDED_MODELS
    }


def build_demo_data(anchor: datetime) -> DemoData:
    """The whole demo data set, deterministic for a given anchor time."""
    data = DemoData(anchor=anchor)
    rng = random.Random(20251018)  # noqa: S311 (demo data, not security)
    customers = _customers(data)
    agents = _agents(data)
    _assignments(data, customers, agents)
    _agent_state_tables(data, agents, rng)
    recommendations = _recommendations(data, customers, agents)
    workflows = _workflows(data, customers, agents, recommendations)
    _agent_states(data, agents, workflows)
    _resources(data, customers, agents, workflows, rng)
    _quality(data, customers, agents, workflows, recommendations, rng)
    _alerts(data, customers)
    return data


# --- alerts --------------------------------------------------------------------------------------------------


def _alerts(data: DemoData, customers: dict[str, uuid.UUID]) -> None:
    """Acme's Slack route (disabled: the URL is a placeholder to replace) and the test alert it got once."""
    acme = customers["acme"]
    route_id = data.add(
        AlertRoute,
        "acme:slack",
        customer_id=acme,
        name="#ml-oncall (demo: set your Slack webhook URL, then enable)",
        destination="slack",
        url="https://hooks.slack.com/services/T0000DEMO/B0000DEMO/demo-placeholder",
        event_kinds=[],
        min_severity=EventSeverity.WARNING,
        model_names=[],
        throttle_seconds=900,
        enabled=False,
        created_at=data.at(days=-6),
        updated_at=data.at(days=-6),
    )
    sent_at = data.at(days=-6, minutes=1)
    outbox_id = data.add(
        AlertOutbox,
        "acme:slack:test",
        route_id=route_id,
        customer_id=acme,
        kind="test",
        severity=EventSeverity.INFO,
        subject_key="test:demo",
        group_key="test:demo",
        payload={
            "kind": "test",
            "severity": "info",
            "customer_id": str(acme),
            "title": "Test alert from OptiInfra to #ml-oncall",
            "text": "If you read this, alerts reach this destination.",
            "occurred_at": sent_at.isoformat(),
        },
        status="delivered",
        attempts=1,
        max_attempts=8,
        next_attempt_at=sent_at,
        delivered_at=sent_at,
        created_at=sent_at,
        updated_at=sent_at,
    )
    data.add(
        AlertDelivery,
        "acme:slack:test:1",
        outbox_id=outbox_id,
        attempt=1,
        outcome="delivered",
        status_code=200,
        duration_ms=212,
        created_at=sent_at,
    )


# --- customers and agents ---------------------------------------------------------------------------------


def _customers(data: DemoData) -> dict[str, uuid.UUID]:
    specs = [
        (
            "acme",
            "Acme Analytics",
            "mlops@acme-analytics.example",
            CustomerPlan.ENTERPRISE,
            CustomerStatus.ACTIVE,
        ),
        (
            "nimbus",
            "Nimbus Chat",
            "platform@nimbus-chat.example",
            CustomerPlan.STARTUP,
            CustomerStatus.ACTIVE,
        ),
        (
            "quillbyte",
            "Quillbyte Labs",
            "founders@quillbyte.example",
            CustomerPlan.FREE,
            CustomerStatus.SUSPENDED,
        ),
    ]
    customers = {}
    for key, name, email, plan, status in specs:
        # Demo customers get a digest of a key nobody knows: an operator issues real keys by rotating them.
        unknown_key = hashlib.sha256(f"optiinfra-demo-unusable-key:{key}:{uuid.uuid4()}".encode()).hexdigest()
        customers[key] = data.add(
            Customer,
            key,
            name=name,
            email=email,
            api_key=unknown_key,
            plan=plan,
            status=status,
            metadata_={"demo": True, "region": "eu-west-1" if key == "acme" else "us-east-1"},
            created_at=data.at(days=-30),
        )
    return customers


AGENT_SPECS: tuple[tuple[AgentType, str, str, list[str]], ...] = (
    (AgentType.ORCHESTRATOR, "orchestrator-main", "http://127.0.0.1:8100", ["routing", "approval_gate"]),
    (AgentType.COST, "cost-agent-01", "http://127.0.0.1:8101", ["spot_migration", "right_sizing", "pricing"]),
    (AgentType.PERFORMANCE, "performance-agent-01", "http://127.0.0.1:8102", ["vllm_tuning", "batching"]),
    (AgentType.RESOURCE, "resource-agent-01", "http://127.0.0.1:8103", ["gpu_metrics", "autoscaling"]),
    (
        AgentType.APPLICATION,
        "application-agent-01",
        "http://127.0.0.1:8104",
        ["quality_scoring", "regression_detection"],
    ),
)


def _agents(data: DemoData) -> dict[AgentType, uuid.UUID]:
    agents = {}
    for agent_type, name, endpoint, capabilities in AGENT_SPECS:
        degraded = agent_type is AgentType.PERFORMANCE
        agents[agent_type] = data.add(
            Agent,
            name,
            type=agent_type,
            name=name,
            version="0.4.2",
            status=AgentStatus.DEGRADED if degraded else AgentStatus.HEALTHY,
            endpoint=endpoint,
            capabilities=capabilities,
            metadata_={"host": f"{name}.internal", "heartbeat_interval_seconds": 30},
            last_heartbeat=data.at(minutes=-4 if degraded else -1),
            created_at=data.at(days=-30),
        )
        for capability in capabilities:
            data.add(
                AgentCapability,
                f"{name}:{capability}",
                agent_id=agents[agent_type],
                capability_name=capability,
                capability_version="1.2.0" if capability == "spot_migration" else "1.0.0",
                enabled=capability != "batching",
                config={},
                description=capability.replace("_", " ").capitalize(),
            )
    return agents


def _assignments(data: DemoData, customers: dict[str, uuid.UUID], agents: dict[AgentType, uuid.UUID]) -> None:
    """The demo's agents are the platform's: each serves every demo customer (an agent acts only for its own)."""
    for customer_key, customer_id in customers.items():
        for agent_type, agent_id in agents.items():
            data.add(
                AgentCustomer,
                f"{agent_type}:{customer_key}",
                agent_id=agent_id,
                customer_id=customer_id,
                created_at=data.at(days=-30),
            )


def _agent_state_tables(data: DemoData, agents: dict[AgentType, uuid.UUID], rng: random.Random) -> None:
    configs: list[tuple[AgentType, str, str, ConfigType, str]] = [
        (
            AgentType.ORCHESTRATOR,
            "approval_required",
            "true",
            ConfigType.BOOLEAN,
            "Ask a human before any change",
        ),
        (AgentType.ORCHESTRATOR, "max_parallel_workflows", "4", ConfigType.INTEGER, "Workflows run at once"),
        (
            AgentType.COST,
            "min_monthly_savings_usd",
            "250",
            ConfigType.INTEGER,
            "Smallest saving worth proposing",
        ),
        (AgentType.COST, "spot_max_interruption_rate", "0.05", ConfigType.FLOAT, "Highest acceptable rate"),
        (AgentType.COST, "pricing_region", "eu-west-1", ConfigType.STRING, "Price catalog region"),
        (AgentType.PERFORMANCE, "target_p95_latency_ms", "1200", ConfigType.INTEGER, "Latency objective"),
        (
            AgentType.RESOURCE,
            "scale_up_threshold",
            "0.8",
            ConfigType.FLOAT,
            "GPU utilization that adds a node",
        ),
        (AgentType.RESOURCE, "instance_limits", '{"min": 2, "max": 8}', ConfigType.JSON, "Fleet size bounds"),
        (AgentType.APPLICATION, "baseline_min_samples", "50", ConfigType.INTEGER, "Smallest baseline window"),
        (
            AgentType.APPLICATION,
            "auto_rollback",
            "true",
            ConfigType.BOOLEAN,
            "Roll back critical regressions",
        ),
    ]
    for agent_type, key, value, config_type, description in configs:
        data.add(
            AgentConfig,
            f"{agent_type}:{key}",
            agent_id=agents[agent_type],
            config_key=key,
            config_value=value,
            config_type=config_type,
            description=description,
        )
    metric_names = {
        AgentType.ORCHESTRATOR: ("workflows_dispatched", MetricType.COUNTER),
        AgentType.COST: ("instances_analyzed", MetricType.COUNTER),
        AgentType.PERFORMANCE: ("tuning_latency_ms", MetricType.HISTOGRAM),
        AgentType.RESOURCE: ("metrics_collected", MetricType.COUNTER),
        AgentType.APPLICATION: ("requests_scored", MetricType.COUNTER),
    }
    for agent_type, (name, metric_type) in metric_names.items():
        total = 0.0
        for hour in range(24):
            recorded_at = data.at(hours=hour - 24)
            if metric_type is MetricType.COUNTER:
                total += rng.randint(20, 120)
                sample = total
            else:
                sample = round(rng.gauss(850, 120), 1)
            data.add(
                AgentMetric,
                f"{agent_type}:{name}:{hour}",
                agent_id=agents[agent_type],
                metric_name=name,
                metric_value=sample,
                metric_type=metric_type,
                tags={"source": "demo"},
                recorded_at=recorded_at,
            )
            data.add(
                AgentMetric,
                f"{agent_type}:queue_depth:{hour}",
                agent_id=agents[agent_type],
                metric_name="queue_depth",
                metric_value=float(rng.randint(0, 6)),
                metric_type=MetricType.GAUGE,
                tags={"source": "demo"},
                recorded_at=recorded_at,
            )


# --- recommendations, approvals, optimizations, events ----------------------------------------------------


@dataclass(frozen=True)
class RecommendationSpec:
    key: str
    customer: str
    agent: AgentType
    type: str
    title: str
    description: str
    savings: str | None
    improvement: str | None
    confidence: float
    priority: RecommendationPriority
    status: RecommendationStatus
    days_ago: float
    data: dict[str, Any]


RECOMMENDATIONS: tuple[RecommendationSpec, ...] = (
    RecommendationSpec(
        "acme-spot",
        "acme",
        AgentType.COST,
        "spot_migration",
        "Move 4 steady inference nodes to spot instances",
        "GPU utilization on gpu-node-a1..a4 varied less than 8 % over 14 days; spot g5.2xlarge is 62 % cheaper.",
        "3412.80",
        None,
        0.87,
        RecommendationPriority.HIGH,
        RecommendationStatus.COMPLETED,
        12,
        {
            "instances": ["gpu-node-a1", "gpu-node-a2", "gpu-node-a3", "gpu-node-a4"],
            "instance_type": "g5.2xlarge",
            "on_demand_hourly_usd": 1.212,
            "spot_hourly_usd": 0.4606,
            "hours_per_month": 730,
            "formula": "instances * (on_demand - spot) * hours_per_month",
            "rollout": [0.1, 0.5, 1.0],
        },
    ),
    RecommendationSpec(
        "acme-rightsize",
        "acme",
        AgentType.COST,
        "right_sizing",
        "Right-size the embedding service from g5.4xlarge to g5.xlarge",
        "Peak GPU memory use of the embedding service stayed below 9 GiB for 30 days.",
        "1150.00",
        None,
        0.74,
        RecommendationPriority.MEDIUM,
        RecommendationStatus.PENDING,
        1,
        {"service": "embeddings", "from": "g5.4xlarge", "to": "g5.xlarge", "peak_gpu_memory_gib": 8.6},
    ),
    RecommendationSpec(
        "acme-autoscale",
        "acme",
        AgentType.RESOURCE,
        "autoscaling_policy",
        "Scale the chat fleet on queue depth instead of CPU",
        "CPU is flat while the request queue grows; queue depth predicts latency 6 minutes earlier.",
        "640.00",
        "1.15",
        0.69,
        RecommendationPriority.MEDIUM,
        RecommendationStatus.APPROVED,
        2,
        {"metric": "queue_depth", "target": 8, "cooldown_seconds": 300},
    ),
    RecommendationSpec(
        "acme-vllm",
        "acme",
        AgentType.PERFORMANCE,
        "vllm_tuning",
        "Raise vLLM max_num_seqs from 128 to 256 on the GPT-4o gateway",
        "Larger batches raise throughput by about 30 % at the cost of some tail latency.",
        "980.00",
        "1.30",
        0.61,
        RecommendationPriority.MEDIUM,
        RecommendationStatus.ROLLED_BACK,
        # Timed so the change went live as the GPT-4o latency incident began and was rolled back at its detection.
        1.45,
        {"parameter": "max_num_seqs", "from": 128, "to": 256, "model": "gpt-4o"},
    ),
    RecommendationSpec(
        "acme-int8",
        "acme",
        AgentType.PERFORMANCE,
        "quantization",
        "Serve Llama 3 70B in int8",
        "Quantized weights halve GPU memory and let two replicas share a node.",
        "2210.00",
        "1.80",
        0.58,
        RecommendationPriority.HIGH,
        RecommendationStatus.EXECUTING,
        3,
        {"model": "llama-3-70b", "from_version": "v1-fp16", "to_version": "v1-int8"},
    ),
    RecommendationSpec(
        "acme-consolidate",
        "acme",
        AgentType.RESOURCE,
        "gpu_consolidation",
        "Consolidate the two batch GPU nodes into one",
        "The nightly batch jobs never overlap; one node can run both.",
        "1520.00",
        None,
        0.41,
        RecommendationPriority.LOW,
        RecommendationStatus.REJECTED,
        6,
        {"instances": ["gpu-node-b1", "gpu-node-b2"]},
    ),
    RecommendationSpec(
        "nimbus-spot",
        "nimbus",
        AgentType.COST,
        "spot_migration",
        "Move the staging inference node to spot",
        "Staging traffic is bursty but tolerant of interruptions.",
        "410.40",
        None,
        0.66,
        RecommendationPriority.LOW,
        RecommendationStatus.FAILED,
        5,
        {"instances": ["stg-gpu-1"], "instance_type": "g5.xlarge"},
    ),
    RecommendationSpec(
        "nimbus-batch",
        "nimbus",
        AgentType.PERFORMANCE,
        "batching",
        "Enable continuous batching on the support bot",
        "Requests arrive in bursts; continuous batching cuts GPU time per request.",
        "275.00",
        "1.20",
        0.72,
        RecommendationPriority.CRITICAL,
        RecommendationStatus.PENDING,
        0.5,
        {"model": "claude-3-haiku"},
    ),
)

APPROVED_STATES = {
    RecommendationStatus.APPROVED,
    RecommendationStatus.EXECUTING,
    RecommendationStatus.COMPLETED,
    RecommendationStatus.FAILED,
    RecommendationStatus.ROLLED_BACK,
}


def _event(
    data: DemoData,
    key: str,
    customer_id: uuid.UUID,
    agent_id: uuid.UUID | None,
    event_type: str,
    at: datetime,
    payload: dict[str, Any],
    severity: EventSeverity = EventSeverity.INFO,
) -> None:
    data.add(
        Event,
        key,
        customer_id=customer_id,
        agent_id=agent_id,
        event_type=event_type,
        severity=severity,
        data=payload,
        created_at=at,
    )


def _recommendations(
    data: DemoData, customers: dict[str, uuid.UUID], agents: dict[AgentType, uuid.UUID]
) -> dict[str, uuid.UUID]:
    ids = {}
    for spec in RECOMMENDATIONS:
        customer_id, agent_id = customers[spec.customer], agents[spec.agent]
        created = data.at(days=-spec.days_ago)
        decided = created + timedelta(hours=3)
        started = decided + timedelta(minutes=20)
        approved = spec.status in APPROVED_STATES
        executed = spec.status not in {
            RecommendationStatus.PENDING,
            RecommendationStatus.APPROVED,
            RecommendationStatus.REJECTED,
        }
        rec_id = data.add(
            Recommendation,
            spec.key,
            customer_id=customer_id,
            agent_id=agent_id,
            type=spec.type,
            title=spec.title,
            description=spec.description,
            estimated_savings=Decimal(spec.savings) if spec.savings else None,
            estimated_improvement=Decimal(spec.improvement) if spec.improvement else None,
            confidence_score=spec.confidence,
            priority=spec.priority,
            status=spec.status,
            data=spec.data,
            created_at=created,
            updated_at=started if executed else decided if approved else created,
            approved_at=decided if approved else None,
            executed_at=started if executed else None,
        )
        ids[spec.key] = rec_id
        _event(
            data,
            f"{spec.key}:created",
            customer_id,
            agent_id,
            "recommendation.created",
            created,
            {"recommendation_id": str(rec_id), "type": spec.type, "after": {"status": "pending"}},
        )

        decider = "mlops-lead@acme-analytics.example" if spec.customer == "acme" else "cto@nimbus-chat.example"
        if spec.status is RecommendationStatus.PENDING:
            data.add(
                Approval,
                spec.key,
                recommendation_id=rec_id,
                approved_by=decider,
                status=ApprovalStatus.PENDING,
                comment=None,
                created_at=created,
                updated_at=created,
            )
            continue
        rejected = spec.status is RecommendationStatus.REJECTED
        data.add(
            Approval,
            spec.key,
            recommendation_id=rec_id,
            approved_by=decider,
            status=ApprovalStatus.REJECTED if rejected else ApprovalStatus.APPROVED,
            comment="Batch jobs will overlap after the Q3 launch." if rejected else "Go ahead; watch quality.",
            created_at=decided,
            updated_at=decided,
        )
        _event(
            data,
            f"{spec.key}:decided",
            customer_id,
            None,
            "recommendation.rejected" if rejected else "recommendation.approved",
            decided,
            {
                "recommendation_id": str(rec_id),
                "actor": decider,
                "before": {"status": "pending"},
                "after": {"status": "rejected" if rejected else "approved"},
            },
        )
        if rejected:
            continue
        _optimization(data, spec, rec_id, customer_id, agent_id, started)
    return ids


def _optimization(
    data: DemoData,
    spec: RecommendationSpec,
    rec_id: uuid.UUID,
    customer_id: uuid.UUID,
    agent_id: uuid.UUID,
    started: datetime,
) -> None:
    status = {
        RecommendationStatus.APPROVED: OptimizationStatus.QUEUED,
        RecommendationStatus.EXECUTING: OptimizationStatus.EXECUTING,
        RecommendationStatus.COMPLETED: OptimizationStatus.COMPLETED,
        RecommendationStatus.FAILED: OptimizationStatus.FAILED,
        RecommendationStatus.ROLLED_BACK: OptimizationStatus.ROLLED_BACK,
    }[spec.status]
    finished = started + timedelta(hours=2)
    values: dict[str, Any] = {"status": status, "progress": 0, "result": {}, "created_at": started}
    if status is not OptimizationStatus.QUEUED:
        values["started_at"] = started
    if status is OptimizationStatus.EXECUTING:
        values.update(progress=50, result={"phase": "50%", "phases_completed": ["10%"]})
    elif status is OptimizationStatus.COMPLETED:
        savings = Decimal(spec.savings or "0") * Decimal("0.93")
        values.update(
            progress=100,
            completed_at=finished,
            actual_savings=savings.quantize(Decimal("0.01")),
            result={"phases_completed": ["10%", "50%", "100%"], "interruptions_first_week": 1},
        )
    elif status is OptimizationStatus.FAILED:
        values.update(
            progress=10,
            completed_at=started + timedelta(minutes=35),
            error="Spot capacity for g5.xlarge unavailable in us-east-1b after 3 attempts",
            result={"phases_completed": []},
        )
    elif status is OptimizationStatus.ROLLED_BACK:
        values.update(
            progress=100,
            completed_at=finished,
            rolled_back_at=finished + timedelta(hours=3, minutes=30),
            result={"rolled_back_because": "latency_increase regression on gpt-4o"},
        )
    data.add(Optimization, spec.key, recommendation_id=rec_id, customer_id=customer_id, agent_id=agent_id, **values)
    if status is not OptimizationStatus.QUEUED:
        _event(
            data,
            f"{spec.key}:started",
            customer_id,
            agent_id,
            "optimization.started",
            started,
            {
                "recommendation_id": str(rec_id),
                "before": {"status": "queued"},
                "after": {"status": "executing"},
            },
        )
    terminal = {
        OptimizationStatus.COMPLETED: ("optimization.completed", EventSeverity.INFO),
        OptimizationStatus.FAILED: ("optimization.failed", EventSeverity.ERROR),
        OptimizationStatus.ROLLED_BACK: ("optimization.rolled_back", EventSeverity.WARNING),
    }
    if status in terminal:
        event_type, severity = terminal[status]
        _event(
            data,
            f"{spec.key}:{status}",
            customer_id,
            agent_id,
            event_type,
            values.get("rolled_back_at") or values["completed_at"],
            {
                "recommendation_id": str(rec_id),
                "before": {"status": "executing"},
                "after": {"status": str(status)},
            },
            severity,
        )


# --- workflows ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class StepSpec:
    name: str
    status: StepStatus
    minutes: float
    retries: int = 0
    error: dict[str, Any] | None = None
    output: dict[str, Any] = field(default_factory=dict)


def _workflow(
    data: DemoData,
    key: str,
    *,
    customer_id: uuid.UUID,
    agent_id: uuid.UUID,
    workflow_type: WorkflowType,
    status: WorkflowStatus,
    started: datetime,
    steps: list[StepSpec],
    input_data: dict[str, Any],
    output_data: dict[str, Any] | None = None,
    error: dict[str, Any] | None = None,
    artifacts: Sequence[tuple[int | None, ArtifactType, str, str, int]] = (),
    workflow_name: str | None = None,
) -> uuid.UUID:
    execution_id = data.add(
        WorkflowExecution,
        key,
        agent_id=agent_id,
        customer_id=customer_id,
        workflow_type=workflow_type,
        status=status,
        started_at=started,
        completed_at=None
        if status is WorkflowStatus.RUNNING
        else started + timedelta(minutes=sum(step.minutes for step in steps)),
        input_data=input_data,
        output_data=output_data or {},
        error_details=error,
        metadata_={"triggered_by": "schedule", "workflow": workflow_name, "heartbeat_at": started.isoformat()},
        created_at=started,
        updated_at=started,
    )
    step_ids = []
    clock = started
    for order, step in enumerate(steps, start=1):
        begun = None if step.status is StepStatus.PENDING else clock
        ended = clock + timedelta(minutes=step.minutes)
        step_ids.append(
            data.add(
                WorkflowStep,
                f"{key}:{order}",
                workflow_execution_id=execution_id,
                step_name=step.name,
                step_order=order,
                status=step.status,
                started_at=begun,
                completed_at=ended if step.status in {StepStatus.COMPLETED, StepStatus.FAILED} else None,
                input_data={},
                output_data=step.output,
                error_details=step.error,
                retry_count=step.retries,
                max_retries=3,
                metadata_={},
                created_at=started,
                updated_at=ended,
            )
        )
        clock = ended
    for index, (step_index, artifact_type, name, content_type, size) in enumerate(artifacts):
        data.add(
            WorkflowArtifact,
            f"{key}:artifact:{index}",
            workflow_execution_id=execution_id,
            workflow_step_id=step_ids[step_index] if step_index is not None else None,
            artifact_type=artifact_type,
            artifact_name=name,
            artifact_path=f"artifacts/{execution_id}/{name}",
            artifact_size_bytes=size,
            content_type=content_type,
            metadata_={},
        )
    return execution_id


def _workflows(
    data: DemoData,
    customers: dict[str, uuid.UUID],
    agents: dict[AgentType, uuid.UUID],
    recommendations: dict[str, uuid.UUID],
) -> dict[str, uuid.UUID]:
    acme, nimbus = customers["acme"], customers["nimbus"]
    done, pending, failed = (
        StepStatus.COMPLETED,
        StepStatus.PENDING,
        StepStatus.FAILED,
    )
    workflows = {
        "spot-analysis": _workflow(
            data,
            "spot-analysis",
            workflow_name="spot_migration_analysis",
            customer_id=acme,
            agent_id=agents[AgentType.COST],
            workflow_type=WorkflowType.COST_ANALYSIS,
            status=WorkflowStatus.COMPLETED,
            started=data.at(days=-12, hours=-1),
            input_data={"lookback_days": 14},
            output_data={"recommendation_id": str(recommendations["acme-spot"]), "candidates": 4},
            steps=[
                StepSpec("collect_utilization", done, 2.5, output={"instances": 6}),
                StepSpec("analyze_candidates", done, 1.3, output={"candidates": 4}),
                StepSpec("create_recommendation", done, 0.1),
            ],
            artifacts=[
                (None, ArtifactType.REPORT, "spot-analysis.md", "text/markdown", 18_432),
                (2, ArtifactType.CHART, "utilization-variance.svg", "image/svg+xml", 42_118),
            ],
        ),
        "latency-check": _workflow(
            data,
            "latency-check",
            workflow_name="quality_check",
            customer_id=acme,
            agent_id=agents[AgentType.APPLICATION],
            workflow_type=WorkflowType.QUALITY_CHECK,
            status=WorkflowStatus.COMPLETED,
            started=data.at(hours=-28),
            input_data={"model_name": "gpt-4o", "model_version": "2024-11-20", "window_minutes": 60},
            output_data={"regressions": 1, "action": "rollback_triggered"},
            steps=[
                StepSpec("load_baseline", done, 0.1),
                StepSpec("compare_window", done, 0.4),
                StepSpec("record_regression", done, 0.1),
                StepSpec("trigger_rollback", done, 6.0),
            ],
            artifacts=[
                (1, ArtifactType.CHART, "latency-vs-baseline.svg", "image/svg+xml", 36_870),
                (2, ArtifactType.ALERT, "regression-alert.json", "application/json", 1_204),
            ],
        ),
        "int8-check": _workflow(
            data,
            "int8-check",
            workflow_name="quality_check",
            customer_id=acme,
            agent_id=agents[AgentType.APPLICATION],
            workflow_type=WorkflowType.QUALITY_CHECK,
            status=WorkflowStatus.COMPLETED,
            started=data.at(hours=-3),
            input_data={"model_name": "llama-3-70b", "model_version": "v1-int8", "window_minutes": 120},
            output_data={"regressions": 1, "action": "manual_review"},
            steps=[
                StepSpec("load_baseline", done, 0.1),
                StepSpec("compare_window", done, 0.5),
                StepSpec("record_regression", done, 0.1),
                StepSpec("request_review", done, 0.1),
            ],
            artifacts=[(None, ArtifactType.REPORT, "int8-quality-report.md", "text/markdown", 9_733)],
        ),
        "scale-up": _workflow(
            data,
            "scale-up",
            workflow_name="scaling_decision",
            customer_id=acme,
            agent_id=agents[AgentType.RESOURCE],
            workflow_type=WorkflowType.SCALING_DECISION,
            status=WorkflowStatus.COMPLETED,
            started=data.at(hours=-15),
            input_data={"trigger": "gpu_utilization > 0.8 for 10 min"},
            output_data={"instances_added": 1},
            steps=[
                StepSpec("read_utilization", done, 0.2),
                StepSpec("decide", done, 0.1),
                StepSpec("record_decision", done, 4.0),
            ],
            artifacts=[(None, ArtifactType.METRICS, "utilization-window.json", "application/json", 5_310)],
        ),
        "tuning-failed": _workflow(
            data,
            "tuning-failed",
            workflow_name="performance_tuning",
            customer_id=acme,
            agent_id=agents[AgentType.PERFORMANCE],
            workflow_type=WorkflowType.PERFORMANCE_TUNING,
            status=WorkflowStatus.FAILED,
            started=data.at(hours=-6),
            input_data={"model": "gpt-4o", "parameter": "gpu_memory_utilization"},
            error={"step": "benchmark_candidate", "message": "benchmark endpoint timed out after 3 retries"},
            steps=[
                StepSpec("snapshot_config", done, 0.1),
                StepSpec(
                    "benchmark_candidate",
                    failed,
                    9.0,
                    retries=3,
                    error={"type": "TimeoutError", "message": "no response in 120 s", "attempts": 4},
                ),
                StepSpec("apply_config", StepStatus.SKIPPED, 0),
            ],
            artifacts=[(1, ArtifactType.LOG, "benchmark.log", "text/plain", 88_412)],
        ),
        "nimbus-analysis": _workflow(
            data,
            "nimbus-analysis",
            workflow_name="spot_migration_analysis",
            customer_id=nimbus,
            agent_id=agents[AgentType.COST],
            workflow_type=WorkflowType.COST_ANALYSIS,
            status=WorkflowStatus.RUNNING,
            started=data.at(minutes=-8),
            input_data={"lookback_days": 7},
            steps=[
                # Between two steps, with the output the real step writes: the first worker finishes it cleanly.
                StepSpec("collect_utilization", done, 3.0, output={"instances": []}),
                StepSpec("analyze_candidates", pending, 0),
                StepSpec("create_recommendation", pending, 0),
            ],
        ),
    }
    return workflows


def _agent_states(data: DemoData, agents: dict[AgentType, uuid.UUID], workflows: dict[str, uuid.UUID]) -> None:
    for agent_type, _name, _endpoint, _capabilities in AGENT_SPECS:
        busy = agent_type is AgentType.COST
        data.add(
            AgentState,
            str(agent_type),
            agent_id=agents[agent_type],
            current_status=AgentStatusDetail.BUSY if busy else AgentStatusDetail.IDLE,
            active_workflows=[str(workflows["nimbus-analysis"])] if busy else [],
            locks={
                "cluster:nimbus-staging": {
                    "agent_id": str(agents[agent_type]),
                    "acquired_at": data.at(minutes=-8).isoformat(),
                    "purpose": "cost analysis of the staging fleet",
                }
            }
            if busy
            else {},
            last_activity=data.at(minutes=-1),
            resource_usage={"cpu_percent": 23.5 if busy else 3.1, "memory_mb": 412 if busy else 180},
            metadata_={},
            current_workflow_id=workflows["nimbus-analysis"] if busy else None,
        )


# --- resources ---------------------------------------------------------------------------------------------


def _resources(
    data: DemoData,
    customers: dict[str, uuid.UUID],
    agents: dict[AgentType, uuid.UUID],
    workflows: dict[str, uuid.UUID],
    rng: random.Random,
) -> None:
    acme, agent_id = customers["acme"], agents[AgentType.RESOURCE]
    instances = {"gpu-node-a1": "g5.2xlarge", "gpu-node-a2": "g5.2xlarge", "cpu-node-c1": "m6i.2xlarge"}
    samples_per_day = 96  # every 15 minutes
    for instance_id, instance_type in instances.items():
        has_gpu = instance_type.startswith("g5")
        for sample in range(samples_per_day):
            at = data.at(minutes=15 * (sample - samples_per_day))
            daily = 0.5 + 0.35 * _daily_load(at)
            metrics: list[tuple[ResourceType, str, float, str]] = [
                (
                    ResourceType.CPU,
                    "utilization",
                    100 * min(1.0, daily * 0.6 + rng.uniform(0, 0.1)),
                    "percent",
                ),
                (ResourceType.MEMORY, "memory_used", round(18 + 10 * daily + rng.uniform(0, 1), 2), "GiB"),
                (ResourceType.DISK, "disk_used", round(212 + sample * 0.05, 2), "GiB"),
                (ResourceType.NETWORK, "rx_throughput", round(120 * daily + rng.uniform(0, 15), 1), "Mbit/s"),
            ]
            if has_gpu:
                metrics += [
                    (
                        ResourceType.GPU,
                        "utilization",
                        100 * min(1.0, daily + rng.uniform(-0.05, 0.05)),
                        "percent",
                    ),
                    (ResourceType.GPU, "memory_used", round(14 + 7 * daily, 2), "GiB"),
                    (
                        ResourceType.GPU,
                        "temperature",
                        round(52 + 20 * daily + rng.uniform(-2, 2), 1),
                        "celsius",
                    ),
                ]
            for resource_type, metric_name, value, unit in metrics:
                data.add(
                    ResourceMetric,
                    f"{instance_id}:{resource_type}:{metric_name}:{sample}",
                    agent_id=agent_id,
                    customer_id=acme,
                    instance_id=instance_id,
                    resource_type=resource_type,
                    metric_name=metric_name,
                    metric_value=round(value, 2),
                    unit=unit,
                    timestamp=at,
                    metadata_={"instance_type": instance_type, "zone": "eu-west-1a"},
                )
    scaling = [
        (
            "scale-up",
            ScalingEventType.SCALE_UP,
            "GPU utilization above 80 % for 10 minutes",
            True,
            {"instance_count": 2, "avg_utilization": 0.86},
            {"instance_count": 3, "avg_utilization": 0.61},
            data.at(hours=-15),
            4.0,
            workflows["scale-up"],
            None,
        ),
        (
            "scale-down",
            ScalingEventType.SCALE_DOWN,
            "GPU utilization below 30 % for 45 minutes",
            True,
            {"instance_count": 3, "avg_utilization": 0.27},
            {"instance_count": 2, "avg_utilization": 0.41},
            data.at(hours=-4),
            2.5,
            None,
            None,
        ),
        (
            "auto-scale-failed",
            ScalingEventType.AUTO_SCALE_TRIGGERED,
            "Queue depth above 20 for 5 minutes",
            False,
            {"instance_count": 2, "queue_depth": 24},
            {"instance_count": 2, "queue_depth": 31},
            data.at(hours=-2),
            1.0,
            None,
            {"message": "InsufficientInstanceCapacity for g5.2xlarge in eu-west-1a"},
        ),
    ]
    for key, event_type, reason, success, before, after, at, minutes, workflow_id, error in scaling:
        data.add(
            ScalingEvent,
            key,
            agent_id=agent_id,
            customer_id=acme,
            workflow_execution_id=workflow_id,
            event_type=event_type,
            trigger_reason=reason,
            before_state=before,
            after_state=after,
            success=success,
            error_details=error,
            executed_at=at,
            completed_at=at + timedelta(minutes=minutes),
            metadata_={},
        )
        _event(
            data,
            f"scaling:{key}",
            acme,
            agent_id,
            f"scaling.{event_type}",
            at,
            {"before": before, "after": after, "success": success},
            EventSeverity.INFO if success else EventSeverity.ERROR,
        )


def _daily_load(at: datetime) -> float:
    """0 at night, 1 in the afternoon: a smooth day curve for demo traffic."""
    hour = at.hour + at.minute / 60
    return max(0.0, min(1.0, 1 - abs(hour - 15) / 10))


# --- quality -------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ModelProfile:
    """How a model version behaves in the demo traffic."""

    customer: str
    model_name: str
    model_version: str
    first_day: int  # days before the anchor
    last_day: int
    relevance: float
    coherence: float
    factuality: float
    hallucination_rate: float
    latency_ms: float


PROFILES: tuple[ModelProfile, ...] = (
    ModelProfile("acme", "gpt-4o", "2024-08-06", 6, 4, 0.89, 0.91, 0.88, 0.02, 820),
    ModelProfile("acme", "gpt-4o", "2024-11-20", 4, 0, 0.90, 0.92, 0.89, 0.02, 780),
    ModelProfile("acme", "llama-3-70b", "v1-fp16", 6, 1, 0.84, 0.87, 0.83, 0.04, 1150),
    ModelProfile("acme", "llama-3-70b", "v1-int8", 1, 0, 0.80, 0.85, 0.74, 0.13, 690),
    ModelProfile("nimbus", "claude-3-haiku", "20240307", 5, 0, 0.86, 0.90, 0.85, 0.03, 430),
)

REQUESTS_PER_HOUR = 12


def _quality(
    data: DemoData,
    customers: dict[str, uuid.UUID],
    agents: dict[AgentType, uuid.UUID],
    workflows: dict[str, uuid.UUID],
    recommendations: dict[str, uuid.UUID],
    rng: random.Random,
) -> None:
    agent_id = agents[AgentType.APPLICATION]
    # The vLLM change (rolled back) ran from 32 to 26 hours before the anchor and slowed GPT-4o 2024-11-20.
    incident_start, incident_end = data.at(hours=-32), data.at(hours=-26)
    samples: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for profile in PROFILES:
        rows = samples.setdefault((profile.model_name, profile.model_version), [])
        hours = 24 * (profile.first_day - profile.last_day) + (24 if profile.last_day == 0 else 0)
        start = data.at(days=-profile.first_day)
        for hour in range(hours):
            for request in range(REQUESTS_PER_HOUR):
                at = start + timedelta(hours=hour, minutes=rng.randint(0, 59), seconds=rng.randint(0, 59))
                if at > data.anchor:
                    continue
                slow = profile.model_version == "2024-11-20" and incident_start <= at < incident_end
                rows.append(
                    _quality_row(
                        data,
                        profile,
                        customers[profile.customer],
                        agent_id,
                        at,
                        slow,
                        rng,
                        f"{profile.model_name}:{profile.model_version}:{hour}:{request}",
                    )
                )
    for rows in samples.values():
        data.rows.setdefault(QualityMetric, []).extend(rows)

    gpt_old = samples[("gpt-4o", "2024-08-06")]
    gpt_new = samples[("gpt-4o", "2024-11-20")]
    fp16 = samples[("llama-3-70b", "v1-fp16")]
    int8 = samples[("llama-3-70b", "v1-int8")]

    def between(rows: list[dict[str, Any]], start: datetime, hours: int) -> list[dict[str, Any]]:
        return [r for r in rows if start <= r["timestamp"] < start + timedelta(hours=hours)]

    def first_day(rows: list[dict[str, Any]]) -> datetime:
        earliest: datetime = min(r["timestamp"] for r in rows)
        return earliest.replace(minute=0, second=0)

    baselines = {
        "gpt-4o-2024-08-06": _baseline(
            data,
            "gpt-4o-2024-08-06",
            between(gpt_old, first_day(gpt_old), 24),
            BaselineType.INITIAL,
            valid_until=data.at(days=-4),
        ),
        "gpt-4o-2024-11-20": _baseline(
            data,
            "gpt-4o-2024-11-20",
            between(gpt_new, first_day(gpt_new), 24),
            BaselineType.UPDATED,
            valid_until=incident_end + timedelta(hours=1),
        ),
        "gpt-4o-2024-11-20-rollback": _baseline(
            data,
            "gpt-4o-2024-11-20-rollback",
            between(gpt_new, incident_end + timedelta(hours=1), 12),
            BaselineType.ROLLBACK,
        ),
        "llama-fp16": _baseline(data, "llama-fp16", between(fp16, first_day(fp16), 48), BaselineType.INITIAL),
        "claude": _baseline(
            data,
            "claude",
            between(samples[("claude-3-haiku", "20240307")], first_day(gpt_new), 24),
            BaselineType.INITIAL,
        ),
    }

    slow_rows = [r for r in gpt_new if incident_start <= r["timestamp"] < incident_end]
    detected = incident_end - timedelta(minutes=5)
    _regression(
        data,
        "gpt-4o-latency",
        baselines["gpt-4o-2024-11-20"],
        slow_rows,
        "p95_latency_ms",
        workflows["latency-check"],
        RegressionAction.ROLLBACK_TRIGGERED,
        detected,
        resolved_at=detected + timedelta(minutes=47),
        notes=f"Rolled back the vLLM max_num_seqs change (recommendation {recommendations['acme-vllm']}); "
        "p95 latency back within the baseline band.",
        extra={
            "recommendation_id": str(recommendations["acme-vllm"]),
            "rolled_back_at": (detected + timedelta(minutes=6)).isoformat(),
        },
    )
    int8_extra = {
        "recommendation_id": str(recommendations["acme-int8"]),
        "candidate_version": "v1-int8",
        "baseline_version": "v1-fp16",
    }
    for key, metric in (
        ("llama-int8-hallucination", "hallucination_rate"),
        ("llama-int8-factuality", "factuality_score"),
    ):
        _regression(
            data,
            key,
            baselines["llama-fp16"],
            int8,
            metric,
            workflows["int8-check"],
            RegressionAction.MANUAL_REVIEW,
            data.at(hours=-3),
            resolved_at=None,
            notes=None,
            extra=int8_extra,
        )


def _quality_row(
    data: DemoData,
    profile: ModelProfile,
    customer_id: uuid.UUID,
    agent_id: uuid.UUID,
    at: datetime,
    slow: bool,
    rng: random.Random,
    key: str,
) -> dict[str, Any]:
    def score(mean: float) -> float:
        return round(min(1.0, max(0.0, rng.gauss(mean, 0.05))), 4)

    relevance, coherence, factuality = (
        score(profile.relevance),
        score(profile.coherence),
        score(profile.factuality),
    )
    hallucination = rng.random() < profile.hallucination_rate
    toxicity = round(min(1.0, rng.expovariate(1 / 0.015)), 4)
    latency = rng.lognormvariate(0, 0.25) * profile.latency_ms * (1.9 if slow else 1.0)
    prompt_tokens = rng.randint(150, 1800)
    return {
        "id": demo_id(f"quality_metrics:{key}"),
        "agent_id": agent_id,
        "customer_id": customer_id,
        "request_id": f"req-{demo_id(key).hex[:20]}",
        "model_name": profile.model_name,
        "model_version": profile.model_version,
        "prompt_tokens": prompt_tokens,
        "completion_tokens": rng.randint(40, 600),
        "latency_ms": round(latency, 1),
        "relevance_score": relevance,
        "coherence_score": coherence,
        "factuality_score": factuality,
        "hallucination_detected": hallucination,
        "toxicity_score": toxicity,
        "overall_quality_score": round(
            overall_quality_score(
                relevance=relevance,
                coherence=coherence,
                factuality=factuality,
                toxicity=toxicity,
                hallucination_detected=hallucination,
            ),
            4,
        ),
        "timestamp": at,
        "metadata_": {"route": "chat" if profile.customer == "acme" else "support", "demo": True},
    }


def _window_rows(rows: list[dict[str, Any]]) -> WindowRows:
    ordered = sorted(rows, key=lambda row: row["timestamp"])
    return WindowRows(
        overall=[r["overall_quality_score"] for r in ordered],
        relevance=[r["relevance_score"] for r in ordered],
        coherence=[r["coherence_score"] for r in ordered],
        factuality=[r["factuality_score"] for r in ordered],
        latency_ms=[r["latency_ms"] for r in ordered],
        hallucination=[r["hallucination_detected"] for r in ordered],
        toxicity=[r["toxicity_score"] for r in ordered],
        first_at=ordered[0]["timestamp"],
        last_at=ordered[-1]["timestamp"],
        agent_id=Counter(r["agent_id"] for r in ordered).most_common(1)[0][0],
    )


def _baseline(
    data: DemoData,
    key: str,
    rows: list[dict[str, Any]],
    baseline_type: BaselineType,
    valid_until: datetime | None = None,
) -> tuple[uuid.UUID, WindowSummary]:
    """A baseline built by the quality service's own code from the demo rows it summarises."""
    window = _window_rows(rows)
    assert window.first_at is not None
    assert window.last_at is not None
    baseline = build_baseline(
        customer_id=rows[0]["customer_id"],
        agent_id=rows[0]["agent_id"],
        model_name=rows[0]["model_name"],
        model_version=rows[0]["model_version"],
        baseline_type=baseline_type,
        rows=window,
        established_at=window.last_at + timedelta(minutes=5),
        valid_until=valid_until,
        window={"start": window.first_at.isoformat(), "end": window.last_at.isoformat(), "last_n": None},
    )
    values = {attribute.key: getattr(baseline, attribute.key) for attribute in inspect(QualityBaseline).column_attrs}
    values = {k: v for k, v in values.items() if v is not None or k == "valid_until"}
    values.pop("id", None)
    values.pop("created_at", None)
    return data.add(QualityBaseline, key, **values), WindowSummary.model_validate(baseline.metadata_)


def _finding(baseline: WindowSummary, rows: list[dict[str, Any]], metric_name: str) -> Finding:
    """What the regression judge, with default settings, finds on `rows` for one metric."""
    window = _window_rows(rows)
    current = window.summarize()
    findings = judge(baseline, current, window.latency_ms, QualitySettings())
    finding = next(f for f in findings if f.metric_name == metric_name)
    assert finding.verdict == "regression", f"the demo data should regress on {metric_name}: {finding}"
    return finding


def _regression(
    data: DemoData,
    key: str,
    baseline: tuple[uuid.UUID, WindowSummary],
    rows: list[dict[str, Any]],
    metric_name: str,
    workflow_id: uuid.UUID,
    action: RegressionAction,
    detected_at: datetime,
    *,
    resolved_at: datetime | None,
    notes: str | None,
    extra: dict[str, Any],
) -> None:
    """A regression as the judge reports it on the demo rows, with the action the story says was taken."""
    baseline_id, summary = baseline
    finding = _finding(summary, rows, metric_name)
    assert finding.severity is not None
    assert finding.baseline_value is not None
    assert finding.current_value is not None
    first = rows[0]
    customer_id, agent_id, severity = first["customer_id"], first["agent_id"], finding.severity
    baseline_value, current_value = finding.baseline_value, finding.current_value
    data.add(
        QualityRegression,
        key,
        agent_id=agent_id,
        customer_id=customer_id,
        model_name=first["model_name"],
        model_version=first["model_version"],
        baseline_id=baseline_id,
        workflow_execution_id=workflow_id,
        regression_type=finding.regression_type,
        severity=severity,
        detected_at=detected_at,
        metric_name=metric_name,
        baseline_value=baseline_value,
        current_value=current_value,
        delta_percent=finding.delta_percent or 0.0,
        sample_size=finding.sample_size,
        action_taken=action,
        resolved_at=resolved_at,
        resolution_notes=notes,
        metadata_={
            "test": finding.test,
            "p_value": finding.p_value,
            "p_value_adjusted": finding.p_value_adjusted,
            "ci95": list(finding.ci95) if finding.ci95 else None,
            "floors": finding.floors,
            "floor_ratio": finding.floor_ratio,
            "affected_requests": len(rows),
            "window": {
                "start": min(r["timestamp"] for r in rows).isoformat(),
                "end": max(r["timestamp"] for r in rows).isoformat(),
            },
            "source": "demo data, judged by the regression judge",
            **extra,
        },
        created_at=detected_at,
        updated_at=resolved_at or detected_at,
    )
    _event(
        data,
        f"regression:{key}",
        customer_id,
        agent_id,
        "quality.regression_detected",
        detected_at,
        {
            "metric": metric_name,
            "baseline_value": round(baseline_value, 5),
            "current_value": round(current_value, 5),
            "action_taken": str(action),
        },
        EventSeverity.CRITICAL if severity is RegressionSeverity.CRITICAL else EventSeverity.WARNING,
    )
    if resolved_at is not None:
        _event(
            data,
            f"regression:{key}:resolved",
            customer_id,
            agent_id,
            "quality.regression_resolved",
            resolved_at,
            {"before": {"resolved": False}, "after": {"resolved": True}, "notes": notes},
        )
