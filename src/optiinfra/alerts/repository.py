"""Alert queries; every one goes through the caller's tenancy scope."""

from __future__ import annotations

import uuid
from collections.abc import Sequence

from sqlalchemy import select
from sqlalchemy.orm import Session

from optiinfra.alerts.schemas import AlertFilters, AlertRouteFilters
from optiinfra.auth.principal import Principal
from optiinfra.db.queries import list_page
from optiinfra.errors import NotFoundError
from optiinfra.models import AlertDelivery, AlertOutbox, AlertRoute
from optiinfra.pagination import Page
from optiinfra.tenancy import scope_to_caller


def get_route(session: Session, principal: Principal, route_id: uuid.UUID, *, for_update: bool = False) -> AlertRoute:
    statement = scope_to_caller(
        select(AlertRoute).where(AlertRoute.id == route_id), principal, customer_column=AlertRoute.customer_id
    )
    if for_update:
        statement = statement.with_for_update().execution_options(populate_existing=True)
    route = session.scalar(statement)
    if route is None:
        raise NotFoundError("No such alert route.", details={"route_id": str(route_id)})
    return route


def list_routes(session: Session, principal: Principal, filters: AlertRouteFilters) -> Page[AlertRoute]:
    return list_page(session, AlertRoute, filters, principal=principal)


def get_alert(session: Session, principal: Principal, alert_id: uuid.UUID, *, for_update: bool = False) -> AlertOutbox:
    statement = scope_to_caller(
        select(AlertOutbox).where(AlertOutbox.id == alert_id), principal, customer_column=AlertOutbox.customer_id
    )
    if for_update:
        statement = statement.with_for_update().execution_options(populate_existing=True)
    alert = session.scalar(statement)
    if alert is None:
        raise NotFoundError("No such alert.", details={"alert_id": str(alert_id)})
    return alert


def list_alerts(session: Session, principal: Principal, filters: AlertFilters) -> Page[AlertOutbox]:
    return list_page(session, AlertOutbox, filters, principal=principal)


def deliveries_of(session: Session, alert_id: uuid.UUID) -> Sequence[AlertDelivery]:
    return session.scalars(
        select(AlertDelivery).where(AlertDelivery.outbox_id == alert_id).order_by(AlertDelivery.attempt)
    ).all()
