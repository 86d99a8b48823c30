"""The living demo: set it up once (idempotently), then keep it moving from the server's worker.

`prepare(factory, data_dir)` runs before the server starts: the demo customers and their agents (created, or found
again), a stable customer key kept in the data directory, and the history up to now: GPU utilization and quality
traffic backfilled from where the last run stopped (or `history_hours` back), with the worker's monitoring replayed
over the new span so baselines and incidents exist from the first page view.

`periodic_work(factory, data_dir)` is what the server's worker runs beside its jobs: the demo's tick (heartbeats,
the traffic and utilization of the seconds since the last tick, the story's next step) and the quality monitoring
pass. Both go through the services live data goes through, as their principals: agents register and heartbeat via
the agents service, recommendations are approved by the customer and rolled out by the real workflow and phase
gate, quality records are ingested by the application agent, so event names and payloads are the live ones.
"""

from __future__ import annotations

import hashlib
import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from optiinfra.agents import schemas as agent_schemas
from optiinfra.agents import service as agent_service
from optiinfra.auth.keys import digests_match
from optiinfra.auth.principal import Principal
from optiinfra.auth.service import customer_principal
from optiinfra.customers import schemas as customer_schemas
from optiinfra.customers import service as customer_service
from optiinfra.db.engine import unit_of_work
from optiinfra.demo.story import (
    ACME,
    AGENTS,
    CUSTOMERS,
    FLEET,
    FOR_A_HUMAN,
    HEARTBEAT_INTERVAL_SECONDS,
    KEY_FILE,
    RESOURCE_STEP,
    STREAMS,
    CustomerSpec,
    DemoPace,
    Stream,
    pace_from_env,
)
from optiinfra.errors import ConflictError
from optiinfra.files import write_private
from optiinfra.models import (
    Agent,
    AgentStatus,
    AgentType,
    Customer,
    Optimization,
    OptimizationStatus,
    QualityMetric,
    Recommendation,
    RecommendationStatus,
    ResourceMetric,
    ResourceType,
    WorkflowExecution,
    WorkflowStatus,
)
from optiinfra.quality import service as quality_service
from optiinfra.quality.monitoring_pass import MonitoringCache, run_monitoring_pass
from optiinfra.quality.settings import MonitoringSettings, QualitySettings
from optiinfra.quality.traffic import generate
from optiinfra.recommendations import schemas as rec_schemas
from optiinfra.recommendations import service as recommendations
from optiinfra.resources import schemas as resource_schemas
from optiinfra.resources import service as resource_service
from optiinfra.workflows import schemas as wf_schemas
from optiinfra.workflows import service as workflows
from optiinfra.workflows.engine import WorkflowRunner
from optiinfra.workflows.service import build_runner

logger = logging.getLogger("optiinfra.demo")
INGEST_BATCH = 5_000
CHUNK = timedelta(hours=1)  # backfill generated and ingested an hour at a time
SPOT = "spot_migration"
ROLLOUT = "spot_migration_rollout"
ACTIVE_RUNS = (
    WorkflowStatus.PENDING,
    WorkflowStatus.RUNNING,
    WorkflowStatus.WAITING,
    WorkflowStatus.PAUSED,
    WorkflowStatus.CANCELLING,
)
Progress = Callable[[float, float], None]
SIMULATED_CUSTOMER = "approved by the demo's simulated customer (nobody decided within the demo's waiting time)"


@dataclass
class Prepared:
    """What `prepare` did, for the server's start-up lines."""

    customer_key: str
    key_is_new: bool
    created_customers: list[str] = field(default_factory=list)
    quality_records: int = 0
    resource_samples: int = 0
    monitoring_passes: int = 0


