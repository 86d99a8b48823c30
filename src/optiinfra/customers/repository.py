"""Customer queries."""

from __future__ import annotations

import uuid

from sqlalchemy import select
from sqlalchemy.orm import Session

from optiinfra.auth.principal import Principal, Role
from optiinfra.customers.schemas import CustomerFilters
from optiinfra.db.queries import get_row, list_page
from optiinfra.errors import InvalidInputError, NotFoundError
from optiinfra.models import Customer
from optiinfra.pagination import Page
from optiinfra.tenancy import acts_for, scope_to_caller


def get_customer(
    session: Session, principal: Principal, customer_id: uuid.UUID, *, for_update: bool = False
) -> Customer:
    return get_row(
        session,
        Customer,
        customer_id,
        principal,
        "customer",
        "customer_id",
        customer_column=Customer.id,
        for_update=for_update,
    )


def customer_to_act_for(
    session: Session, principal: Principal, customer_id: uuid.UUID | None, *, for_update: bool = False
) -> Customer:
    """The customer a call acts for: a customer's own (it may leave the id out), any customer for the operator, a
    customer assigned to the calling agent. Any other id is 404, exactly as for an id nobody has."""
    if principal.role is Role.CUSTOMER:
        if customer_id is not None and customer_id != principal.customer_id:
            raise NotFoundError("No such customer.", details={"customer_id": str(customer_id)})
        customer_id = principal.customer_id
    if customer_id is None:
        raise InvalidInputError("Name the customer: customer_id is required for operator and agent keys.")
    statement = select(Customer).where(Customer.id == customer_id, acts_for(principal, Customer.id))
    if for_update:
        statement = statement.with_for_update().execution_options(populate_existing=True)
    customer = session.scalar(statement)
    if customer is None:
        raise NotFoundError("No such customer.", details={"customer_id": str(customer_id)})
    return customer


def email_taken(session: Session, email: str) -> bool:
    return session.scalar(select(Customer.id).where(Customer.email == email)) is not None


def id_by_email(session: Session, principal: Principal, email: str) -> uuid.UUID | None:
    """The id of the customer with this e-mail address, if the caller may see it."""
    statement = select(Customer.id).where(Customer.email == email)
    return session.scalar(scope_to_caller(statement, principal, customer_column=Customer.id))


def emails_of(session: Session, principal: Principal, customer_ids: list[uuid.UUID]) -> dict[uuid.UUID, str]:
    """E-mail addresses by customer id, of the customers the caller may see."""
    statement = select(Customer).where(Customer.id.in_(customer_ids))
    customers = session.scalars(scope_to_caller(statement, principal, customer_column=Customer.id))
    return {customer.id: customer.email for customer in customers}


def list_customers(session: Session, principal: Principal, filters: CustomerFilters) -> Page[Customer]:
    return list_page(session, Customer, filters, principal=principal, customer_column=Customer.id)
