"""/api/v1/agents"""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Query

from optiinfra.agents import schemas, service
from optiinfra.api.deps import PrincipalDep, SessionDep
from optiinfra.api.pagination import Page
from optiinfra.api.strict import StrictRoute

router = APIRouter(prefix="/agents", tags=["agents"], route_class=StrictRoute)


@router.post("", response_model=schemas.AgentRegistered)
def register_agent(
    payload: schemas.AgentRegister, session: SessionDep, principal: PrincipalDep
) -> schemas.AgentRegistered:
    """Register an agent (operator), or re-register itself (agent). Idempotent on type + name; the API key is
    returned only when the agent is created."""
    return service.register_agent(session, principal, payload)


@router.get("", response_model=Page[schemas.Agent])
def list_agents(
    session: SessionDep, principal: PrincipalDep, filters: Annotated[schemas.AgentFilters, Query()]
) -> Page[schemas.Agent]:
    return service.list_agents(session, principal, filters)


@router.get("/{agent_id}", response_model=schemas.Agent)
def get_agent(agent_id: uuid.UUID, session: SessionDep, principal: PrincipalDep) -> schemas.Agent:
    return service.get_agent(session, principal, agent_id)


@router.post("/{agent_id}/heartbeat", response_model=schemas.Agent)
def heartbeat(
    agent_id: uuid.UUID, payload: schemas.Heartbeat, session: SessionDep, principal: PrincipalDep
) -> schemas.Agent:
    """The agent reports it is alive, with its status and optional metadata (agent itself)."""
    return service.heartbeat(session, principal, agent_id, payload)


@router.post("/{agent_id}/rotate-key", response_model=schemas.AgentRegistered)
def rotate_agent_key(agent_id: uuid.UUID, session: SessionDep, principal: PrincipalDep) -> schemas.AgentRegistered:
    """Issue a new key for the agent (operator); the old key stops working at once."""
    return service.rotate_agent_key(session, principal, agent_id)


@router.post("/{agent_id}/customers", response_model=schemas.Agent)
def assign_customer(
    agent_id: uuid.UUID, payload: schemas.CustomerAssignment, session: SessionDep, principal: PrincipalDep
) -> schemas.Agent:
    """Assign the agent to a customer it serves (operator); idempotent. An agent acts only for its customers."""
    return service.assign_customer(session, principal, agent_id, payload)


@router.delete("/{agent_id}/customers/{customer_id}", response_model=schemas.Agent)
def unassign_customer(
    agent_id: uuid.UUID, customer_id: uuid.UUID, session: SessionDep, principal: PrincipalDep
) -> schemas.Agent:
    """Take a customer away from the agent (operator); 404 when the agent is not assigned to it."""
    return service.unassign_customer(session, principal, agent_id, customer_id)
