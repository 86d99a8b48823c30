"""Alert routes (create, list, change, delete, send a test alert) and alerts (list, show, redeliver a failed one).

Customers manage their own routes; the operator manages any customer's. Agents have no business here (403).
"""

from __future__ import annotations

import secrets
import uuid
from datetime import UTC, datetime
from typing import Any

from sqlalchemy.orm import Session

from optiinfra.alerts import outbox, render, repository
from optiinfra.alerts import schemas as alert_schemas
from optiinfra.alerts.settings import delivery_settings
from optiinfra.auth.principal import Principal, Role
from optiinfra.customers import repository as customer_repository
from optiinfra.errors import ConflictError, InvalidInputError
from optiinfra.events import service as events
from optiinfra.models import AlertOutbox, AlertRoute, EventSeverity
from optiinfra.net import endpoints
from optiinfra.pagination import Page

SECRET_PREFIX = "whsec_"  # noqa: S105 (a prefix, not a secret)


def _now() -> datetime:
    return datetime.now(UTC)


def _out(route: AlertRoute) -> alert_schemas.AlertRoute:
    return alert_schemas.AlertRoute(
        id=route.id,
        customer_id=route.customer_id,
        name=route.name,
        destination=route.destination,  # type: ignore[arg-type]
        url_masked=render.mask_url(route.url),
        email_to=route.email_to,
        has_signing_secret=route.signing_secret is not None,
        event_kinds=list(route.event_kinds),
        min_severity=route.min_severity,
        model_names=list(route.model_names),
        throttle_seconds=route.throttle_seconds,
        enabled=route.enabled,
        created_at=route.created_at,
        updated_at=route.updated_at,
    )


def _check_url(url: str) -> None:
    try:
        endpoints.check_url(url)
    except endpoints.UnsafeEndpointError as error:
        raise InvalidInputError(str(error), details={"field": "url"}) from error


def _check_destination(destination: str, url: str | None, email_to: str | None) -> None:
    if destination == "email":
        if email_to is None or url is not None:
            raise InvalidInputError("An email route takes email_to and no url.")
        return
    if url is None or email_to is not None:
        raise InvalidInputError(f"A {destination} route takes a url and no email_to.")
    _check_url(url)


def _audit(session: Session, principal: Principal, route: AlertRoute, what: str, **extra: Any) -> None:
    events.record(
        session,
        event_type=f"alert_route.{what}",
        actor=principal,
        customer_id=route.customer_id,
        subject={"route_id": str(route.id), "name": route.name, "destination": route.destination},
        after={"url": render.mask_url(route.url), "enabled": route.enabled, **extra},
    )


def create_route(
    session: Session, principal: Principal, payload: alert_schemas.AlertRouteCreate
) -> alert_schemas.AlertRouteWithSecret:
    """A new route; a webhook gets a signing secret (generated unless given), shown in this answer only."""
    principal.require(Role.CUSTOMER, Role.OPERATOR)
    principal.require_writable()
    customer = customer_repository.customer_to_act_for(session, principal, payload.customer_id)
    _check_destination(payload.destination, payload.url, payload.email_to)
    secret = None
    if payload.destination == "webhook":
        secret = payload.signing_secret or SECRET_PREFIX + secrets.token_urlsafe(32)
    elif payload.signing_secret is not None:
        raise InvalidInputError("Only webhook routes are signed; leave signing_secret out.")
    route = AlertRoute(
        customer_id=customer.id,
        name=payload.name,
        destination=payload.destination,
        url=payload.url,
        signing_secret=secret,
        email_to=payload.email_to,
        event_kinds=list(payload.event_kinds),
        min_severity=payload.min_severity,
        model_names=list(payload.model_names),
        throttle_seconds=payload.throttle_seconds,
        enabled=payload.enabled,
    )
    session.add(route)
    session.flush()
    session.refresh(route)
    _audit(session, principal, route, "created")
    return alert_schemas.AlertRouteWithSecret(**_out(route).model_dump(), signing_secret=secret)


def list_routes(
    session: Session, principal: Principal, filters: alert_schemas.AlertRouteFilters
) -> Page[alert_schemas.AlertRoute]:
    principal.require(Role.CUSTOMER, Role.OPERATOR)
    return repository.list_routes(session, principal, filters).map(_out)


def get_route(session: Session, principal: Principal, route_id: uuid.UUID) -> alert_schemas.AlertRoute:
    principal.require(Role.CUSTOMER, Role.OPERATOR)
    return _out(repository.get_route(session, principal, route_id))


