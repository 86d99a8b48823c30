"""Prometheus sources: add, list, show, change, remove. Customers manage their own; the operator any customer's.
Agents have no business here (403): the collector acts for the customer's agents itself.

The base URL passes the same endpoint-safety rules as webhooks (`optiinfra.net.endpoints`): checked when stored and
again at every call. The authentication secret is stored (it is needed to call) and never returned.
"""

from __future__ import annotations

import uuid

from sqlalchemy import select
from sqlalchemy.orm import Session

from optiinfra.auth.principal import Principal, Role
from optiinfra.collectors import repository
from optiinfra.collectors import schemas as source_schemas
from optiinfra.customers import repository as customer_repository
from optiinfra.errors import ConflictError, InvalidInputError
from optiinfra.events import service as events
from optiinfra.models import PrometheusSource
from optiinfra.net import endpoints
from optiinfra.pagination import Page


def to_schema(source: PrometheusSource) -> source_schemas.PrometheusSource:
    return source_schemas.PrometheusSource(
        id=source.id,
        customer_id=source.customer_id,
        name=source.name,
        base_url=source.base_url,
        auth_type=source.auth_type,  # type: ignore[arg-type]
        auth_username=source.auth_username,
        has_auth_secret=source.auth_secret is not None,
        instance_label=source.instance_label,
        instance_type_label=source.instance_type_label,
        zone_label=source.zone_label,
        purchase_option_label=source.purchase_option_label,
        step_seconds=source.step_seconds,
        lookback_hours=source.lookback_hours,
        enabled=source.enabled,
        collected_until=source.collected_until,
        last_attempt_at=source.last_attempt_at,
        last_success_at=source.last_success_at,
        last_error=source.last_error,
        consecutive_failures=source.consecutive_failures,
        created_at=source.created_at,
        updated_at=source.updated_at,
    )


def check_base_url(url: str) -> str:
    """The URL without a trailing slash, if OptiInfra may call it; a clear 422 otherwise."""
    if "?" in url:
        raise InvalidInputError("The base URL takes no query string.", details={"field": "base_url"})
    try:
        endpoints.check_url(url)
    except endpoints.UnsafeEndpointError as error:
        raise InvalidInputError(str(error), details={"field": "base_url"}) from error
    return url.rstrip("/")


def create_source(
    session: Session, principal: Principal, payload: source_schemas.PrometheusSourceCreate
) -> source_schemas.PrometheusSource:
    principal.require(Role.CUSTOMER, Role.OPERATOR)
    principal.require_writable()
    customer = customer_repository.customer_to_act_for(session, principal, payload.customer_id)
    base_url = check_base_url(payload.base_url)
    taken = session.scalar(
        select(PrometheusSource.id).where(
            PrometheusSource.customer_id == customer.id, PrometheusSource.name == payload.name
        )
    )
    if taken is not None:
        raise ConflictError(
            "The customer already has a Prometheus source of that name.", details={"name": payload.name}
        )
    source = PrometheusSource(
        customer_id=customer.id,
        **payload.model_dump(exclude={"customer_id", "base_url"}),
        base_url=base_url,
    )
    session.add(source)
    session.flush()
    session.refresh(source)
    _audit(session, principal, source, "created")
    return to_schema(source)


def list_sources(
    session: Session, principal: Principal, filters: source_schemas.PrometheusSourceFilters
) -> Page[source_schemas.PrometheusSource]:
    principal.require(Role.CUSTOMER, Role.OPERATOR)
    return repository.list_sources(session, principal, filters).map(to_schema)


def enabled_source_ids(session: Session, principal: Principal) -> list[uuid.UUID]:
    """Ids of the enabled sources, oldest first: what a collection pass visits (operator)."""
    principal.require(Role.OPERATOR)
    return repository.enabled_source_ids(session)


def get_source(session: Session, principal: Principal, source_id: uuid.UUID) -> source_schemas.PrometheusSource:
    principal.require(Role.CUSTOMER, Role.OPERATOR)
    return to_schema(repository.get_source(session, principal, source_id))


def update_source(
    session: Session, principal: Principal, source_id: uuid.UUID, payload: source_schemas.PrometheusSourceUpdate
) -> source_schemas.PrometheusSource:
    principal.require(Role.CUSTOMER, Role.OPERATOR)
    principal.require_writable()
    source = repository.get_source(session, principal, source_id, for_update=True)
    changes = payload.model_dump(exclude_unset=True)
    for field, value in changes.items():
        if value is None:
            raise InvalidInputError(f"{field} cannot be null.")
        setattr(source, field, value)
    session.flush()
    session.refresh(source)
    _audit(session, principal, source, "updated", changed=sorted(changes))
    return to_schema(source)


def delete_source(session: Session, principal: Principal, source_id: uuid.UUID) -> None:
    """Remove a source; what it collected stays."""
    principal.require(Role.CUSTOMER, Role.OPERATOR)
    principal.require_writable()
    source = repository.get_source(session, principal, source_id, for_update=True)
    _audit(session, principal, source, "deleted")
    session.delete(source)
    session.flush()


def _audit(session: Session, principal: Principal, source: PrometheusSource, what: str, **extra: object) -> None:
    events.record(
        session,
        event_type=f"prometheus_source.{what}",
        actor=principal,
        customer_id=source.customer_id,
        subject={"source_id": str(source.id), "name": source.name},
        after={"base_url": source.base_url, "enabled": source.enabled, **extra},
    )
