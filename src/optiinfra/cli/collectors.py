"""`optiinfra sources ...` (Prometheus sources per customer) and `optiinfra collect` (one collection now)."""

from __future__ import annotations

import os
import re
import uuid
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Annotated

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

from optiinfra.cli.common import cli_principal, customer_id, resolve_id, session_factory
from optiinfra.cli.context import console, reports_errors
from optiinfra.collectors import schemas as source_schemas
from optiinfra.errors import InvalidInputError

if TYPE_CHECKING:
    from sqlalchemy.orm import Session


sources_app = typer.Typer(help="Prometheus sources the collector reads, per customer.", no_args_is_help=True)
SECRET_ENV = "OPTIINFRA_PROMETHEUS_SECRET"  # noqa: S105 (the name of a variable, not a secret)


def _source_id(session: Session, value: str) -> uuid.UUID:
    from optiinfra.models import PrometheusSource

    return resolve_id(session, PrometheusSource.id, value, "Prometheus source")


def _show(source: source_schemas.PrometheusSource) -> None:
    progress = source.collected_until.isoformat() if source.collected_until else "not yet collected"
    trouble = f"; [red]{source.consecutive_failures} failure(s): {source.last_error}[/red]" if source.last_error else ""
    console.print(
        f"[bold]{source.name}[/bold] {source.id}: {source.base_url} (auth {source.auth_type}); labels "
        f"instance={source.instance_label} type={source.instance_type_label} zone={source.zone_label} "
        f"purchase={source.purchase_option_label}; step {source.step_seconds} s; collected until {progress}"
        + ("" if source.enabled else " [yellow](paused)[/yellow]")
        + trouble,
        soft_wrap=True,
    )


@sources_app.command("add")
@reports_errors
def add(
    name: Annotated[str, typer.Argument(help="A name for the source.")],
    url: Annotated[str, typer.Option(help="The Prometheus server's base URL.")],
    customer: Annotated[str, typer.Option("--customer", "-c", help="Customer id or email.")],
    auth: Annotated[str, typer.Option(help="none, basic or bearer")] = "none",
    username: Annotated[str | None, typer.Option(help="basic: the user name.")] = None,
    instance_label: Annotated[str, typer.Option(help="The label naming the machine.")] = "instance",
    instance_type_label: Annotated[str, typer.Option(help="The label giving its instance type.")] = "instance_type",
    zone_label: Annotated[str, typer.Option(help="The label giving its zone.")] = "zone",
    purchase_option_label: Annotated[str, typer.Option(help="The label saying spot or on-demand.")] = "capacity_type",
    step_seconds: Annotated[int, typer.Option(help="The range queries' step (the scrape interval).")] = 60,
    lookback_hours: Annotated[int, typer.Option(help="What the first collection backfills.")] = 168,
) -> None:
    """Add a Prometheus source. A password or token is read from OPTIINFRA_PROMETHEUS_SECRET (never an argument, so
    it stays out of the process list and the shell history)."""
    secret = os.environ.get(SECRET_ENV) if auth != "none" else None
    if auth != "none" and not secret:
        raise InvalidInputError(f"--auth {auth} needs the password or token in {SECRET_ENV}.")
    from optiinfra.collectors import service
    from optiinfra.db.engine import unit_of_work

    factory = session_factory()
    with unit_of_work(factory) as session:
        payload = source_schemas.PrometheusSourceCreate.model_validate(
            {
                "customer_id": customer_id(session, customer),
                "name": name,
                "base_url": url,
                "auth_type": auth,
                "auth_username": username,
                "auth_secret": secret,
                "instance_label": instance_label,
                "instance_type_label": instance_type_label,
                "zone_label": zone_label,
                "purchase_option_label": purchase_option_label,
                "step_seconds": step_seconds,
                "lookback_hours": lookback_hours,
            }
        )
        source = service.create_source(session, cli_principal(), payload)
    _show(source)


@sources_app.command("list")
@reports_errors
def list_sources(
    customer: Annotated[str | None, typer.Option("--customer", "-c", help="Customer id or email.")] = None,
) -> None:
    """List Prometheus sources and the collector's progress on each."""
    from optiinfra.collectors import service
    from optiinfra.collectors.schemas import PrometheusSourceFilters
    from optiinfra.db.engine import unit_of_work

    with unit_of_work(session_factory()) as session:
        chosen = customer_id(session, customer) if customer else None
        page = service.list_sources(session, cli_principal(), PrometheusSourceFilters(customer_id=chosen, limit=500))
    for source in page.items:
        _show(source)
    if not page.items:
        console.print("no Prometheus sources")


@sources_app.command("remove")
@reports_errors
def remove(source: Annotated[str, typer.Argument(help="The source's id (or a unique prefix).")]) -> None:
    """Remove a source (what it collected stays)."""
    from optiinfra.collectors import service
    from optiinfra.db.engine import unit_of_work

    with unit_of_work(session_factory()) as session:
        source_id = _source_id(session, source)
        service.delete_source(session, cli_principal(), source_id)
    console.print(f"source {source_id} removed")


def _duration(text: str) -> timedelta:
    match = re.fullmatch(r"(\d+)([smhd])", text.strip())
    if match is None:
        raise InvalidInputError(f"{text!r} is not a duration like 30m, 6h or 2d.")
    return timedelta(seconds=int(match.group(1)) * {"s": 1, "m": 60, "h": 3600, "d": 86400}[match.group(2)])


@reports_errors
def collect(
    source: Annotated[
        str | None, typer.Option(help="Only this source, by id or unique prefix (default: every enabled one).")
    ] = None,
    since: Annotated[
        str | None, typer.Option(help="Collect again from this long ago (30m, 6h, 2d); nothing is stored twice.")
    ] = None,
) -> None:
    """Collect from the Prometheus sources once, now (the worker does it on a schedule), then look for performance
    recommendations."""
    from optiinfra.collectors import collector, service
    from optiinfra.db.engine import unit_of_work

    factory = session_factory()
    with unit_of_work(factory) as session:
        ids = [_source_id(session, source)] if source else service.enabled_source_ids(session, cli_principal())
    start = datetime.now(UTC) - _duration(since) if since else None
    failed = 0
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), console=console) as bar:
        task = bar.add_task("collecting", total=len(ids))
        for source_id in ids:
            report = collector.collect_source(factory, source_id, since=start)
            bar.advance(task)
            if report.ok:
                made = [r for r in report.recommendations if r.get("outcome") == "created"]
                bar.console.print(
                    f"{report.name}: {report.resource_rows} resource rows, {report.agent_rows} serving rows, "
                    f"{report.skipped_duplicates} already stored; {len(made)} recommendation(s) made",
                    soft_wrap=True,
                )
            else:
                failed += 1
                bar.console.print(f"[red]{report.name}: {report.error}[/red]", soft_wrap=True)
    if not ids:
        console.print("no enabled Prometheus sources (add one: optiinfra sources add)")
    if failed:
        raise typer.Exit(1)
