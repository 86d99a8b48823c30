"""Running and reading workflows: who may start which workflow for whom, and where the runner lives."""

from __future__ import annotations

import uuid
from pathlib import Path

from sqlalchemy.orm import Session, sessionmaker

from optiinfra.agents import repository as agent_repository
from optiinfra.auth.principal import Principal, Role
from optiinfra.customers import repository as customer_repository
from optiinfra.errors import ConflictError, InvalidInputError, NotFoundError
from optiinfra.models import (
    Agent,
    AgentType,
    OptimizationStatus,
    WorkflowStatus,
)
from optiinfra.pagination import Page
from optiinfra.recommendations import repository as recommendation_repository
from optiinfra.workflows import repository
from optiinfra.workflows import schemas as wf_schemas
from optiinfra.workflows.engine import StepContext, WorkflowRunner
from optiinfra.workflows.executors import Executor, SimulatorExecutor, WebhookExecutor
from optiinfra.workflows.scaling import SCALING
from optiinfra.workflows.spot_migration import ANALYSIS, make_rollout


def build_runner(factory: sessionmaker[Session], data_dir: Path) -> WorkflowRunner:
    """A runner with the built-in workflows; artifacts and the simulator's state live under `data_dir`."""
    runner = WorkflowRunner(factory, data_dir / "artifacts")

    def executor_for(context: StepContext) -> Executor:
        if context.input.get("executor") == "webhook":
            with factory() as session:
                agent = session.get(Agent, context.agent_id)
                endpoint = agent.endpoint if agent else None
            if not endpoint:
                raise InvalidInputError("The webhook executor needs the agent's endpoint; register it first.")
            return WebhookExecutor(endpoint)
        return SimulatorExecutor(data_dir / "simulator" / f"{context.customer_id}.json")

    for definition in (ANALYSIS, make_rollout(executor_for), SCALING):
        runner.register(definition)
    return runner


def _agent_for(
    session: Session,
    principal: Principal,
    agent_id: uuid.UUID | None,
    agent_type: AgentType,
    customer_id: uuid.UUID,
) -> Agent:
    """The agent a workflow for a customer runs as: the calling agent (404 unless it serves the customer), or for
    the operator the agent named (it must serve the customer) or the most recently alive of the type serving it."""
    if principal.role is Role.AGENT:
        if agent_id is not None and agent_id != principal.agent_id:
            raise InvalidInputError("An agent runs workflows as itself; leave agent_id out.")
        assert principal.agent_id is not None
        agent: Agent | None = agent_repository.get_agent(session, principal.agent_id)
    else:
        customer_repository.customer_to_act_for(session, principal, customer_id)
        agent = (
            agent_repository.get_agent_serving(session, agent_id, customer_id)
            if agent_id is not None
            else repository.most_recent_agent(session, agent_type, customer_id)
        )
    if agent is None:
        raise InvalidInputError(f"No {agent_type} agent serves this customer to run this workflow.")
    if agent.type is not agent_type:
        raise InvalidInputError(f"This workflow runs on a {agent_type} agent; {agent.name} is a {agent.type} agent.")
    if principal.role is Role.AGENT:
        customer_repository.customer_to_act_for(session, principal, customer_id)
    return agent


def analyze_spot(
    session: Session, runner: WorkflowRunner, principal: Principal, request: wf_schemas.SpotAnalysisRequest
) -> uuid.UUID:
    principal.require(Role.OPERATOR, Role.AGENT)
    agent = _agent_for(session, principal, request.agent_id, AgentType.COST, request.customer_id)
    execution_id = runner.create(
        ANALYSIS.name,
        customer_id=request.customer_id,
        agent_id=agent.id,
        input_data={"lookback_days": request.lookback_days},
        actor=principal,
        session=session,
    )
    return execution_id


def roll_out_spot(
    session: Session, runner: WorkflowRunner, principal: Principal, request: wf_schemas.SpotRolloutRequest
) -> uuid.UUID:
    """Execute an approved spot migration as a phased rollout (the optimization's agent, or the operator)."""
    principal.require(Role.OPERATOR, Role.AGENT)
    optimization = recommendation_repository.get_optimization(session, principal, request.optimization_id)
    # The run acts as the optimization's agent, which must still serve the customer.
    agent_repository.get_agent_serving(session, optimization.agent_id, optimization.customer_id)
    if optimization.status not in {OptimizationStatus.QUEUED, OptimizationStatus.EXECUTING}:
        raise ConflictError(
            f"The optimization is {optimization.status}; only a queued (approved) one can be rolled out.",
            details={"current_status": str(optimization.status)},
        )
    running = repository.running_rollout(session, optimization.id)
    if running is not None:
        raise ConflictError("A rollout of this optimization is already running.", details={"workflow_id": str(running)})
    execution_id = runner.create(
        "spot_migration_rollout",
        customer_id=optimization.customer_id,
        agent_id=optimization.agent_id,
        input_data={
            "optimization_id": str(optimization.id),
            "executor": request.executor,
            "gate": {
                "bake_seconds": request.bake_seconds,
                "min_samples": request.min_samples,
                "deadline_seconds": request.deadline_seconds,
                "poll_seconds": request.poll_seconds,
            },
        },
        actor=principal,
        session=session,
    )
    return execution_id


