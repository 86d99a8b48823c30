"""`optiinfra alerts ...`: alert routes, test alerts, the alert log, redelivery (as the operator, on the database)."""

from __future__ import annotations

import time
import uuid
from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table

from optiinfra.alerts import schemas as alert_schemas
from optiinfra.cli.common import WideOption, add_columns, cli_principal, customer_id, resolve_id, session_factory, short
from optiinfra.cli.context import console, reports_errors
from optiinfra.enums import EventSeverity
from optiinfra.errors import InvalidInputError

if TYPE_CHECKING:
    from sqlalchemy.orm import Session


alerts_app = typer.Typer(help="Alert routes (webhook, Slack, Teams, e-mail) and the alerts sent.", no_args_is_help=True)


def _route_id(session: Session, value: str) -> uuid.UUID:
    from optiinfra.models import AlertRoute

    return resolve_id(session, AlertRoute.id, value, "alert route")


def _alert_id(session: Session, value: str) -> uuid.UUID:
    from optiinfra.models import AlertOutbox

    return resolve_id(session, AlertOutbox.id, value, "alert")


def _show_route(route: alert_schemas.AlertRoute) -> None:
    target = route.url_masked or route.email_to
    kinds = ", ".join(route.event_kinds) or "every kind"
    models = ", ".join(route.model_names) or "every model"
    console.print(
        f"[bold]{route.name}[/bold] {route.id}: {route.destination} → {target}; {kinds}; "
        f"severity ≥ {route.min_severity}; {models}; updates at most every {route.throttle_seconds} s"
        + ("" if route.enabled else " [yellow](disabled)[/yellow]"),
        soft_wrap=True,
    )


@alerts_app.command("add")
@reports_errors
def add(
    name: Annotated[str, typer.Argument(help="A name for the route.")],
    customer: Annotated[str, typer.Option("--customer", "-c", help="Customer id or email.")],
    destination: Annotated[str, typer.Option(help="webhook, slack, teams or email")] = "webhook",
    url: Annotated[str | None, typer.Option(help="webhook, slack, teams: where to POST.")] = None,
    email_to: Annotated[str | None, typer.Option(help="email: the recipient.")] = None,
    kind: Annotated[
        list[str] | None,
        typer.Option("--kind", help=f"Only these kinds (repeatable): {', '.join(alert_schemas.KINDS)}."),
    ] = None,
    min_severity: Annotated[EventSeverity, typer.Option(help="Only alerts at least this severe.")] = (
        EventSeverity.INFO
    ),
    model: Annotated[list[str] | None, typer.Option("--model", help="Only alerts about these models.")] = None,
    throttle_seconds: Annotated[int, typer.Option(help="Least time between updates of one incident.")] = 900,
) -> None:
    """Add an alert route. A webhook's signing secret is printed once: keep it for the receiver's check."""
    from optiinfra.alerts import service
    from optiinfra.db.engine import unit_of_work

    factory = session_factory()
    with unit_of_work(factory) as session:
        payload = alert_schemas.AlertRouteCreate.model_validate(
            {
                "customer_id": customer_id(session, customer),
                "name": name,
                "destination": destination,
                "url": url,
                "email_to": email_to,
                "event_kinds": kind or [],
                "min_severity": min_severity,
                "model_names": model or [],
                "throttle_seconds": throttle_seconds,
            }
        )
        route = service.create_route(session, cli_principal(), payload)
    _show_route(route)
    if route.signing_secret:
        console.print(f"signing secret (shown once): {route.signing_secret}", soft_wrap=True)


@alerts_app.command("routes")
@reports_errors
def routes(
    customer: Annotated[str | None, typer.Option("--customer", "-c", help="Customer id or email.")] = None,
) -> None:
    """List alert routes (URLs masked; secrets are never shown again)."""
    from optiinfra.alerts import service
    from optiinfra.alerts.schemas import AlertRouteFilters
    from optiinfra.db.engine import unit_of_work

    factory = session_factory()
    with unit_of_work(factory) as session:
        owner = customer_id(session, customer) if customer else None
        page = service.list_routes(session, cli_principal(), AlertRouteFilters(customer_id=owner, limit=500))
    for found in page.items:
        _show_route(found)
    if not page.items:
        console.print("No alert routes. Add one with: optiinfra alerts add NAME -c CUSTOMER --url URL")


@alerts_app.command("remove")
@reports_errors
def remove(route: Annotated[str, typer.Argument(help="Route id (or its first characters).")]) -> None:
    """Delete a route and its alerts."""
    from optiinfra.alerts import service
    from optiinfra.db.engine import unit_of_work

    with unit_of_work(session_factory()) as session:
        route_id = _route_id(session, route)
        service.delete_route(session, cli_principal(), route_id)
    console.print(f"route {route_id} deleted")