class Demo:
    """The demo's cast, found in the database, and the steps that move it."""

    def __init__(self, factory: sessionmaker[Session], data_dir: Path, pace: DemoPace | None = None) -> None:
        self.factory = factory
        self.data_dir = data_dir
        self.pace = pace or pace_from_env()
        self._runner: WorkflowRunner | None = None
        self._cache = MonitoringCache()

    @property
    def runner(self) -> WorkflowRunner:
        if self._runner is None:
            self._runner = build_runner(self.factory, self.data_dir)
        return self._runner

    # --- the cast ------------------------------------------------------------------------------------------

    def _customers(self, session: Session) -> dict[str, Customer]:
        rows = session.scalars(select(Customer).where(Customer.email.in_([c.email for c in CUSTOMERS])))
        by_email = {row.email: row for row in rows}
        return {spec.key: by_email[spec.email] for spec in CUSTOMERS if spec.email in by_email}

    def _agents(self, session: Session) -> dict[AgentType, Agent]:
        names = [spec.name for spec in AGENTS]
        return {agent.type: agent for agent in session.scalars(select(Agent).where(Agent.name.in_(names)))}

    def _create_customer(self, session: Session, spec: CustomerSpec) -> Customer:
        operator = Principal.operator()
        created = customer_service.create_customer(
            session,
            operator,
            customer_schemas.CustomerCreate(name=spec.name, email=spec.email, plan=spec.plan, metadata={"demo": True}),
        )
        # Monitoring as the pace allows: a first baseline after `baseline_min_hours` of traffic.
        settings = QualitySettings(
            monitoring=MonitoringSettings(
                baseline_min_hours=self.pace.baseline_min_hours, baseline_min_records=self.pace.baseline_min_records
            )
        )
        quality_service.update_settings(session, operator, created.id, settings)
        customer = session.get(Customer, created.id)
        assert customer is not None
        return customer

    def _register_agents(self, session: Session, customers: dict[str, Customer]) -> dict[AgentType, Agent]:
        for spec in AGENTS:
            agent_service.register_agent(
                session,
                Principal.operator(),
                agent_schemas.AgentRegister(
                    type=spec.type,
                    name=spec.name,
                    version=spec.version,
                    capabilities=list(spec.capabilities),
                    heartbeat_interval_seconds=HEARTBEAT_INTERVAL_SECONDS,
                    metadata={"demo": True},
                    customer_ids=[customer.id for customer in customers.values()],
                ),
            )
        return self._agents(session)

    def _heartbeat(self, session: Session, agents: dict[AgentType, Agent]) -> None:
        for agent in agents.values():
            agent_service.heartbeat(
                session, Principal.for_agent(agent), agent.id, agent_schemas.Heartbeat(status=AgentStatus.HEALTHY)
            )

    def _customer_key(self, session: Session, customer: Customer) -> tuple[str, bool]:
        """Acme's key, kept (0600) in the data directory; a new one only when there is none or it no longer works."""
        path = self.data_dir / KEY_FILE
        if path.exists():
            key = path.read_text().strip()
            if digests_match(customer.api_key, key):
                return key, False
        key = customer_service.rotate_key(session, Principal.operator(), customer.id).api_key
        write_private(path, f"{key}\n".encode())
        return key, True

    def _ask_a_human(self, session: Session, customers: dict[str, Customer], agents: dict[AgentType, Agent]) -> None:
        for spec in FOR_A_HUMAN:
            recommendations.create_recommendation(
                session,
                Principal.for_agent(agents[spec.agent_type]),
                rec_schemas.RecommendationCreate(
                    customer_id=customers[spec.customer.key].id,
                    type=spec.type,
                    title=spec.title,
                    description=spec.description,
                    estimated_savings=Decimal(spec.estimated_savings) if spec.estimated_savings else None,
                    estimated_improvement=Decimal(spec.estimated_improvement) if spec.estimated_improvement else None,
                    confidence_score=spec.confidence,
                    priority=spec.priority,
                ),
            )

    # --- set-up --------------------------------------------------------------------------------------------

    def prepare(self, now: datetime | None = None, progress: Progress | None = None) -> Prepared:
        """Create or find the cast, keep the key, heartbeat, and bring the history up to now. Safe to run again.
        `progress(done, total)` hears of the traffic backfill, in seconds of record time."""
        with unit_of_work(self.factory) as session:
            customers = self._customers(session)
            created = [spec.name for spec in CUSTOMERS if spec.key not in customers]
            for spec in CUSTOMERS:
                if spec.key not in customers:
                    customers[spec.key] = self._create_customer(session, spec)
            agents = self._register_agents(session, customers)
            self._heartbeat(session, agents)
            if created:
                self._ask_a_human(session, customers, agents)
            key, key_is_new = self._customer_key(session, customers[ACME.key])
        prepared = Prepared(customer_key=key, key_is_new=key_is_new, created_customers=created)
        moment = now or datetime.now(UTC)
        prepared.resource_samples = self.send_utilization(moment)
        since = self._oldest_cursor(moment)
        prepared.quality_records = self.send_traffic(moment, progress)
        prepared.monitoring_passes = self._replay_monitoring(since, moment)
        with unit_of_work(self.factory) as session:
            # Again after the backfill, which may have taken longer than the agents' health limits allow.
            self._heartbeat(session, self._agents(session))
        self.move_story(moment)
        return prepared

    def _oldest_cursor(self, now: datetime) -> datetime:
        with self.factory() as session:
            customers = self._customers(session)
            return min(self._cursor(session, customers[s.customer.key], s, now) for s in STREAMS)

    def _replay_monitoring(self, since: datetime, now: datetime) -> int:
        """The worker's passes over backfilled time (as `quality backtest` replays them): baselines set and
        incidents opened and resolved when they would have been."""
        step = timedelta(minutes=self.pace.replay_step_minutes)
        with self.factory() as session:
            customer_ids = [customer.id for customer in self._customers(session).values()]
            first = session.scalar(
                select(func.min(QualityMetric.timestamp)).where(QualityMetric.customer_id.in_(customer_ids))
            )
        if first is not None:
            # Before a first baseline is due, a pass has nothing to judge: start where one can be.
            since = max(since, first + timedelta(hours=self.pace.baseline_min_hours) - step)
        moment, passes = since + step, 0
        while moment < now:
            run_monitoring_pass(self.factory, moment, rollback=recommendations.rollback_for_quality, cache=self._cache)
            moment += step
            passes += 1
        return passes

    # --- the tick ------------------------------------------------------------------------------------------

    def tick(self, now: datetime | None = None) -> None:
        """Heartbeats, the traffic and utilization since the last tick, and the story's next step."""
        moment = now or datetime.now(UTC)
        with unit_of_work(self.factory) as session:
            self._heartbeat(session, self._agents(session))
        self.send_utilization(moment)
        self.send_traffic(moment)
        self.move_story(moment)

    def monitor(self) -> None:
        report = run_monitoring_pass(self.factory, rollback=recommendations.rollback_for_quality, cache=self._cache)
        if report.regressions or report.resolved:
            logger.info("demo monitoring: %d opened, %d resolved", report.regressions, report.resolved)

    # --- traffic -------------------------------------------------------------------------------------------

    def _cursor(self, session: Session, customer: Customer, stream: Stream, now: datetime) -> datetime:
        """Where the stream's traffic stops: its newest record, or `history_hours` back."""
        newest = session.scalar(
            select(func.max(QualityMetric.timestamp)).where(
                QualityMetric.customer_id == customer.id,
                QualityMetric.model_name == stream.model_name,
                QualityMetric.model_version == stream.model_version,
            )
        )
        floor = now - timedelta(hours=self.pace.history_hours)
        return floor if newest is None or newest < floor else newest

    def send_traffic(self, now: datetime, progress: Progress | None = None) -> int:
        """Every stream's simulated requests from its cursor to `now`, ingested by the application agent."""
        with self.factory() as session:
            customers = self._customers(session)
            agent = self._agents(session)[AgentType.APPLICATION]
            cursors = [self._cursor(session, customers[stream.customer.key], stream, now) for stream in STREAMS]
        principal = Principal.for_agent(agent)
        total = sum((now - cursor).total_seconds() for cursor in cursors)
        sent, done = 0, 0.0
        for stream, cursor in zip(STREAMS, cursors, strict=True):
            customer = customers[stream.customer.key]
            epoch, customer_id = customer.created_at, customer.id
            start = cursor
            while start < now:
                end = min(now, start + CHUNK)
                records = _records(stream, self.pace, epoch, start, end)
                for offset in range(0, len(records), INGEST_BATCH):
                    with unit_of_work(self.factory) as session:
                        quality_service.ingest(
                            session,
                            principal,
                            records[offset : offset + INGEST_BATCH],
                            customer_id=customer_id,
                            agent_id=None,
                        )
                sent += len(records)
                done += (end - start).total_seconds()
                if progress is not None:
                    progress(done, total)
                start = end
        return sent

    def send_utilization(self, now: datetime) -> int:
        """GPU utilization of Acme's fleet every RESOURCE_STEP up to `now`, reported by the resource agent."""
        with self.factory() as session:
            customer = self._customers(session)[ACME.key]
            agent = self._agents(session)[AgentType.RESOURCE]
            newest = session.scalar(
                select(func.max(ResourceMetric.timestamp)).where(
                    ResourceMetric.customer_id == customer.id, ResourceMetric.metric_name == "utilization"
                )
            )
        floor = now - timedelta(hours=self.pace.resource_history_hours)
        moment = _next_step(floor if newest is None or newest < floor else newest)
        samples: list[dict[str, Any]] = []
        while moment <= now:
            for instance in FLEET:
                rng = np.random.default_rng(_seed(instance.instance_id, moment))
                value = instance.utilization * (1 + instance.variation * float(rng.standard_normal()))
                samples.append(
                    {
                        "resource_type": str(ResourceType.GPU),
                        "instance_id": instance.instance_id,
                        "metric_name": "utilization",
                        "metric_value": round(min(100.0, max(1.0, value)), 2),
                        "unit": "percent",
                        "timestamp": moment.isoformat(),
                        "metadata": {"instance_type": instance.instance_type},
                    }
                )
            moment += RESOURCE_STEP
        if samples:
            with unit_of_work(self.factory) as session:
                resource_service.ingest_metrics(
                    session,
                    Principal.for_agent(agent),
                    resource_schemas.ResourceMetricBatch(customer_id=customer.id, metrics=samples),
                )
        return len(samples)

    # --- the story -----------------------------------------------------------------------------------------

    def move_story(self, now: datetime) -> None:
        """One step of each thread of the story, each in its own transaction."""
        self._spot_cycle(now)
        self._execute_approved(now)

    def _spot_cycle(self, now: datetime) -> None:
        """Acme's cost agent: analyse, (the customer) approve, roll out in phases, and after a pause again."""
        with unit_of_work(self.factory) as session:
            acme = self._customers(session)[ACME.key]
            cost = self._agents(session)[AgentType.COST]
            runs = session.scalars(
                select(WorkflowExecution).where(
                    WorkflowExecution.customer_id == acme.id, WorkflowExecution.agent_id == cost.id
                )
            ).all()
            active = [run for run in runs if run.status in ACTIVE_RUNS]
            for run in active:
                if run.status is WorkflowStatus.PAUSED and now - run.updated_at >= _seconds(
                    self.pace.approve_after_seconds
                ):
                    workflows.resume(
                        session,
                        self.runner,
                        Principal.system("demo"),
                        run.id,
                        "Resumed by the demo's simulated operator: the phase had too little traffic by its deadline.",
                    )
            if active:
                return
            agent = Principal.for_agent(cost)
            pending = session.scalars(
                select(Recommendation)
                .where(
                    Recommendation.customer_id == acme.id,
                    Recommendation.type == SPOT,
                    Recommendation.status.in_([RecommendationStatus.PENDING, RecommendationStatus.APPROVED]),
                )
                .order_by(Recommendation.created_at)
            ).all()
            for recommendation in pending:
                if recommendation.status is RecommendationStatus.PENDING:
                    if now - recommendation.created_at < _seconds(self.pace.approve_after_seconds):
                        continue
                    recommendations.decide(
                        session,
                        customer_principal(acme),
                        recommendation.id,
                        rec_schemas.Decision(decision="approve", comment=SIMULATED_CUSTOMER),
                    )
                optimization = session.scalar(
                    select(Optimization).where(
                        Optimization.recommendation_id == recommendation.id,
                        Optimization.status == OptimizationStatus.QUEUED,
                    )
                )
                if optimization is not None:
                    workflows.roll_out_spot(
                        session,
                        self.runner,
                        agent,
                        wf_schemas.SpotRolloutRequest(
                            optimization_id=optimization.id,
                            bake_seconds=self.pace.bake_seconds,
                            min_samples=self.pace.min_samples,
                            deadline_seconds=self.pace.deadline_seconds,
                            poll_seconds=self.pace.poll_seconds,
                        ),
                    )
                return
            if pending:
                return
            finished = [run.completed_at or run.updated_at for run in runs]
            if finished and now - max(finished) < _seconds(self.pace.cycle_pause_seconds):
                return
            lookback = max(1.0, self.pace.resource_history_hours / 24)
            workflows.analyze_spot(
                session,
                self.runner,
                agent,
                wf_schemas.SpotAnalysisRequest(customer_id=acme.id, lookback_days=lookback),
            )

    def _execute_approved(self, now: datetime) -> None:
        """Recommendations a human approved on the dashboard: their agent executes them over a few ticks."""
        with self.factory() as session:
            customer_ids = [customer.id for customer in self._customers(session).values()]
            rows = session.execute(
                select(Optimization.id, Optimization.status, Optimization.progress, Optimization.agent_id)
                .join(Recommendation, Recommendation.id == Optimization.recommendation_id)
                .where(
                    Optimization.customer_id.in_(customer_ids),
                    Optimization.status.in_([OptimizationStatus.QUEUED, OptimizationStatus.EXECUTING]),
                    Recommendation.type != SPOT,
                )
            ).all()
            agents = {agent.id: agent for agent in self._agents(session).values()}
        for optimization_id, status, progress, agent_id in rows:
            if agent_id not in agents:
                continue
            principal = Principal.for_agent(agents[agent_id])
            try:
                with unit_of_work(self.factory) as session:
                    if status is OptimizationStatus.QUEUED:
                        recommendations.start_optimization(session, principal, optimization_id)
                    elif progress < 75:
                        recommendations.report_progress(
                            session, principal, optimization_id, rec_schemas.Progress(progress=progress + 25)
                        )
                    else:
                        self._complete(session, principal, optimization_id)
            except ConflictError as refused:
                # The quality gate refused the completion: the agent undoes its change.
                with unit_of_work(self.factory) as session:
                    recommendations.rollback_optimization(
                        session, principal, optimization_id, rec_schemas.Rollback(reason=refused.message[:5000])
                    )

    def _complete(self, session: Session, principal: Principal, optimization_id: uuid.UUID) -> None:
        optimization = session.get(Optimization, optimization_id)
        assert optimization is not None
        recommendation = session.get(Recommendation, optimization.recommendation_id)
        assert recommendation is not None
        recommendations.complete_optimization(
            session,
            principal,
            optimization_id,
            rec_schemas.Completion(
                actual_savings=recommendation.estimated_savings,
                actual_improvement=recommendation.estimated_improvement,
                result={"executed_by": principal.name},
            ),
        )


