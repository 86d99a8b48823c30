"""`optiinfra workflow ...` and `optiinfra agents ...` (as the operator, straight on the database)."""

from __future__ import annotations

import time
import uuid
from typing import Annotated

import typer
from rich.table import Table
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from optiinfra.agents import schemas as agent_schemas
from optiinfra.agents import service as agent_service
from optiinfra.auth.principal import Principal
from optiinfra.cli.context import console, reports_errors
from optiinfra.cli.quality import _customer_id, _session_factory
from optiinfra.config import load_settings
from optiinfra.db.engine import unit_of_work
from optiinfra.errors import InvalidInputError, NotFoundError
from optiinfra.models import Agent, AgentStatus, AgentType, Customer, WorkflowStatus
from optiinfra.workflows import queue, service
from optiinfra.workflows import schemas as wf_schemas
from optiinfra.workflows.service import build_runner
from optiinfra.workflows.states import TERMINAL

workflow_app = typer.Typer(help="Run and inspect workflows (spot migration, scaling decision).", no_args_is_help=True)
agents_app = typer.Typer(help="Inspect agents and assign them to the customers they serve.", no_args_is_help=True)
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
    if detail.waiting_for:
        console.print(f"waiting for: {detail.waiting_for}", soft_wrap=True)
    if detail.paused_for:
        console.print(
            f"[yellow]paused: {detail.paused_for.get('reason')}[/yellow]\n"
            f"  decide with `optiinfra workflow resume {detail.id}` or `optiinfra workflow abort {detail.id}`",
            soft_wrap=True,
        )
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
    bake_seconds: Annotated[float, typer.Option(help="spot-rollout: each phase runs this long before judged.")] = 600,
    min_samples: Annotated[int, typer.Option(help="spot-rollout: records per arm and model version.")] = 200,
    deadline_seconds: Annotated[
        float, typer.Option(help="spot-rollout: pause for a human when a phase has too little traffic by then.")
    ] = 4 * 3600,
    wait: Annotated[bool, typer.Option("--wait", help="Follow the run until it ends or pauses.")] = False,
) -> None:
    """Start a workflow (a worker runs it) and show it; with --wait, follow it to its end."""
    factory = _session_factory()
    runner = build_runner(factory, load_settings().data_dir)
    with unit_of_work(factory) as session:
        if workflow == "spot-rollout":
            if optimization is None:
                raise InvalidInputError("spot-rollout needs --optimization.")
            execution_id = service.roll_out_spot(
                session,
                runner,
                CLI,
                wf_schemas.SpotRolloutRequest(
                    optimization_id=optimization,
                    bake_seconds=bake_seconds,
                    min_samples=min_samples,
                    deadline_seconds=deadline_seconds,
                ),
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
        workers = queue.live_workers(session)
    console.print(f"started {execution_id}")
    if workers == 0:
        console.print(
            "[yellow]No worker is running: the run waits in the queue until `optiinfra worker` (or `optiinfra serve`) "
            "runs.[/yellow]"
        )
    if wait:
        _follow(factory, execution_id)
    with unit_of_work(factory) as session:
        _show(service.get_execution(session, CLI, execution_id))


def _follow(factory: sessionmaker[Session], execution_id: uuid.UUID) -> None:
    """Poll the run until it ends or pauses, showing its status and what it waits for."""
    with console.status("starting") as status:
        while True:
            with unit_of_work(factory) as session:
                detail = service.get_execution(session, CLI, execution_id)
            if detail.status in TERMINAL or detail.status is WorkflowStatus.PAUSED:
                return
            line = f"{detail.status}"
            current = next((s for s in detail.steps if s.status not in {"completed", "skipped", "pending"}), None)
            if current is not None:
                line += f": {current.step_name}"
            if detail.waiting_for:
                samples = detail.waiting_for.get("samples") or {}
                arms = ", ".join(f"{k} {v['changed']}/{v['control']}" for k, v in samples.items()) or "no traffic yet"
                line += f" (changed/control records: {arms}; next look {detail.waiting_for.get('until', '')[11:19]})"
            status.update(line)
            time.sleep(1)


@workflow_app.command("resume")
@reports_errors
def resume(
    workflow_id: Annotated[uuid.UUID, typer.Argument()],
    note: Annotated[str | None, typer.Option(help="Why (kept with the decision).")] = None,
) -> None:
    """Continue a paused run (the paused phase counts as passed by your decision)."""
    factory = _session_factory()
    runner = build_runner(factory, load_settings().data_dir)
    with unit_of_work(factory) as session:
        service.resume(session, runner, CLI, workflow_id, note)
    with unit_of_work(factory) as session:
        _show(service.get_execution(session, CLI, workflow_id))


@workflow_app.command("abort")
@reports_errors
def abort(workflow_id: Annotated[uuid.UUID, typer.Argument()]) -> None:
    """Stop a paused run: its applied phases are undone and the optimization rolled back (by a worker)."""
    factory = _session_factory()
    runner = build_runner(factory, load_settings().data_dir)
    with unit_of_work(factory) as session:
        service.abort(session, runner, CLI, workflow_id)
    with unit_of_work(factory) as session:
        _show(service.get_execution(session, CLI, workflow_id))


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
    for column in ("id", "type", "name", "version", "status", "last heartbeat", "customers", "capabilities"):
        table.add_column(column, overflow="fold")
    for agent in page.items:
        table.add_row(
            str(agent.id),
            str(agent.type),
            agent.name,
            agent.version or "",
            str(agent.status),
            agent.last_heartbeat.strftime("%Y-%m-%d %H:%M:%S") if agent.last_heartbeat else "never",
            str(len(agent.customer_ids)),
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


def _print_customers(session: Session, found: agent_schemas.Agent) -> None:
    emails = dict(session.execute(select(Customer.id, Customer.email).where(Customer.id.in_(found.customer_ids))).all())
    served = ", ".join(f"{emails.get(customer_id, '?')} ({customer_id})" for customer_id in found.customer_ids)
    console.print(f"{found.type}/{found.name} serves: {served or 'no customer'}", highlight=False, soft_wrap=True)


@agents_app.command("assign")
@reports_errors
def assign_customer(
    agent: Annotated[str, typer.Argument(help="Agent id or name.")],
    customer: Annotated[str, typer.Option("--customer", "-c", help="Customer id or email.")],
) -> None:
    """Assign the agent to a customer it serves: an agent acts only for its assigned customers."""
    factory = _session_factory()
    with unit_of_work(factory) as session:
        assignment = agent_schemas.CustomerAssignment(customer_id=_customer_id(session, customer))
        found = agent_service.assign_customer(session, CLI, _agent(session, agent).id, assignment)
        _print_customers(session, found)


@agents_app.command("unassign")
@reports_errors
def unassign_customer(
    agent: Annotated[str, typer.Argument(help="Agent id or name.")],
    customer: Annotated[str, typer.Option("--customer", "-c", help="Customer id or email.")],
) -> None:
    """Take a customer away from the agent: it can no longer act for the customer or read its rows."""
    factory = _session_factory()
    with unit_of_work(factory) as session:
        found = agent_service.unassign_customer(
            session, CLI, _agent(session, agent).id, _customer_id(session, customer)
        )
        _print_customers(session, found)
