"""Agent state rules: who may read and change an agent's configs, state, locks, capabilities and metrics.

The operator may act on any agent; an agent acts on itself only (another agent's id is refused with 403 before
anything is looked up, so the answer does not depend on whether that agent exists). Customers have no business
here: agents are platform components that serve many tenants.

Locks. A lock is a named resource (a GPU cluster, a node pool) that one agent at a time may act on. It is kept in
the holder's state row, `agent_states.locks[resource]`. Acquisitions of one resource are serialized by a
transaction-scoped advisory lock on the resource name, so of two agents asking at once one gets it and the other
waits, then sees the holder and is refused with 409. Locks expire with their holder's health: a lock whose holder
is failed or stopped (as recorded by the health sweep, or as its heartbeat age already implies) is free, and the
next agent to ask takes it over (`agent.lock_expired`, then `agent.lock_acquired`).
"""

from __future__ import annotations

import math
import re
import uuid
from datetime import UTC, datetime
from typing import Any

import orjson
from sqlalchemy.orm import Session

from optiinfra.agent_state import repository
from optiinfra.agent_state import schemas as state_schemas
from optiinfra.agents import health
from optiinfra.agents import repository as agent_repository
from optiinfra.auth.principal import Principal, Role
from optiinfra.errors import ConflictError, ForbiddenError, InvalidInputError, NotFoundError
from optiinfra.events import service as events
from optiinfra.models import Agent, AgentConfig, AgentState, AgentStatus, ConfigType, EventSeverity
from optiinfra.timeseries import MAX_BUCKETS, bucketing, refuse_too_many_buckets, validate_batch

# A lock held by an agent in one of these states is free for the taking.
EXPIRED_HOLDER_STATUSES = frozenset({AgentStatus.FAILED, AgentStatus.STOPPED})

_INTEGER = re.compile(r"[+-]?[0-9]+")
_FLOAT = re.compile(r"[+-]?([0-9]+(\.[0-9]*)?|\.[0-9]+)([eE][+-]?[0-9]+)?")
INTEGER_RANGE = (-(2**63), 2**63 - 1)


def _now() -> datetime:
    return datetime.now(UTC)


def _require_self_or_operator(principal: Principal, agent_id: uuid.UUID, what: str) -> None:
    principal.require(Role.OPERATOR, Role.AGENT)
    if principal.role is Role.AGENT and principal.agent_id != agent_id:
        raise ForbiddenError(f"An agent may only {what} of its own.")


def _require_self(principal: Principal, agent_id: uuid.UUID, what: str) -> None:
    principal.require(Role.AGENT)
    if principal.agent_id != agent_id:
        raise ForbiddenError(f"An agent may only {what} for itself.")


# --- configs ---------------------------------------------------------------------------------------------------


def parse_config_value(value: str, config_type: ConfigType) -> Any:
    """The value as its type; ValueError with the reason when the text is not a value of that type.

    integer: decimal digits with an optional sign, within 64 bits; float: a finite decimal number (exponent
    allowed, no NaN or Infinity); boolean: exactly `true` or `false`; json: any JSON document; string: any text.
    """
    if config_type is ConfigType.INTEGER:
        if not _INTEGER.fullmatch(value):
            raise ValueError("is not an integer (digits with an optional sign)")
        number = int(value)
        if not INTEGER_RANGE[0] <= number <= INTEGER_RANGE[1]:
            raise ValueError("is outside the 64-bit integer range")
        return number
    if config_type is ConfigType.FLOAT:
        if not _FLOAT.fullmatch(value):
            raise ValueError("is not a decimal number")
        real = float(value)
        if not math.isfinite(real):
            raise ValueError("is too large to be a finite number")
        return real
    if config_type is ConfigType.BOOLEAN:
        if value not in ("true", "false"):
            raise ValueError("is not a boolean (write true or false)")
        return value == "true"
    if config_type is ConfigType.JSON:
        try:
            return orjson.loads(value)
        except orjson.JSONDecodeError as error:
            raise ValueError(f"is not valid JSON ({error})") from error
    return value


def _config_out(config: AgentConfig) -> state_schemas.AgentConfig:
    return state_schemas.AgentConfig(
        agent_id=config.agent_id,
        key=config.config_key,
        value=config.config_value,
        config_type=config.config_type,
        parsed_value=parse_config_value(config.config_value, config.config_type),
        description=config.description,
        created_at=config.created_at,
        updated_at=config.updated_at,
    )


def _config_snapshot(config: AgentConfig) -> dict[str, Any]:
    return {"value": config.config_value, "config_type": str(config.config_type), "description": config.description}


