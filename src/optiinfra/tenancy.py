"""Tenancy lives here: who may act for which customer, and the scope every query on tenant rows goes through.

- The operator acts for every customer.
- A customer acts for itself.
- An agent acts only for the customers assigned to it (`agent_customers`, managed by the operator). The assignment
  is read by the query itself (a subquery), never cached in the caller, so an unassignment takes effect at the
  next statement, also for a workflow that is already running as the agent.

Rows outside the scope look exactly like rows that do not exist: the callers answer 404 either way.
"""

from __future__ import annotations

import uuid
from typing import Any, TypeVar

from sqlalchemy import ColumnElement, Select, false, or_, select, true
from sqlalchemy.orm import InstrumentedAttribute

from optiinfra.auth.principal import Principal, Role
from optiinfra.models import AgentCustomer

S = TypeVar("S", bound=Select[Any])


def customers_of_agent(agent_id: uuid.UUID | None) -> Select[Any]:
    """The ids of the customers an agent is assigned to, as a subquery."""
    return select(AgentCustomer.customer_id).where(AgentCustomer.agent_id == agent_id)


def agents_serving(customer_id: uuid.UUID) -> Select[Any]:
    """The ids of the agents assigned to a customer, as a subquery."""
    return select(AgentCustomer.agent_id).where(AgentCustomer.customer_id == customer_id)


def acts_for(principal: Principal, customer_column: Any) -> ColumnElement[bool]:
    """SQL condition: the caller may act for the customer in `customer_column`."""
    if principal.role is Role.OPERATOR:
        return true()
    if principal.role is Role.CUSTOMER:
        return customer_column == principal.customer_id  # type: ignore[no-any-return]
    return customer_column.in_(customers_of_agent(principal.agent_id))  # type: ignore[no-any-return]


def scope_to_caller(
    statement: S,
    principal: Principal,
    *,
    customer_column: InstrumentedAttribute[Any],
    agent_column: InstrumentedAttribute[Any] | None = None,
) -> S:
    """Restrict `statement` to the rows the caller may see.

    The operator sees everything; a customer sees its own rows; an agent sees the rows it wrote for the customers
    assigned to it, and its own platform rows (no customer), or nothing when the table has no agent column.
    """
    if principal.role is Role.OPERATOR:
        return statement
    if principal.role is Role.CUSTOMER:
        return statement.where(customer_column == principal.customer_id)
    if agent_column is None:
        return statement.where(false())
    return statement.where(
        agent_column == principal.agent_id,
        or_(customer_column.is_(None), acts_for(principal, customer_column)),
    )
