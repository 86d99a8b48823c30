"""Agent queries."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import delete, func, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

from optiinfra.agents.schemas import AgentFilters
from optiinfra.db.queries import list_page
from optiinfra.errors import InvalidInputError, NotFoundError
from optiinfra.models import Agent, AgentCapability, AgentCustomer, AgentStatus, AgentType
from optiinfra.pagination import Page


def get_agent(session: Session, agent_id: uuid.UUID, *, for_update: bool = False) -> Agent:
    statement = select(Agent).where(Agent.id == agent_id)
    if for_update:
        statement = statement.with_for_update().execution_options(populate_existing=True)
    agent = session.scalar(statement)
    if agent is None:
        raise NotFoundError("No such agent.", details={"agent_id": str(agent_id)})
    return agent


def find_by_type_and_name(session: Session, agent_type: AgentType, name: str, *, for_update: bool) -> Agent | None:
    statement = select(Agent).where(Agent.type == agent_type, Agent.name == name)
    if for_update:
        statement = statement.with_for_update().execution_options(populate_existing=True)
    return session.scalar(statement)


def ids_named(session: Session, name: str) -> list[uuid.UUID]:
    """Ids of the agents with this name (one per agent type at most), oldest first."""
    return list(session.scalars(select(Agent.id).where(Agent.name == name).order_by(Agent.created_at, Agent.id)))


def list_agents(session: Session, filters: AgentFilters) -> Page[Agent]:
    """Agents are not tenant rows (the service shows each agent's customers as far as the caller may know them)."""
    return list_page(session, Agent, filters, principal=None)


def overdue_agents(session: Session, now: datetime, intervals: int) -> list[Agent]:
    """Agents, locked, whose last heartbeat is more than `intervals` intervals old and not yet failed or stopped.

    SKIP LOCKED: an agent being updated by its own heartbeat, or by another server's sweep, is left alone.
    """
    cutoff = now - func.make_interval(0, 0, 0, 0, 0, 0, Agent.heartbeat_interval_seconds * intervals)
    statement = (
        select(Agent)
        .where(
            Agent.last_heartbeat < cutoff,
            Agent.status.not_in([AgentStatus.FAILED, AgentStatus.STOPPED]),
        )
        .with_for_update(skip_locked=True)
    )
    return list(session.scalars(statement))


def replace_capabilities(session: Session, agent_id: uuid.UUID, names: list[str]) -> None:
    """Make agent_capabilities hold exactly `names` for the agent, keeping rows (and settings) that stay."""
    session.execute(
        delete(AgentCapability).where(
            AgentCapability.agent_id == agent_id, AgentCapability.capability_name.not_in(names)
        )
    )
    existing = set(session.scalars(select(AgentCapability.capability_name).where(AgentCapability.agent_id == agent_id)))
    for name in names:
        if name not in existing:
            session.add(AgentCapability(agent_id=agent_id, capability_name=name))


# --- assignments to customers ------------------------------------------------------------------------------------


def assign(session: Session, agent_id: uuid.UUID, customer_id: uuid.UUID) -> bool:
    """Assign the agent to the customer; False when it already was (nothing changes)."""
    inserted = session.execute(
        insert(AgentCustomer)
        .values(agent_id=agent_id, customer_id=customer_id)
        .on_conflict_do_nothing(constraint="uq_agent_customer")
        .returning(AgentCustomer.id)
    ).scalar_one_or_none()
    return inserted is not None


def unassign(session: Session, agent_id: uuid.UUID, customer_id: uuid.UUID) -> bool:
    """Remove the assignment; False when there was none."""
    removed = session.execute(
        delete(AgentCustomer)
        .where(AgentCustomer.agent_id == agent_id, AgentCustomer.customer_id == customer_id)
        .returning(AgentCustomer.id)
    ).scalar_one_or_none()
    return removed is not None


def customer_ids_of(session: Session, agent_ids: list[uuid.UUID]) -> dict[uuid.UUID, list[uuid.UUID]]:
    """The customers each agent is assigned to, oldest assignment first (one query for a whole page of agents)."""
    assigned: dict[uuid.UUID, list[uuid.UUID]] = {agent_id: [] for agent_id in agent_ids}
    rows = session.execute(
        select(AgentCustomer.agent_id, AgentCustomer.customer_id)
        .where(AgentCustomer.agent_id.in_(agent_ids))
        .order_by(AgentCustomer.created_at, AgentCustomer.customer_id)
    )
    for agent_id, customer_id in rows:
        assigned[agent_id].append(customer_id)
    return assigned


def serves(session: Session, agent_id: uuid.UUID, customer_id: uuid.UUID) -> bool:
    return (
        session.scalar(
            select(AgentCustomer.id).where(AgentCustomer.agent_id == agent_id, AgentCustomer.customer_id == customer_id)
        )
        is not None
    )


def get_agent_serving(session: Session, agent_id: uuid.UUID, customer_id: uuid.UUID) -> Agent:
    """The agent an operator or customer names to attribute work for a customer to: it must serve that customer.

    404 for an unknown agent, 422 for one that is not assigned to the customer.
    """
    agent = get_agent(session, agent_id)
    if not serves(session, agent_id, customer_id):
        raise InvalidInputError(
            f"The agent {agent.name} does not serve this customer; the operator assigns it first "
            f"(POST /api/v1/agents/{agent_id}/customers).",
            details={"agent_id": str(agent_id), "customer_id": str(customer_id)},
        )
    return agent