def list_configs(session: Session, principal: Principal, agent_id: uuid.UUID) -> list[state_schemas.AgentConfig]:
    _require_self_or_operator(principal, agent_id, "read the configuration")
    agent_repository.get_agent(session, agent_id)
    return [_config_out(config) for config in repository.list_configs(session, agent_id)]


def set_config(
    session: Session, principal: Principal, agent_id: uuid.UUID, key: str, payload: state_schemas.AgentConfigSet
) -> state_schemas.AgentConfig:
    """Create or replace one config value, validated against its type; a change writes `agent.config_changed` with
    the old and the new value."""
    _require_self_or_operator(principal, agent_id, "change the configuration")
    try:
        parse_config_value(payload.value, payload.config_type)
    except ValueError as error:
        message = f"The value {error} ({payload.config_type})."
        raise InvalidInputError(
            message,
            details={"problems": [{"location": ["body", "value"], "message": message, "type": "config_value"}]},
        ) from error
    agent = agent_repository.get_agent(session, agent_id, for_update=True)
    config = repository.get_config_for_update(session, agent_id, key)
    before = None if config is None else _config_snapshot(config)
    if config is None:
        config = AgentConfig(agent_id=agent_id, config_key=key)
        session.add(config)
    config.config_value = payload.value
    config.config_type = payload.config_type
    config.description = payload.description
    after = _config_snapshot(config)
    session.flush()
    if before != after:
        events.record(
            session,
            event_type="agent.config_changed",
            actor=principal,
            customer_id=None,
            agent_id=agent.id,
            subject={"agent_id": str(agent.id), "config_key": key},
            before=before,
            after=after,
        )
    session.refresh(config)
    return _config_out(config)


# --- state -----------------------------------------------------------------------------------------------------


def get_state(session: Session, principal: Principal, agent_id: uuid.UUID) -> state_schemas.AgentState:
    _require_self_or_operator(principal, agent_id, "read the state")
    agent_repository.get_agent(session, agent_id)
    return state_schemas.AgentState.model_validate(repository.get_state(session, agent_id))


def _state_snapshot(state: AgentState) -> dict[str, Any]:
    return {
        "current_status": str(state.current_status),
        "active_workflows": list(state.active_workflows),
        "current_workflow_id": str(state.current_workflow_id) if state.current_workflow_id else None,
    }


def update_state(
    session: Session, principal: Principal, agent_id: uuid.UUID, payload: state_schemas.AgentStateUpdate
) -> state_schemas.AgentState:
    """Apply what the agent (or the workflow runner) reports and mark the agent active now.

    A change of status or of the workflows it runs writes `agent.state_changed`; resource usage and metadata are
    telemetry, like heartbeat metadata, and are stored without an event.
    """
    _require_self_or_operator(principal, agent_id, "update the state")
    agent = agent_repository.get_agent(session, agent_id)
    named = set(payload.active_workflows or [])
    if payload.current_workflow_id is not None:
        named.add(payload.current_workflow_id)
    unknown = named - repository.workflow_ids_of_agent(session, agent_id, list(named))
    if unknown:
        raise InvalidInputError(
            "These workflow executions do not exist or are not run by this agent for a customer it serves.",
            details={"workflow_execution_ids": sorted(str(workflow_id) for workflow_id in unknown)},
        )
    state = repository.state_for_update(session, agent_id)
    before = _state_snapshot(state)
    if payload.current_status is not None:
        state.current_status = payload.current_status
    if payload.active_workflows is not None:
        state.active_workflows = [str(workflow_id) for workflow_id in dict.fromkeys(payload.active_workflows)]
    if "current_workflow_id" in payload.model_fields_set:
        state.current_workflow_id = payload.current_workflow_id
    if payload.resource_usage is not None:
        state.resource_usage = payload.resource_usage
    if payload.metadata:
        state.metadata_ = {**(state.metadata_ or {}), **payload.metadata}
    state.last_activity = _now()
    session.flush()
    after = _state_snapshot(state)
    if before != after:
        events.record(
            session,
            event_type="agent.state_changed",
            actor=principal,
            customer_id=None,
            agent_id=agent.id,
            subject={"agent_id": str(agent.id), "name": agent.name},
            before=before,
            after=after,
        )
    session.refresh(state)
    return state_schemas.AgentState.model_validate(state)


# --- locks -----------------------------------------------------------------------------------------------------


