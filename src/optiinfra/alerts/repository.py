"""Alert queries; every one goes through the caller's tenancy scope."""

from __future__ import annotations

import uuid
from collections.abc import Sequence

from sqlalchemy import select
from sqlalchemy.orm import Session

from optiinfra.alerts.schemas import AlertFilters, AlertRouteFilters
from optiinfra.auth.principal import Principal
from optiinfra.db.queries import get_row, list_page
from optiinfra.models import AlertDelivery, AlertOutbox, AlertRoute
from optiinfra.pagination import Page


def get_route(session: Session, principal: Principal, route_id: uuid.UUID, *, for_update: bool = False) -> AlertRoute:
    return get_row(session, AlertRoute, route_id, principal, "alert route", "route_id", for_update=for_update)


def list_routes(session: Session, principal: Principal, filters: AlertRouteFilters) -> Page[AlertRoute]:
    return list_page(session, AlertRoute, filters, principal=principal)


def get_alert(session: Session, principal: Principal, alert_id: uuid.UUID, *, for_update: bool = False) -> AlertOutbox:
    return get_row(session, AlertOutbox, alert_id, principal, "alert", "alert_id", for_update=for_update)


def list_alerts(session: Session, principal: Principal, filters: AlertFilters) -> Page[AlertOutbox]:
    return list_page(session, AlertOutbox, filters, principal=principal)


def deliveries_of(session: Session, alert_id: uuid.UUID) -> Sequence[AlertDelivery]:
    return session.scalars(
        select(AlertDelivery).where(AlertDelivery.outbox_id == alert_id).order_by(AlertDelivery.attempt)
    ).all()