def _records(stream: Stream, pace: DemoPace, epoch: datetime, start: datetime, end: datetime) -> list[dict[str, Any]]:
    """The stream's simulated requests in (start, end], as ingest records, each on one of its instances."""
    first_minute = start.replace(second=0, microsecond=0)
    minutes = int((end - first_minute).total_seconds() // 60) + 1
    seed = _seed(stream.key, first_minute)
    traffic = generate(
        stream.model(pace),
        first_minute,
        minutes / 1440,
        seed,
        stream.effects(epoch, first_minute, first_minute + timedelta(minutes=minutes)),
    )
    keep = (traffic.timestamp > start.timestamp()) & (traffic.timestamp <= end.timestamp())
    # Unique per send: the stream and the instant the kept span starts (ticks of one minute draw that minute anew).
    prefix = f"demo-{hashlib.sha256(stream.key.encode()).hexdigest()[:8]}-{round(start.timestamp() * 1000):x}-"
    generated = traffic.records(stream.model_name, stream.model_version, prefix)
    records = [record for record, kept in zip(generated, keep.tolist(), strict=True) if kept]
    if stream.instances:
        rng = np.random.default_rng(seed + 1)
        for record, index in zip(records, rng.integers(0, len(stream.instances), len(records)), strict=True):
            record["metadata"]["instance_id"] = stream.instances[int(index)]
    return records


def _seed(name: str, moment: datetime) -> int:
    digest = hashlib.sha256(f"{name}:{int(moment.timestamp())}".encode()).digest()
    return int.from_bytes(digest[:4], "big")


def _next_step(moment: datetime) -> datetime:
    """The first RESOURCE_STEP boundary after `moment`."""
    step = RESOURCE_STEP.total_seconds()
    return datetime.fromtimestamp((moment.timestamp() // step + 1) * step, UTC)


def _seconds(value: float) -> timedelta:
    return timedelta(seconds=value)


def periodic_work(factory: sessionmaker[Session], data_dir: Path) -> list[tuple[float, Callable[[], Any]]]:
    """What the server's worker runs for `serve --demo`, wherever that worker lives: the demo's tick and the
    quality monitoring pass, with their intervals."""
    demo = Demo(factory, data_dir)
    return [(demo.pace.tick_seconds, demo.tick), (demo.pace.monitoring_seconds, demo.monitor)]