def _holder_status(agent: Agent, now: datetime) -> AgentStatus:
    """The holder's health now: as recorded, or as its heartbeat age already implies (the health sweep runs every
    few seconds and may not have caught up)."""
    return health.derived_status(agent, now)


def holder_is_expired(agent: Agent, now: datetime) -> bool:
    """Whether the holder's health lets its locks go: failed or stopped."""
    return agent.status in EXPIRED_HOLDER_STATUSES or _holder_status(agent, now) in EXPIRED_HOLDER_STATUSES


def _lock_out(resource: str, entry: dict[str, Any], holder: Agent, now: datetime) -> state_schemas.Lock:
    return state_schemas.Lock(
        resource=resource,
        agent_id=holder.id,
        agent_name=holder.name,
        acquired_at=datetime.fromisoformat(entry["acquired_at"]),
        purpose=entry.get("purpose"),
        holder_status=_holder_status(holder, now),
        is_expired=holder_is_expired(holder, now),
    )


def _lock_subject(resource: str, agent: Agent) -> dict[str, str]:
    return {"resource": resource, "agent_id": str(agent.id), "agent_name": agent.name}


def acquire_lock(
    session: Session,
    principal: Principal,
    agent_id: uuid.UUID,
    resource: str,
    payload: state_schemas.LockAcquire | None,
) -> state_schemas.Lock:
    """Take the lock on `resource` for the agent (itself only). Asking again for a lock it holds changes nothing;
    a lock another live agent holds is refused with 409 naming the holder; an expired one is taken over."""
    _require_self(principal, agent_id, "acquire locks")
    agent = agent_repository.get_agent(session, agent_id)
    # Held until commit: whoever comes second waits here, then finds the first one's lock below.
    repository.serialize_lock(session, resource)
    state, holders = repository.lock_rows_for_acquisition(session, agent_id, resource)
    now = _now()
    for holder_state, holder in holders:
        entry = holder_state.locks[resource]
        if holder.id == agent_id:
            return _lock_out(resource, entry, holder, now)
        if not holder_is_expired(holder, now):
            raise ConflictError(
                f"The lock on {resource!r} is held by agent {holder.name} ({holder.id}).",
                details={
                    "resource": resource,
                    "holder_agent_id": str(holder.id),
                    "holder_agent_name": holder.name,
                    "holder_status": str(_holder_status(holder, now)),
                    "acquired_at": entry["acquired_at"],
                    "purpose": entry.get("purpose"),
                },
            )
        holder_state.locks = {name: value for name, value in holder_state.locks.items() if name != resource}
        events.record(
            session,
            event_type="agent.lock_expired",
            actor=principal,
            customer_id=None,
            agent_id=holder.id,
            severity=EventSeverity.WARNING,
            subject=_lock_subject(resource, holder),
            before={**entry, "holder_status": str(_holder_status(holder, now))},
            extra={"taken_over_by": str(agent.id)},
        )
    entry = {"agent_id": str(agent.id), "acquired_at": now.isoformat(), "purpose": payload.purpose if payload else None}
    state.locks = {**state.locks, resource: entry}
    state.last_activity = now
    session.flush()
    events.record(
        session,
        event_type="agent.lock_acquired",
        actor=principal,
        customer_id=None,
        agent_id=agent.id,
        subject=_lock_subject(resource, agent),
        after=entry,
    )
    return _lock_out(resource, entry, agent, now)


def release_lock(session: Session, principal: Principal, agent_id: uuid.UUID, resource: str) -> state_schemas.Lock:
    """Release the lock the agent holds on `resource` (the holder itself, or the operator for it); 404 when the
    agent does not hold it."""
    _require_self_or_operator(principal, agent_id, "release the locks")
    agent = agent_repository.get_agent(session, agent_id)
    repository.serialize_lock(session, resource)
    state = repository.state_for_update(session, agent_id)
    entry = state.locks.get(resource)
    if entry is None:
        raise NotFoundError(
            "The agent does not hold this lock.", details={"agent_id": str(agent_id), "resource": resource}
        )
    now = _now()
    released = _lock_out(resource, entry, agent, now)
    state.locks = {name: value for name, value in state.locks.items() if name != resource}
    if principal.role is Role.AGENT:
        state.last_activity = now
    session.flush()
    events.record(
        session,
        event_type="agent.lock_released",
        actor=principal,
        customer_id=None,
        agent_id=agent.id,
        subject=_lock_subject(resource, agent),
        before=entry,
    )
    return released


