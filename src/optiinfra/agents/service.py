"""Agent rules: the operator registers agents and assigns them to the customers they serve; an agent may
re-register and heartbeat only as itself."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from sqlalchemy.orm import Session

from optiinfra.agents import health, repository
from optiinfra.agents import schemas as agent_schemas
from optiinfra.auth.keys import generate_key, key_digest
from optiinfra.auth.principal import Principal, Role
from optiinfra.customers import repository as customer_repository
from optiinfra.errors import ForbiddenError, InvalidInputError, NotFoundError
from optiinfra.events import service as events
from optiinfra.models import Agent, AgentStatus, EventSeverity
from optiinfra.net import endpoints
from optiinfra.pagination import Page

STATUS_SEVERITY = {
    AgentStatus.STARTING: EventSeverity.INFO,
    AgentStatus.HEALTHY: EventSeverity.INFO,
    AgentStatus.STOPPED: EventSeverity.INFO,
    AgentStatus.DEGRADED: EventSeverity.WARNING,
    AgentStatus.FAILED: EventSeverity.ERROR,
}


def _snapshot(agent: Agent) -> dict[str, object]:
    return {
        "version": agent.version,
        "endpoint": agent.endpoint,
        "capabilities": list(agent.capabilities),
        "heartbeat_interval_seconds": agent.heartbeat_interval_seconds,
    }


def check_endpoint(endpoint: str) -> None:
    """Refuse an endpoint OptiInfra would not call (422), as the webhook executor would refuse it at call time."""
    try:
        endpoints.check_url(endpoint)
    except endpoints.UnsafeEndpointError as error:
        problem = {"location": ["body", "endpoint"], "message": str(error), "type": "unsafe_endpoint"}
        raise InvalidInputError(str(error), details={"problems": [problem]}) from error


def register_agent(
    session: Session, principal: Principal, payload: agent_schemas.AgentRegister
) -> agent_schemas.AgentRegistered:
    """Create the agent, or update the one with the same type and name; a key is issued only on creation.

    The operator registers any agent; an agent may re-register itself (to report a new version, endpoint or
    capabilities) but no other.
    """
    principal.require(Role.OPERATOR, Role.AGENT)
    agent = repository.find_by_type_and_name(session, payload.type, payload.name, for_update=True)
    if principal.role is Role.AGENT and (agent is None or agent.id != principal.agent_id):
        raise ForbiddenError("An agent may only re-register itself; ask the operator to register new agents.")
    if principal.role is Role.AGENT and payload.customer_ids is not None:
        raise ForbiddenError("Only the operator assigns customers to agents; leave customer_ids out.")
    customers = [
        customer_repository.get_customer(session, principal, customer_id)
        for customer_id in dict.fromkeys(payload.customer_ids or [])
    ]
    if payload.endpoint is not None:
        check_endpoint(payload.endpoint)
    capabilities = payload.capability_names()
    key: str | None = None
    if agent is None:
        key = generate_key(Role.AGENT)
        agent = Agent(
            type=payload.type,
            name=payload.name,
            version=payload.version,
            endpoint=payload.endpoint,
            capabilities=capabilities,
            heartbeat_interval_seconds=payload.heartbeat_interval_seconds,
            metadata_=payload.metadata,
            api_key_digest=key_digest(key),
        )
        session.add(agent)
        # Two registrations racing on (type, name): the loser's INSERT waits on the unique index and then fails;
        # the API turns that IntegrityError into 409 and the client retries into the update path.
        session.flush()
        before = None
        event_type = "agent.registered"
    else:
        before = _snapshot(agent)
        agent.version = payload.version
        agent.endpoint = payload.endpoint
        agent.capabilities = capabilities
        agent.heartbeat_interval_seconds = payload.heartbeat_interval_seconds
        if payload.metadata:
            agent.metadata_ = {**(agent.metadata_ or {}), **payload.metadata}
        session.flush()
        event_type = "agent.updated"
    repository.replace_capabilities(session, agent.id, capabilities)
    for customer in customers:
        _assign(session, principal, agent, customer.id)
    after = _snapshot(agent)
    if before != after:
        events.record(
            session,
            event_type=event_type,
            actor=principal,
            customer_id=None,
            agent_id=agent.id,
            subject={"agent_id": str(agent.id), "type": str(agent.type), "name": agent.name},
            before=before,
            after=after,
        )
    session.flush()
    session.refresh(agent)
    return agent_schemas.AgentRegistered.model_validate(
        {**_out(session, principal, [agent])[0].model_dump(), "api_key": key, "created": key is not None}
    )


def rotate_agent_key(session: Session, principal: Principal, agent_id: uuid.UUID) -> agent_schemas.AgentRegistered:
    principal.require(Role.OPERATOR)
    agent = repository.get_agent(session, agent_id, for_update=True)
    key = generate_key(Role.AGENT)
    agent.api_key_digest = key_digest(key)
    session.flush()
    events.record(
        session,
        event_type="agent.key_rotated",
        actor=principal,
        customer_id=None,
        agent_id=agent.id,
        severity=EventSeverity.WARNING,
        subject={"agent_id": str(agent.id)},
    )
    return agent_schemas.AgentRegistered.model_validate(
        {**_out(session, principal, [agent])[0].model_dump(), "api_key": key, "created": False}
    )


def _set_status(session: Session, agent: Agent, status: AgentStatus, actor: Principal, reason: str) -> None:
    if agent.status is status:
        return
    before = agent.status
    agent.status = status
    events.record(
        session,
        event_type="agent.status_changed",
        actor=actor,
        customer_id=None,
        agent_id=agent.id,
        severity=STATUS_SEVERITY[status],
        subject={"agent_id": str(agent.id), "type": str(agent.type), "name": agent.name},
        before={"status": str(before)},
        after={"status": str(status)},
        extra={"reason": reason},
    )


def heartbeat(
    session: Session, principal: Principal, agent_id: uuid.UUID, payload: agent_schemas.Heartbeat
) -> agent_schemas.Agent:
    """Record a heartbeat from the agent itself; a change of reported status writes an event."""
    principal.require(Role.AGENT)
    if principal.agent_id != agent_id:
        raise ForbiddenError("An agent may only send its own heartbeats.")
    agent = repository.get_agent(session, agent_id, for_update=True)
    agent.last_heartbeat = datetime.now(UTC)
    if payload.metadata:
        agent.metadata_ = {**(agent.metadata_ or {}), **payload.metadata}
    _set_status(session, agent, payload.status, principal, "reported by the agent's heartbeat")
    session.flush()
    session.refresh(agent)
    return _out(session, principal, [agent])[0]


def sweep_health(session: Session, now: datetime | None = None) -> int:
    """Mark agents degraded or failed whose heartbeats stopped; returns how many changed. Safe to run anywhere."""
    moment = now or datetime.now(UTC)
    changed = 0
    for agent in repository.overdue_agents(session, moment, health.DEGRADED_AFTER_INTERVALS):
        status = health.derived_status(agent, moment)
        if status is not agent.status and agent.last_heartbeat is not None:
            missed = (moment - agent.last_heartbeat).total_seconds()
            _set_status(
                session,
                agent,
                status,
                Principal.system("health"),
                f"no heartbeat for {missed:.0f} s (interval {agent.heartbeat_interval_seconds} s)",
            )
            changed += 1
    session.flush()
    return changed


def get_agent(session: Session, principal: Principal, agent_id: uuid.UUID) -> agent_schemas.Agent:
    return _out(session, principal, [repository.get_agent(session, agent_id)])[0]


def agent_ids_named(session: Session, principal: Principal, name: str) -> list[uuid.UUID]:
    """Ids of the agents with this name (the command line names agents by name or id)."""
    principal.require(Role.OPERATOR)
    return repository.ids_named(session, name)


def list_agents(
    session: Session, principal: Principal, filters: agent_schemas.AgentFilters
) -> Page[agent_schemas.Agent]:
    page = repository.list_agents(session, filters)
    return Page(items=_out(session, principal, page.items), next_cursor=page.next_cursor)


# --- customers an agent serves ---------------------------------------------------------------------------------


def _visible_customer_ids(principal: Principal, agent_id: uuid.UUID, customer_ids: list[uuid.UUID]) -> list[uuid.UUID]:
    """What the caller may learn of an agent's customers: all (operator, the agent itself), its own id (a
    customer), nothing (another agent): customer ids of other tenants are not shown to anyone else."""
    if principal.role is Role.OPERATOR or principal.agent_id == agent_id:
        return customer_ids
    if principal.role is Role.CUSTOMER:
        return [customer_id for customer_id in customer_ids if customer_id == principal.customer_id]
    return []


def _out(session: Session, principal: Principal, agents: list[Agent]) -> list[agent_schemas.Agent]:
    """Agents on the wire, with the customers each serves as far as the caller may know them."""
    assigned = repository.customer_ids_of(session, [agent.id for agent in agents])
    return [
        agent_schemas.Agent.model_validate(agent).model_copy(
            update={"customer_ids": _visible_customer_ids(principal, agent.id, assigned[agent.id])}
        )
        for agent in agents
    ]


def _assign(session: Session, principal: Principal, agent: Agent, customer_id: uuid.UUID) -> None:
    if repository.assign(session, agent.id, customer_id):
        events.record(
            session,
            event_type="agent.customer_assigned",
            actor=principal,
            customer_id=customer_id,
            agent_id=agent.id,
            subject={"agent_id": str(agent.id), "customer_id": str(customer_id), "name": agent.name},
        )


def assign_customer(
    session: Session, principal: Principal, agent_id: uuid.UUID, payload: agent_schemas.CustomerAssignment
) -> agent_schemas.Agent:
    """The operator assigns the agent to a customer it serves; assigning again changes nothing."""
    principal.require(Role.OPERATOR)
    agent = repository.get_agent(session, agent_id, for_update=True)
    customer = customer_repository.get_customer(session, principal, payload.customer_id)
    _assign(session, principal, agent, customer.id)
    session.flush()
    return _out(session, principal, [agent])[0]


def unassign_customer(
    session: Session, principal: Principal, agent_id: uuid.UUID, customer_id: uuid.UUID
) -> agent_schemas.Agent:
    """The operator takes a customer away from the agent: from the next statement on, the agent can neither act
    for the customer nor read its rows (the rows stay). 404 when the agent is not assigned to it."""
    principal.require(Role.OPERATOR)
    agent = repository.get_agent(session, agent_id, for_update=True)
    if not repository.unassign(session, agent.id, customer_id):
        raise NotFoundError(
            "The agent is not assigned to this customer.",
            details={"agent_id": str(agent_id), "customer_id": str(customer_id)},
        )
    events.record(
        session,
        event_type="agent.customer_unassigned",
        actor=principal,
        customer_id=customer_id,
        agent_id=agent.id,
        severity=EventSeverity.WARNING,
        subject={"agent_id": str(agent.id), "customer_id": str(customer_id), "name": agent.name},
    )
    session.flush()
    return _out(session, principal, [agent])[0]
