"""`optiinfra workflow ...` and `optiinfra agents ...` (as the operator, straight on the database)."""

from __future__ import annotations

import json
import time
import uuid
from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table

from optiinfra.cli.common import WideOption, add_columns, cli_principal, customer_id, resolve_id, session_factory, short
from optiinfra.cli.context import console, reports_errors
from optiinfra.enums import AgentStatus, AgentType, WorkflowStatus
from optiinfra.errors import InvalidInputError, NotFoundError

if TYPE_CHECKING:
    from sqlalchemy.orm import Session, sessionmaker

    from optiinfra.agents import schemas as agent_schemas
    from optiinfra.workflows import schemas as wf_schemas

# The database layer and the services are imported by the commands that run them: `--help` starts at once.

workflow_app = typer.Typer(help="Run and inspect workflows (spot migration, scaling decision).", no_args_is_help=True)
agents_app = typer.Typer(help="Inspect agents and assign them to the customers they serve.", no_args_is_help=True)


WorkflowArgument = Annotated[str, typer.Argument(help="Workflow run id (or its first characters).")]


def _workflow_id(session: Session, value: str) -> uuid.UUID:
    from optiinfra.models import WorkflowExecution

    return resolve_id(session, WorkflowExecution.id, value, "workflow")


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
    from optiinfra.config import load_settings
    from optiinfra.db.engine import unit_of_work
    from optiinfra.workflows import queue, service
    from optiinfra.workflows import schemas as wf_schemas
    from optiinfra.workflows.service import build_runner

    factory = session_factory()
    runner = build_runner(factory, load_settings().data_dir)
    with unit_of_work(factory) as session:
        if workflow == "spot-rollout":
            if optimization is None:
                raise InvalidInputError("spot-rollout needs --optimization.")
            execution_id = service.roll_out_spot(
                session,
                runner,
                cli_principal(),
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
            owner = customer_id(session, customer)
            if workflow == "spot-analysis":
                execution_id = service.analyze_spot(
                    session,
                    runner,
                    cli_principal(),
                    wf_schemas.SpotAnalysisRequest(customer_id=owner, lookback_days=lookback_days),
                )
            else:
                execution_id = service.decide_scaling(
                    session,
                    runner,
                    cli_principal(),
                    wf_schemas.ScalingRequest(customer_id=owner, window_minutes=window_minutes),
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
        _show(service.get_execution(session, cli_principal(), execution_id))


def _follow(factory: sessionmaker[Session], execution_id: uuid.UUID) -> None:
    """Poll the run until it ends or pauses, showing its status and what it waits for."""
    from optiinfra.db.engine import unit_of_work
    from optiinfra.workflows import service
    from optiinfra.workflows.states import TERMINAL

    with console.status("starting") as status:
        while True:
            with unit_of_work(factory) as session:
                detail = service.get_execution(session, cli_principal(), execution_id)
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
    workflow: WorkflowArgument,
    note: Annotated[str | None, typer.Option(help="Why (kept with the decision).")] = None,
) -> None:
    """Continue a paused run (the paused phase counts as passed by your decision)."""
    from optiinfra.config import load_settings
    from optiinfra.db.engine import unit_of_work
    from optiinfra.workflows import service
    from optiinfra.workflows.service import build_runner

    factory = session_factory()
    runner = build_runner(factory, load_settings().data_dir)
    with unit_of_work(factory) as session:
        workflow_id = _workflow_id(session, workflow)
        service.resume(session, runner, cli_principal(), workflow_id, note)
    with unit_of_work(factory) as session:
        _show(service.get_execution(session, cli_principal(), workflow_id))


@workflow_app.command("abort")
@reports_errors
def abort(workflow: WorkflowArgument) -> None:
    """Stop a paused run: its applied phases are undone and the optimization rolled back (by a worker)."""
    from optiinfra.config import load_settings
    from optiinfra.db.engine import unit_of_work
    from optiinfra.workflows import service
    from optiinfra.workflows.service import build_runner

    factory = session_factory()
    runner = build_runner(factory, load_settings().data_dir)
    with unit_of_work(factory) as session:
        workflow_id = _workflow_id(session, workflow)
        service.abort(session, runner, cli_principal(), workflow_id)
    with unit_of_work(factory) as session:
        _show(service.get_execution(session, cli_principal(), workflow_id))


@workflow_app.command("list")
@reports_errors
def list_workflows(
    customer: Annotated[str | None, typer.Option("--customer", "-c")] = None,
    status: Annotated[WorkflowStatus | None, typer.Option()] = None,
    limit: Annotated[int, typer.Option(min=1, max=500)] = 20,
    wide: WideOption = False,
) -> None:
    """Workflow executions, newest first."""
    from optiinfra.db.engine import unit_of_work
    from optiinfra.workflows import service
    from optiinfra.workflows.schemas import ExecutionFilters

    factory = session_factory()
    with unit_of_work(factory) as session:
        owner = customer_id(session, customer) if customer else None
        page = service.list_executions(
            session, cli_principal(), ExecutionFilters(customer_id=owner, status=status, limit=limit)
        )
    if not page.items:
        console.print("No workflow runs. Start one with: optiinfra workflow run spot-analysis -c CUSTOMER")
        return
    table = Table(title="Workflows")
    add_columns(table, ("id", "workflow", "status", "started", "customer"), wide)
    for execution in page.items:
        table.add_row(
            short(execution.id, wide),
            str(execution.metadata.get("workflow", execution.workflow_type)),
            str(execution.status),
            execution.started_at.strftime("%m-%d %H:%M") if execution.started_at else "",
            short(execution.customer_id, wide),
        )
    console.print(table)


@workflow_app.command("show")
@reports_errors
def show(workflow: WorkflowArgument) -> None:
    """One execution with its steps and artifacts."""
    from optiinfra.db.engine import unit_of_work
    from optiinfra.workflows import service

    factory = session_factory()
    with unit_of_work(factory) as session:
        _show(service.get_execution(session, cli_principal(), _workflow_id(session, workflow)))


@agents_app.command("list")
@reports_errors
def list_agents(
    agent_type: Annotated[AgentType | None, typer.Option("--type")] = None,
    status: Annotated[AgentStatus | None, typer.Option()] = None,
    wide: WideOption = False,
) -> None:
    """Agents with their health."""
    from optiinfra.agents import service as agent_service
    from optiinfra.agents.schemas import AgentFilters
    from optiinfra.db.engine import unit_of_work

    factory = session_factory()
    with unit_of_work(factory) as session:
        page = agent_service.list_agents(
            session, cli_principal(), AgentFilters(type=agent_type, status=status, limit=500)
        )
    if not page.items:
        console.print("No agents. Agents register themselves: POST /api/v1/agents (README, 'Agents').")
        return
    table = Table(title="Agents")
    columns = ("id", "type", "name", "version", "status", "last heartbeat", "customers")
    add_columns(table, columns + (("capabilities",) if wide else ()), wide)
    for agent in page.items:
        table.add_row(
            short(agent.id, wide),
            str(agent.type),
            agent.name,
            agent.version or "",
            str(agent.status),
            agent.last_heartbeat.strftime("%m-%d %H:%M:%S") if agent.last_heartbeat else "never",
            str(len(agent.customer_ids)),
            *((", ".join(agent.capabilities),) if wide else ()),
        )
    console.print(table)


def _agent_id(session: Session, value: str) -> uuid.UUID:
    """An agent by name, id or id prefix."""
    from optiinfra.agents import service as agent_service
    from optiinfra.models import Agent

    named = agent_service.agent_ids_named(session, cli_principal(), value)
    if named:
        return named[0]
    try:
        return resolve_id(session, Agent.id, value, "agent")
    except (InvalidInputError, NotFoundError):
        raise NotFoundError(
            f"No agent with id or name {value!r}.", fix="List them with: optiinfra agents list"
        ) from None


@agents_app.command("show")
@reports_errors
def show_agent(agent: Annotated[str, typer.Argument(help="Agent id or name.")]) -> None:
    """One agent."""
    from optiinfra.agents import service as agent_service
    from optiinfra.db.engine import unit_of_work

    factory = session_factory()
    with unit_of_work(factory) as session:
        found = agent_service.get_agent(session, cli_principal(), _agent_id(session, agent))
    for field, value in found.model_dump(mode="json").items():
        shown = ", ".join(str(item) for item in value) if isinstance(value, list) else value
        if isinstance(value, dict):
            shown = json.dumps(value) if value else ""
        console.print(f"[bold]{field}[/bold]: {'' if shown is None else shown}", highlight=False, soft_wrap=True)


def _print_customers(session: Session, found: agent_schemas.Agent) -> None:
    from optiinfra.customers import service as customer_service

    emails = customer_service.customer_emails(session, cli_principal(), found.customer_ids)
    served = ", ".join(f"{emails.get(customer_id, '?')} ({customer_id})" for customer_id in found.customer_ids)
    console.print(f"{found.type}/{found.name} serves: {served or 'no customer'}", highlight=False, soft_wrap=True)


@agents_app.command("assign")
@reports_errors
def assign_customer(
    agent: Annotated[str, typer.Argument(help="Agent id or name.")],
    customer: Annotated[str, typer.Option("--customer", "-c", help="Customer id or email.")],
) -> None:
    """Assign the agent to a customer it serves: an agent acts only for its assigned customers."""
    from optiinfra.agents import schemas as agent_schemas
    from optiinfra.agents import service as agent_service
    from optiinfra.db.engine import unit_of_work

    factory = session_factory()
    with unit_of_work(factory) as session:
        assignment = agent_schemas.CustomerAssignment(customer_id=customer_id(session, customer))
        found = agent_service.assign_customer(session, cli_principal(), _agent_id(session, agent), assignment)
        _print_customers(session, found)


@agents_app.command("unassign")
@reports_errors
def unassign_customer(
    agent: Annotated[str, typer.Argument(help="Agent id or name.")],
    customer: Annotated[str, typer.Option("--customer", "-c", help="Customer id or email.")],
) -> None:
    """Take a customer away from the agent: it can no longer act for the customer or read its rows."""
    from optiinfra.agents import service as agent_service
    from optiinfra.db.engine import unit_of_work

    factory = session_factory()
    with unit_of_work(factory) as session:
        found = agent_service.unassign_customer(
            session, cli_principal(), _agent_id(session, agent), customer_id(session, customer)
        )
        _print_customers(session, found)