def list_locks(session: Session, principal: Principal) -> list[state_schemas.Lock]:
    """Every held lock, by holder name then resource (operator and agents)."""
    principal.require(Role.OPERATOR, Role.AGENT)
    now = _now()
    return [
        _lock_out(resource, entry, holder, now)
        for state, holder in repository.held_locks(session)
        for resource, entry in sorted(state.locks.items())
    ]


# --- capabilities ----------------------------------------------------------------------------------------------


def list_capabilities(
    session: Session, principal: Principal, agent_id: uuid.UUID
) -> list[state_schemas.AgentCapability]:
    """The agent's capabilities with their settings; visible to every caller, like the agent itself."""
    agent_repository.get_agent(session, agent_id)
    return [
        state_schemas.AgentCapability.model_validate(row) for row in repository.list_capabilities(session, agent_id)
    ]


def update_capability(
    session: Session,
    principal: Principal,
    agent_id: uuid.UUID,
    name: str,
    payload: state_schemas.AgentCapabilityUpdate,
) -> state_schemas.AgentCapability:
    """Enable, disable, version or configure a capability the agent registered.

    Which capabilities exist is decided by registration alone (`POST /agents`, its `capabilities` list): a name
    that is not registered is 404 here, never created.
    """
    _require_self_or_operator(principal, agent_id, "change the capabilities")
    agent = agent_repository.get_agent(session, agent_id)
    capability = repository.get_capability_for_update(session, agent_id, name)
    if capability is None:
        raise NotFoundError(
            "The agent has no such capability; capabilities come from its registration.",
            details={"agent_id": str(agent_id), "capability_name": name},
        )
    before = state_schemas.AgentCapability.model_validate(capability).model_dump(
        mode="json", include={"enabled", "capability_version", "config", "description"}
    )
    if payload.enabled is not None:
        capability.enabled = payload.enabled
    if payload.capability_version is not None:
        capability.capability_version = payload.capability_version
    if payload.config is not None:
        capability.config = payload.config
    if "description" in payload.model_fields_set:
        capability.description = payload.description
    session.flush()
    session.refresh(capability)
    result = state_schemas.AgentCapability.model_validate(capability)
    after = result.model_dump(mode="json", include={"enabled", "capability_version", "config", "description"})
    if before != after:
        events.record(
            session,
            event_type="agent.capability_changed",
            actor=principal,
            customer_id=None,
            agent_id=agent.id,
            subject={"agent_id": str(agent.id), "capability_name": name},
            before=before,
            after=after,
        )
    return result


# --- metrics ---------------------------------------------------------------------------------------------------


def ingest_metrics(
    session: Session, principal: Principal, agent_id: uuid.UUID, raw_samples: list[dict[str, Any]]
) -> state_schemas.IngestResult:
    """Store a batch of the agent's own samples atomically (COPY); any invalid sample refuses the whole batch."""
    _require_self_or_operator(principal, agent_id, "report metrics")
    now = _now()
    samples = validate_batch(
        state_schemas.AgentMetricSample, raw_samples, now=now, timestamp_field="recorded_at", field="metrics"
    )
    agent_repository.get_agent(session, agent_id)
    rows = [
        repository.AgentMetricRow(
            agent_id=agent_id,
            metric_name=sample.metric_name,
            metric_value=sample.metric_value,
            metric_type=sample.metric_type.value,
            tags=sample.tags,
            recorded_at=sample.recorded_at or now,
        )
        for sample in samples
    ]
    inserted = repository.copy_metrics(session, rows)
    return state_schemas.IngestResult(received=len(samples), inserted=inserted)


def query_metrics(
    session: Session,
    principal: Principal,
    agent_id: uuid.UUID,
    query: state_schemas.AgentMetricQuery,
) -> state_schemas.AgentMetricSeries:
    """avg / min / max / count per metric and bucket over [start, end) (default: the last hour, 60 s buckets)."""
    _require_self_or_operator(principal, agent_id, "read the metrics")
    window = bucketing(query.start, query.end, query.bucket, _now())
    agent_repository.get_agent(session, agent_id)
    rows = repository.metric_buckets(session, agent_id, query, window, MAX_BUCKETS + 1)
    refuse_too_many_buckets(len(rows))
    return state_schemas.AgentMetricSeries(
        agent_id=agent_id,
        start=window.start,
        end=window.end,
        bucket_seconds=window.seconds,
        buckets=[
            state_schemas.MetricBucket(
                metric_name=name,
                bucket_start=moment,
                bucket_end=moment + window.width,
                avg=average,
                min=low,
                max=high,
                count=count,
            )
            for name, moment, average, low, high, count in rows
        ],
    )
