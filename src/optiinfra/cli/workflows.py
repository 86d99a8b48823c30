"""`optiinfra workflow ...` and `optiinfra agents ...` (as the operator, straight on the database)."""

from __future__ import annotations

import uuid
from typing import Annotated

import typer
from rich.table import Table
from sqlalchemy import select
from sqlalchemy.orm import Session

from optiinfra.agents import service as agent_service
from optiinfra.auth.principal import Principal
from optiinfra.cli.context import console, reports_errors
from optiinfra.cli.quality import _customer_id, _session_factory
from optiinfra.config import load_settings
from optiinfra.db.engine import unit_of_work
from optiinfra.errors import InvalidInputError, NotFoundError
from optiinfra.models import Agent, AgentStatus, AgentType, WorkflowStatus
from optiinfra.workflows import schemas as wf_schemas
from optiinfra.workflows import service
from optiinfra.workflows.service import build_runner

workflow_app = typer.Typer(help="Run and inspect workflows (spot migration, scaling decision).", no_args_is_help=True)
agents_app = typer.Typer(help="Inspect agents.", no_args_is_help=True)
CLI = Principal.system("cli")


def _show(detail: wf_schemas.ExecutionDetail) -> None:
    console.print(
        f"[bold]{detail.metadata.get('workflow', detail.workflow_type)}[/bold] {detail.id}: "
        f"[bold]{detail.status}[/bold]"
    )
    table = Table()
    for column in ("#", "step", "status", "retries", "started", "output / error"):
        table.add_column(column, overflow="fold")
    for step in detail.steps:
        summary = step.error_details or step.output_data
        table.add_row(
            str(step.step_order),
            step.step_name,
            str(step.status),
            f"{step.retry_count}/{step.max_retries}",
            step.started_at.strftime("%H:%M:%S") if step.started_at else "",
            str(summary)[:160],
        )
    console.print(table)
    for artifact in detail.artifacts:
        console.print(
            f"artifact {artifact.artifact_name} ({artifact.artifact_type}, {artifact.artifact_size_bytes} bytes)"
        )


@workflow_app.command("run")
@reports_errors
def run(
    workflow: Annotated[str, typer.Argument(help="spot-analysis, spot-rollout or scaling-decision")],
    customer: Annotated[str | None, typer.Option("--customer", "-c", help="Customer id or email.")] = None,
    optimization: Annotated[uuid.UUID | None, typer.Option(help="Optimization to roll out (spot-rollout).")] = None,
    lookback_days: Annotated[float, typer.Option(help="spot-analysis: days of utilization to read.")] = 7,
    window_minutes: Annotated[float, typer.Option(help="scaling-decision: minutes of utilization.")] = 60,
) -> None:
    """Run a workflow to its end and show its steps."""
    factory = _session_factory()
    runner = build_runner(factory, load_settings().data_dir)
    with unit_of_work(factory) as session:
        if workflow == "spot-rollout":
            if optimization is None:
                raise InvalidInputError("spot-rollout needs --optimization.")
            execution_id = service.roll_out_spot(
                session, runner, CLI, wf_schemas.SpotRolloutRequest(optimization_id=optimization)
            )
        elif workflow in {"spot-analysis", "scaling-decision"}:
            if customer is None:
                raise InvalidInputError(f"{workflow} needs --customer.")
            customer_id = _customer_id(session, customer)
            if workflow == "spot-analysis":
                execution_id = service.analyze_spot(
                    session,
                    runner,
                    CLI,
                    wf_schemas.SpotAnalysisRequest(customer_id=customer_id, lookback_days=lookback_days),
                )
            else:
                execution_id = service.decide_scaling(
                    session,
                    runner,
                    CLI,
                    wf_schemas.ScalingRequest(customer_id=customer_id, window_minutes=window_minutes),
                )
        else:
            raise InvalidInputError(
                f"Unknown workflow {workflow!r}: use spot-analysis, spot-rollout or scaling-decision."
            )
    with unit_of_work(factory) as session:
        _show(service.get_execution(session, CLI, execution_id))


@workflow_app.command("list")
@reports_errors
def list_workflows(
    customer: Annotated[str | None, typer.Option("--customer", "-c")] = None,
    status: Annotated[WorkflowStatus | None, typer.Option()] = None,
    limit: Annotated[int, typer.Option(min=1, max=500)] = 20,
) -> None:
    """Workflow executions, newest first."""
    factory = _session_factory()
    with unit_of_work(factory) as session:
        customer_id = _customer_id(session, customer) if customer else None
        page = service.list_executions(
            session, CLI, customer_id=customer_id, workflow_type=None, status=status, cursor=None, limit=limit
        )
    table = Table(title="Workflows")
    for column in ("id", "workflow", "status", "started", "customer"):
        table.add_column(column, overflow="fold")
    for execution in page.items:
        table.add_row(
            str(execution.id),
            str(execution.metadata.get("workflow", execution.workflow_type)),
            str(execution.status),
            execution.started_at.strftime("%Y-%m-%d %H:%M") if execution.started_at else "",
            str(execution.customer_id),
        )
    console.print(table)


@workflow_app.command("show")
@reports_errors
def show(workflow_id: Annotated[uuid.UUID, typer.Argument()]) -> None:
    """One execution with its steps and artifacts."""
    factory = _session_factory()
    with unit_of_work(factory) as session:
        _show(service.get_execution(session, CLI, workflow_id))


@agents_app.command("list")
@reports_errors
def list_agents(
    agent_type: Annotated[AgentType | None, typer.Option("--type")] = None,
    status: Annotated[AgentStatus | None, typer.Option()] = None,
) -> None:
    """Agents with their health."""
    factory = _session_factory()
    with unit_of_work(factory) as session:
        page = agent_service.list_agents(session, CLI, agent_type=agent_type, status=status, cursor=None, limit=500)
    table = Table(title="Agents")
    for column in ("id", "type", "name", "version", "status", "last heartbeat", "capabilities"):
        table.add_column(column, overflow="fold")
    for agent in page.items:
        table.add_row(
            str(agent.id),
            str(agent.type),
            agent.name,
            agent.version or "",
            str(agent.status),
            agent.last_heartbeat.strftime("%Y-%m-%d %H:%M:%S") if agent.last_heartbeat else "never",
            ", ".join(agent.capabilities),
        )
    console.print(table)


def _agent(session: Session, value: str) -> Agent:
    try:
        agent = session.get(Agent, uuid.UUID(value))
    except ValueError:
        agent = session.scalar(select(Agent).where(Agent.name == value))
    if agent is None:
        raise NotFoundError(f"No agent with id or name {value!r}.")
    return agent


@agents_app.command("show")
@reports_errors
def show_agent(agent: Annotated[str, typer.Argument(help="Agent id or name.")]) -> None:
    """One agent."""
    factory = _session_factory()
    with unit_of_work(factory) as session:
        found = agent_service.get_agent(session, CLI, _agent(session, agent).id)
    for field, value in found.model_dump().items():
        console.print(f"[bold]{field}[/bold]: {value}", highlight=False)
