"""Customer rules: only the operator creates and manages tenants; keys are shown once."""

from __future__ import annotations

import uuid

from sqlalchemy.orm import Session

from optiinfra.auth.keys import generate_key, key_digest
from optiinfra.auth.principal import Principal, Role
from optiinfra.customers import repository
from optiinfra.customers import schemas as customer_schemas
from optiinfra.errors import ConflictError, NotFoundError
from optiinfra.events import service as events
from optiinfra.models import Customer, CustomerStatus, EventSeverity
from optiinfra.pagination import Page


def _snapshot(customer: Customer) -> dict[str, str]:
    return {"name": customer.name, "plan": str(customer.plan), "status": str(customer.status)}


def create_customer(
    session: Session, principal: Principal, payload: customer_schemas.CustomerCreate
) -> customer_schemas.CustomerWithKey:
    principal.require(Role.OPERATOR)
    email = str(payload.email).lower()
    if repository.email_taken(session, email):
        raise ConflictError("A customer with this email already exists.", details={"email": email})
    key = generate_key(Role.CUSTOMER)
    customer = Customer(
        name=payload.name, email=email, plan=payload.plan, api_key=key_digest(key), metadata_=payload.metadata
    )
    session.add(customer)
    session.flush()
    events.record(
        session,
        event_type="customer.created",
        actor=principal,
        customer_id=customer.id,
        subject={"customer_id": str(customer.id)},
        after=_snapshot(customer),
    )
    return customer_schemas.CustomerWithKey.model_validate({**_as_dict(customer), "api_key": key})


def _as_dict(customer: Customer) -> dict[str, object]:
    return customer_schemas.Customer.model_validate(customer).model_dump()


def get_customer(session: Session, principal: Principal, customer_id: uuid.UUID) -> customer_schemas.Customer:
    return customer_schemas.Customer.model_validate(repository.get_customer(session, principal, customer_id))


def get_me(session: Session, principal: Principal) -> customer_schemas.Customer:
    principal.require(Role.CUSTOMER)
    assert principal.customer_id is not None
    return get_customer(session, principal, principal.customer_id)


def list_customers(
    session: Session, principal: Principal, filters: customer_schemas.CustomerFilters
) -> Page[customer_schemas.Customer]:
    principal.require(Role.OPERATOR)
    return repository.list_customers(session, principal, filters).map(customer_schemas.Customer.model_validate)


def customer_id_by_email(session: Session, principal: Principal, email: str) -> uuid.UUID:
    """The customer with this e-mail address (404 when the caller may see none)."""
    principal.require(Role.OPERATOR)
    found = repository.id_by_email(session, principal, email.strip().lower())
    if found is None:
        raise NotFoundError(
            f"No customer with e-mail {email!r}.", fix="Customers are created through the API (POST /customers)."
        )
    return found


def customer_emails(session: Session, principal: Principal, customer_ids: list[uuid.UUID]) -> dict[uuid.UUID, str]:
    """E-mail addresses by id, for the customers the caller may see."""
    principal.require(Role.OPERATOR)
    return repository.emails_of(session, principal, customer_ids)


def update_customer(
    session: Session, principal: Principal, customer_id: uuid.UUID, payload: customer_schemas.CustomerUpdate
) -> customer_schemas.Customer:
    principal.require(Role.OPERATOR)
    customer = repository.get_customer(session, principal, customer_id, for_update=True)
    before = _snapshot(customer)
    changes = payload.model_dump(exclude_unset=True, exclude_none=True)
    if "metadata" in changes:
        customer.metadata_ = changes.pop("metadata")
    for field, value in changes.items():
        setattr(customer, field, value)
    session.flush()
    after = _snapshot(customer)
    if before != after or "metadata" in payload.model_fields_set:
        events.record(
            session,
            event_type="customer.updated",
            actor=principal,
            customer_id=customer.id,
            severity=EventSeverity.WARNING if customer.status is not CustomerStatus.ACTIVE else EventSeverity.INFO,
            subject={"customer_id": str(customer.id)},
            before=before,
            after=after,
        )
    return customer_schemas.Customer.model_validate(customer)


def rotate_key(session: Session, principal: Principal, customer_id: uuid.UUID) -> customer_schemas.CustomerWithKey:
    """A new key for the customer; the old one stops working at once. The operator or the customer may rotate."""
    principal.require(Role.OPERATOR, Role.CUSTOMER)
    principal.require_writable()
    customer = repository.get_customer(session, principal, customer_id, for_update=True)
    key = generate_key(Role.CUSTOMER)
    customer.api_key = key_digest(key)
    session.flush()
    events.record(
        session,
        event_type="customer.key_rotated",
        actor=principal,
        customer_id=customer.id,
        severity=EventSeverity.WARNING,
        subject={"customer_id": str(customer.id)},
    )
    return customer_schemas.CustomerWithKey.model_validate({**_as_dict(customer), "api_key": key})