def _wait(alert_id: uuid.UUID, seconds: float) -> alert_schemas.AlertDetail:
    from optiinfra.alerts import service
    from optiinfra.db.engine import unit_of_work

    factory = session_factory()
    deadline = time.monotonic() + seconds
    while True:
        with unit_of_work(factory) as session:
            detail = service.get_alert(session, cli_principal(), alert_id)
        if detail.status in {"delivered", "failed"} or time.monotonic() > deadline:
            return detail
        time.sleep(0.5)


def _show_alert(detail: alert_schemas.AlertDetail) -> None:
    console.print(
        f"[bold]{detail.kind}[/bold] {detail.id}: [bold]{detail.status}[/bold] after {detail.attempts} of "
        f"{detail.max_attempts} attempts — {detail.payload.get('title', '')}",
        soft_wrap=True,
    )
    table = Table()
    for column in ("attempt", "outcome", "HTTP", "ms", "error"):
        table.add_column(column, overflow="fold")
    for delivery in detail.deliveries:
        table.add_row(
            str(delivery.attempt),
            delivery.outcome,
            str(delivery.status_code or ""),
            str(delivery.duration_ms),
            delivery.error or "",
        )
    if detail.deliveries:
        console.print(table)


@alerts_app.command("test")
@reports_errors
def send_test(
    route: Annotated[str, typer.Argument(help="Route id (or its first characters).")],
    wait: Annotated[float, typer.Option(help="Seconds to follow the delivery (0: queue it and return).")] = 30,
) -> None:
    """Send a test alert to a route (a worker delivers it) and follow it."""
    from optiinfra.alerts import service
    from optiinfra.db.engine import unit_of_work

    with unit_of_work(session_factory()) as session:
        alert = service.send_test(session, cli_principal(), _route_id(session, route))
    console.print(f"test alert {alert.id} queued")
    if wait > 0:
        detail = _wait(alert.id, wait)
        _show_alert(detail)
        if detail.status != "delivered":
            raise typer.Exit(1)


@alerts_app.command("list")
@reports_errors
def list_alerts(
    route: Annotated[str | None, typer.Option(help="Only this route's alerts (id or its first characters).")] = None,
    status: Annotated[str | None, typer.Option(help="pending, sending, delivered, failed or superseded")] = None,
    limit: Annotated[int, typer.Option(min=1, max=500)] = 50,
    wide: WideOption = False,
) -> None:
    """Alerts, newest first."""
    from optiinfra.alerts import service
    from optiinfra.alerts.schemas import AlertFilters
    from optiinfra.db.engine import unit_of_work

    if status is not None and status not in {"pending", "sending", "delivered", "failed", "superseded"}:
        raise InvalidInputError(
            f"No alert status {status!r}.", fix="Use one of: pending, sending, delivered, failed, superseded."
        )
    with unit_of_work(session_factory()) as session:
        route_id = _route_id(session, route) if route else None
        filters = AlertFilters.model_validate({"route_id": route_id, "status": status, "limit": limit})
        page = service.list_alerts(session, cli_principal(), filters)
    if not page.items:
        console.print("No alerts." + ("" if route or status else " Send one with: optiinfra alerts test ROUTE"))
        return
    table = Table()
    add_columns(table, ("created", "id", "kind", "severity", "status", "attempts", "title"), wide)
    for alert in page.items:
        table.add_row(
            alert.created_at.strftime("%m-%d %H:%M:%S"),
            short(alert.id, wide),
            alert.kind,
            str(alert.severity),
            alert.status,
            f"{alert.attempts}/{alert.max_attempts}",
            str(alert.payload.get("title", "")),
        )
    console.print(table)


@alerts_app.command("show")
@reports_errors
def show(alert: Annotated[str, typer.Argument(help="Alert id (or its first characters).")]) -> None:
    """An alert and its delivery log."""
    from optiinfra.alerts import service
    from optiinfra.db.engine import unit_of_work

    with unit_of_work(session_factory()) as session:
        detail = service.get_alert(session, cli_principal(), _alert_id(session, alert))
    _show_alert(detail)


@alerts_app.command("redeliver")
@reports_errors
def redeliver(
    alert: Annotated[str, typer.Argument(help="Alert id (or its first characters).")],
    wait: Annotated[float, typer.Option(help="Seconds to follow the delivery (0: queue it and return).")] = 0,
) -> None:
    """Send a failed alert again (a delivered one is never sent again)."""
    from optiinfra.alerts import service
    from optiinfra.db.engine import unit_of_work

    with unit_of_work(session_factory()) as session:
        alert_id = _alert_id(session, alert)
        detail = service.redeliver(session, cli_principal(), alert_id)
    console.print(f"alert {alert_id} queued again")
    if wait > 0:
        detail = _wait(alert_id, wait)
    _show_alert(detail)