def update_route(
    session: Session, principal: Principal, route_id: uuid.UUID, payload: alert_schemas.AlertRouteUpdate
) -> alert_schemas.AlertRouteWithSecret:
    principal.require(Role.CUSTOMER, Role.OPERATOR)
    principal.require_writable()
    route = repository.get_route(session, principal, route_id, for_update=True)
    changes = payload.model_dump(exclude_unset=True, exclude={"rotate_secret"})
    for field, value in changes.items():
        if value is None and field in {"name", "min_severity", "throttle_seconds", "enabled"}:
            raise InvalidInputError(f"{field} cannot be null.")
        setattr(route, field, value)
    _check_destination(route.destination, route.url, route.email_to)
    secret = None
    if payload.rotate_secret:
        if route.destination != "webhook":
            raise InvalidInputError("Only webhook routes have a signing secret.")
        secret = route.signing_secret = SECRET_PREFIX + secrets.token_urlsafe(32)
    session.flush()
    session.refresh(route)
    _audit(session, principal, route, "updated", changed=sorted(changes), secret_rotated=payload.rotate_secret)
    return alert_schemas.AlertRouteWithSecret(**_out(route).model_dump(), signing_secret=secret)


def delete_route(session: Session, principal: Principal, route_id: uuid.UUID) -> None:
    """Delete a route and its alerts (their delivery log goes with them)."""
    principal.require(Role.CUSTOMER, Role.OPERATOR)
    principal.require_writable()
    route = repository.get_route(session, principal, route_id, for_update=True)
    _audit(session, principal, route, "deleted")
    session.delete(route)
    session.flush()


def send_test(session: Session, principal: Principal, route_id: uuid.UUID) -> alert_schemas.Alert:
    """Queue a test alert to the route (whatever its filters); a worker delivers it, as any alert."""
    principal.require(Role.CUSTOMER, Role.OPERATOR)
    principal.require_writable()
    route = repository.get_route(session, principal, route_id)
    marker = uuid.uuid4()
    row = outbox.add_alert(
        session,
        route,
        kind=outbox.TEST_KIND,
        severity=EventSeverity.INFO,
        subject_key=f"test:{marker}",
        group_key=f"test:{marker}",
        payload={
            "title": f"Test alert from OptiInfra to {route.name}",
            "text": "If you read this, alerts reach this destination.",
            "occurred_at": _now().isoformat(),
        },
    )
    session.refresh(row)
    return alert_schemas.Alert.model_validate(row)


def list_alerts(
    session: Session, principal: Principal, filters: alert_schemas.AlertFilters
) -> Page[alert_schemas.Alert]:
    principal.require(Role.CUSTOMER, Role.OPERATOR)
    return repository.list_alerts(session, principal, filters).map(alert_schemas.Alert.model_validate)


def _detail(session: Session, alert: AlertOutbox) -> alert_schemas.AlertDetail:
    deliveries = [alert_schemas.AlertDelivery.model_validate(d) for d in repository.deliveries_of(session, alert.id)]
    return alert_schemas.AlertDetail(**alert_schemas.Alert.model_validate(alert).model_dump(), deliveries=deliveries)


def get_alert(session: Session, principal: Principal, alert_id: uuid.UUID) -> alert_schemas.AlertDetail:
    principal.require(Role.CUSTOMER, Role.OPERATOR)
    return _detail(session, repository.get_alert(session, principal, alert_id))


def redeliver(session: Session, principal: Principal, alert_id: uuid.UUID) -> alert_schemas.AlertDetail:
    """Send a failed alert again, with a fresh set of attempts (same alert id, so the same idempotency key)."""
    principal.require(Role.CUSTOMER, Role.OPERATOR)
    principal.require_writable()
    alert = repository.get_alert(session, principal, alert_id, for_update=True)
    if alert.status != "failed":
        reason = (
            "it was delivered; a delivered alert is never sent again"
            if alert.status == "delivered"
            else f"it is {alert.status}"
        )
        raise ConflictError(f"Only a failed alert can be redelivered; {reason}.", details={"status": alert.status})
    alert.status = "pending"
    alert.max_attempts = alert.attempts + delivery_settings().max_attempts
    alert.next_attempt_at = _now()
    alert.last_error = None
    session.flush()
    outbox.enqueue(session, alert.id)
    events.record(
        session,
        event_type="alert.redelivery_requested",
        actor=principal,
        customer_id=alert.customer_id,
        subject={"alert_id": str(alert.id), "route_id": str(alert.route_id), "kind": alert.kind},
    )
    session.refresh(alert)
    return _detail(session, alert)
