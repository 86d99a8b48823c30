"""Agent state queries: configs, the one state row per agent, lock holders, capabilities, and the metrics COPY."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any, NamedTuple

from sqlalchemy import func, select, text
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

from optiinfra.agent_state.schemas import AgentMetricQuery
from optiinfra.db.bulk import copy_rows
from optiinfra.db.queries import where_filters
from optiinfra.models import Agent, AgentCapability, AgentConfig, AgentMetric, AgentState, WorkflowExecution
from optiinfra.tenancy import customers_of_agent
from optiinfra.timeseries import Bucketing, bucket_start

# --- configs ---------------------------------------------------------------------------------------------------


def list_configs(session: Session, agent_id: uuid.UUID) -> list[AgentConfig]:
    return list(
        session.scalars(select(AgentConfig).where(AgentConfig.agent_id == agent_id).order_by(AgentConfig.config_key))
    )


def get_config_for_update(session: Session, agent_id: uuid.UUID, key: str) -> AgentConfig | None:
    return session.scalar(
        select(AgentConfig)
        .where(AgentConfig.agent_id == agent_id, AgentConfig.config_key == key)
        .with_for_update()
        .execution_options(populate_existing=True)
    )


# --- state -----------------------------------------------------------------------------------------------------


def state_for_update(session: Session, agent_id: uuid.UUID) -> AgentState:
    """The agent's state row, created with defaults on first use, locked for this transaction."""
    # INSERT ... ON CONFLICT DO NOTHING: two first uses at once create one row, and neither fails.
    session.execute(insert(AgentState).values(agent_id=agent_id).on_conflict_do_nothing(index_elements=["agent_id"]))
    return session.scalars(
        select(AgentState)
        .where(AgentState.agent_id == agent_id)
        .with_for_update()
        .execution_options(populate_existing=True)
    ).one()


def get_state(session: Session, agent_id: uuid.UUID) -> AgentState:
    """The agent's state row, created with defaults on first use."""
    session.execute(insert(AgentState).values(agent_id=agent_id).on_conflict_do_nothing(index_elements=["agent_id"]))
    return session.scalars(select(AgentState).where(AgentState.agent_id == agent_id)).one()


def workflow_ids_of_agent(session: Session, agent_id: uuid.UUID, workflow_ids: Sequence[uuid.UUID]) -> set[uuid.UUID]:
    """Which of these workflow executions exist and are run by the agent, for a customer it still serves."""
    if not workflow_ids:
        return set()
    rows = session.scalars(
        select(WorkflowExecution.id).where(
            WorkflowExecution.agent_id == agent_id,
            WorkflowExecution.id.in_(list(workflow_ids)),
            WorkflowExecution.customer_id.in_(customers_of_agent(agent_id)),
        )
    )
    return set(rows)


# --- locks -----------------------------------------------------------------------------------------------------


def serialize_lock(session: Session, resource: str) -> None:
    """Wait for, then hold until commit, the advisory lock of `resource`: acquisitions of one resource run one at a
    time, so two agents can never both find it free."""
    session.execute(
        text("SELECT pg_advisory_xact_lock(hashtextextended('lock:' || :resource, 0))"), {"resource": resource}
    )


def lock_rows_for_acquisition(
    session: Session, agent_id: uuid.UUID, resource: str
) -> tuple[AgentState, list[tuple[AgentState, Agent]]]:
    """The acquiring agent's state row and those of the other agents listing `resource` among their locks (with
    those agents), all locked for this transaction.

    One statement locks them all, in agent id order, so two acquisitions touching the same rows wait for each other
    instead of deadlocking.
    """
    session.execute(insert(AgentState).values(agent_id=agent_id).on_conflict_do_nothing(index_elements=["agent_id"]))
    rows = session.execute(
        select(AgentState, Agent)
        .join(Agent, Agent.id == AgentState.agent_id)
        .where((AgentState.agent_id == agent_id) | AgentState.locks.has_key(resource))
        .order_by(AgentState.agent_id)
        .with_for_update(of=AgentState)
        .execution_options(populate_existing=True)
    )
    own: AgentState | None = None
    holders: list[tuple[AgentState, Agent]] = []
    for state, agent in rows:
        if state.agent_id == agent_id:
            own = state
        if resource in state.locks:
            holders.append((state, agent))
    assert own is not None
    return own, holders


def held_locks(session: Session) -> list[tuple[AgentState, Agent]]:
    """Every state row holding at least one lock, with its agent."""
    rows = session.execute(
        select(AgentState, Agent)
        .join(Agent, Agent.id == AgentState.agent_id)
        .where(AgentState.locks != text("'{}'::jsonb"))
        .order_by(Agent.name, Agent.id)
    )
    return [(row[0], row[1]) for row in rows]


# --- capabilities ----------------------------------------------------------------------------------------------


def list_capabilities(session: Session, agent_id: uuid.UUID) -> list[AgentCapability]:
    return list(
        session.scalars(
            select(AgentCapability)
            .where(AgentCapability.agent_id == agent_id)
            .order_by(AgentCapability.capability_name)
        )
    )


def get_capability_for_update(session: Session, agent_id: uuid.UUID, name: str) -> AgentCapability | None:
    return session.scalar(
        select(AgentCapability)
        .where(AgentCapability.agent_id == agent_id, AgentCapability.capability_name == name)
        .with_for_update()
        .execution_options(populate_existing=True)
    )


# --- metrics ---------------------------------------------------------------------------------------------------


class AgentMetricRow(NamedTuple):
    """One agent_metrics row as the COPY sends it."""

    agent_id: uuid.UUID
    metric_name: str
    metric_value: float
    metric_type: str
    tags: dict[str, Any]
    recorded_at: datetime


METRIC_COLUMNS = AgentMetricRow._fields


def copy_metrics(session: Session, rows: Sequence[tuple[Any, ...]]) -> int:
    """COPY rows (`AgentMetricRow`s, or tuples in METRIC_COLUMNS order) into agent_metrics, inside the session's
    transaction."""
    return copy_rows(session, "agent_metrics", METRIC_COLUMNS, rows, json_columns={"tags"})


def metric_buckets(
    session: Session, agent_id: uuid.UUID, query: AgentMetricQuery, window: Bucketing, limit: int
) -> list[tuple[str, datetime, float, float, float, int]]:
    """avg / min / max / count per (metric name, bucket) of the agent's samples in [start, end); at most `limit`
    rows."""
    in_window = select(
        AgentMetric.metric_name,
        bucket_start(AgentMetric.recorded_at, window.seconds).label("bucket_start"),
        AgentMetric.metric_value,
    ).where(
        AgentMetric.agent_id == agent_id,
        AgentMetric.recorded_at >= window.start,
        AgentMetric.recorded_at < window.end,
    )
    samples = where_filters(in_window, AgentMetric, query).subquery()
    statement = (
        select(
            samples.c.metric_name,
            samples.c.bucket_start,
            func.avg(samples.c.metric_value),
            func.min(samples.c.metric_value),
            func.max(samples.c.metric_value),
            func.count(),
        )
        .group_by(samples.c.metric_name, samples.c.bucket_start)
        .order_by(samples.c.metric_name, samples.c.bucket_start)
        .limit(limit)
    )
    return [(row[0], row[1], row[2], row[3], row[4], row[5]) for row in session.execute(statement)]
