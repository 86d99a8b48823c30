"""Agent queries."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from optiinfra.db.queries import paginate, where_given
from optiinfra.errors import NotFoundError
from optiinfra.models import Agent, AgentCapability, AgentStatus, AgentType


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


def list_agents(
    session: Session,
    *,
    agent_type: AgentType | None,
    status: AgentStatus | None,
    cursor: str | None,
    limit: int,
) -> list[Agent]:
    statement = select(Agent)
    statement = where_given(statement, (Agent.type, agent_type), (Agent.status, status))
    statement = paginate(statement, created_column=Agent.created_at, id_column=Agent.id, cursor=cursor, limit=limit)
    return list(session.scalars(statement))


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
