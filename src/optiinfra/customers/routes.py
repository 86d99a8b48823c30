"""/api/v1/customers"""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Query

from optiinfra.api.deps import PrincipalDep, SessionDep
from optiinfra.api.pagination import Page
from optiinfra.api.strict import StrictRoute
from optiinfra.customers import schemas, service

router = APIRouter(prefix="/customers", tags=["customers"], route_class=StrictRoute)


@router.post("", status_code=201, response_model=schemas.CustomerWithKey)
def create_customer(
    payload: schemas.CustomerCreate, session: SessionDep, principal: PrincipalDep
) -> schemas.CustomerWithKey:
    """Create a tenant (operator). The response carries its API key: the only time it is shown."""
    return service.create_customer(session, principal, payload)


@router.get("", response_model=Page[schemas.Customer])
def list_customers(
    session: SessionDep, principal: PrincipalDep, filters: Annotated[schemas.CustomerFilters, Query()]
) -> Page[schemas.Customer]:
    """All tenants, newest first (operator)."""
    return service.list_customers(session, principal, filters)


@router.get("/me", response_model=schemas.Customer)
def get_me(session: SessionDep, principal: PrincipalDep) -> schemas.Customer:
    """The calling customer."""
    return service.get_me(session, principal)


@router.get("/{customer_id}", response_model=schemas.Customer)
def get_customer(customer_id: uuid.UUID, session: SessionDep, principal: PrincipalDep) -> schemas.Customer:
    return service.get_customer(session, principal, customer_id)


@router.patch("/{customer_id}", response_model=schemas.Customer)
def update_customer(
    customer_id: uuid.UUID, payload: schemas.CustomerUpdate, session: SessionDep, principal: PrincipalDep
) -> schemas.Customer:
    """Change name, plan, status or metadata (operator)."""
    return service.update_customer(session, principal, customer_id, payload)


@router.post("/{customer_id}/rotate-key", response_model=schemas.CustomerWithKey)
def rotate_key(customer_id: uuid.UUID, session: SessionDep, principal: PrincipalDep) -> schemas.CustomerWithKey:
    """Issue a new key (operator, or the customer itself); the old key stops working at once."""
    return service.rotate_key(session, principal, customer_id)