def decide_scaling(
    session: Session, runner: WorkflowRunner, principal: Principal, request: wf_schemas.ScalingRequest
) -> uuid.UUID:
    principal.require(Role.OPERATOR, Role.AGENT)
    agent = _agent_for(session, principal, request.agent_id, AgentType.RESOURCE, request.customer_id)
    if request.down_threshold >= request.up_threshold:
        raise InvalidInputError("down_threshold must be below up_threshold (the gap is the hysteresis).")
    execution_id = runner.create(
        SCALING.name,
        customer_id=request.customer_id,
        agent_id=agent.id,
        input_data={
            "window_minutes": request.window_minutes,
            "bucket_minutes": request.bucket_minutes,
            "current_instances": request.current_instances,
            "policy": {
                "up_threshold": request.up_threshold,
                "down_threshold": request.down_threshold,
                "sustain": request.sustain,
                "cooldown_minutes": request.cooldown_minutes,
                "min_instances": request.min_instances,
                "max_instances": request.max_instances,
            },
        },
        actor=principal,
        session=session,
    )
    return execution_id


def get_execution(session: Session, principal: Principal, execution_id: uuid.UUID) -> wf_schemas.ExecutionDetail:
    execution = repository.get_execution(session, principal, execution_id)
    detail = wf_schemas.ExecutionDetail.model_validate(execution)
    return detail.model_copy(
        update={
            "waiting_for": execution.metadata_.get("waiting") if execution.status is WorkflowStatus.WAITING else None,
            "paused_for": execution.metadata_.get("paused") if execution.status is WorkflowStatus.PAUSED else None,
        }
    )


def list_executions(
    session: Session, principal: Principal, filters: wf_schemas.ExecutionFilters
) -> Page[wf_schemas.Execution]:
    return repository.list_executions(session, principal, filters).map(wf_schemas.Execution.model_validate)


def cancel(session: Session, runner: WorkflowRunner, principal: Principal, execution_id: uuid.UUID) -> WorkflowStatus:
    """Stop a run: pending ones at once, others at their next safe point, undoing what they did."""
    principal.require(Role.OPERATOR, Role.AGENT, Role.CUSTOMER)
    principal.require_writable()
    get_execution(session, principal, execution_id)  # 404 unless the caller may see it
    return runner.cancel(execution_id, principal, session=session)


def resume(
    session: Session, runner: WorkflowRunner, principal: Principal, execution_id: uuid.UUID, note: str | None
) -> WorkflowStatus:
    """A human's decision to continue a paused run (the paused phase counts as passed by that decision)."""
    principal.require(Role.OPERATOR, Role.CUSTOMER)
    principal.require_writable()
    get_execution(session, principal, execution_id)
    return runner.resume(execution_id, principal, note, session=session)


def abort(session: Session, runner: WorkflowRunner, principal: Principal, execution_id: uuid.UUID) -> WorkflowStatus:
    """A human's decision to stop a paused run: its applied changes are undone and the optimization rolled back."""
    principal.require(Role.OPERATOR, Role.CUSTOMER)
    principal.require_writable()
    get_execution(session, principal, execution_id)
    return runner.abort(execution_id, principal, session=session)


def artifact_file(
    session: Session, principal: Principal, execution_id: uuid.UUID, artifact_id: uuid.UUID, root: Path
) -> tuple[Path, str, str]:
    """The artifact's file (only inside the artifact folder), its download name and content type."""
    get_execution(session, principal, execution_id)
    artifact = repository.artifact_of(session, execution_id, artifact_id)
    if artifact is None:
        raise NotFoundError("No such artifact.", details={"artifact_id": str(artifact_id)})
    path = Path(artifact.artifact_path).resolve()
    if not path.is_relative_to(root.resolve()) or not path.is_file():
        raise NotFoundError("The artifact's file is not available on this server.")
    return path, artifact.artifact_name, artifact.content_type or "application/octet-stream"
