"""Tenancy lives here: every query on tenant-owned rows goes through `scope_to_caller`."""

from __future__ import annotations

from typing import Any, TypeVar

from sqlalchemy import Select, false
from sqlalchemy.orm import InstrumentedAttribute

from optiinfra.auth.principal import Principal, Role

S = TypeVar("S", bound=Select[Any])


def scope_to_caller(
    statement: S,
    principal: Principal,
    *,
    customer_column: InstrumentedAttribute[Any],
    agent_column: InstrumentedAttribute[Any] | None = None,
) -> S:
    """Restrict `statement` to the rows the caller may see.

    The operator sees everything; a customer sees its own rows; an agent sees the rows it wrote (or nothing when
    the table has no agent column). Rows outside the scope look exactly like rows that do not exist.
    """
    if principal.role is Role.OPERATOR:
        return statement
    if principal.role is Role.CUSTOMER:
        return statement.where(customer_column == principal.customer_id)
    if agent_column is None:
        return statement.where(false())
    return statement.where(agent_column == principal.agent_id)
