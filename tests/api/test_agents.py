"""Agent registration, heartbeats, and health derived from heartbeat age."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import text
from sqlalchemy.orm import Session

from optiinfra.agents import service as agent_service
from optiinfra.client import ApiError, OptiInfraClient
from optiinfra.enums import AgentStatus, AgentType
from tests.api.conftest import AgentHandle, Server, Tenant


def test_registration_is_idempotent_on_type_and_name(operator: OptiInfraClient, api_server: Server) -> None:
    name = f"cost-{uuid.uuid4().hex[:8]}"
    first = operator.register_agent(AgentType.COST, name, version="1.0.0", capabilities=["pricing", "spot"])
    assert first.created
    assert first.api_key
    assert first.api_key.startswith("oi_ag_")
    again = operator.register_agent(
        AgentType.COST,
        name,
        version="1.1.0",
        endpoint="https://agents.example.net:9000",
        capabilities=["pricing", "rightsizing"],
    )
    assert again.id == first.id
    assert not again.created
    assert again.api_key is None
    assert (again.version, again.endpoint, again.capabilities) == (
        "1.1.0",
        "https://agents.example.net:9000",
        ["pricing", "rightsizing"],
    )
    # The same name with another type is another agent.
    other = operator.register_agent(AgentType.RESOURCE, name)
    assert other.id != first.id
    with api_server.engine.connect() as connection:
        names = (
            connection.execute(
                text("SELECT capability_name FROM agent_capabilities WHERE agent_id = :id ORDER BY 1"), {"id": first.id}
            )
            .scalars()
            .all()
        )
    assert names == ["pricing", "rightsizing"]


def test_re_registration_writes_an_event_only_when_something_changed(operator: OptiInfraClient) -> None:
    name = f"perf-{uuid.uuid4().hex[:8]}"
    agent = operator.register_agent(AgentType.PERFORMANCE, name, version="2.0")
    operator.register_agent(AgentType.PERFORMANCE, name, version="2.0")
    operator.register_agent(AgentType.PERFORMANCE, name, version="2.1")
    events = operator.list_events(agent_id=agent.id, limit=50).items
    assert [e.event_type for e in reversed(events)] == ["agent.registered", "agent.updated"]
    assert events[0].data["before"]["version"] == "2.0"
    assert events[0].data["after"]["version"] == "2.1"
    assert events[0].customer_id is None


def test_agent_may_re_register_itself_but_not_create_others(agent: AgentHandle, operator: OptiInfraClient) -> None:
    me = operator.get_agent(agent.agent_id)
    updated = agent.client.register_agent(me.type, me.name, version="9.9.9")
    assert updated.id == agent.agent_id
    assert updated.version == "9.9.9"
    with pytest.raises(ApiError) as refused:
        agent.client.register_agent(AgentType.COST, f"new-{uuid.uuid4().hex[:6]}")
    assert refused.value.status_code == 403


def test_heartbeat_updates_time_status_and_metadata(agent: AgentHandle) -> None:
    before = datetime.now(UTC)
    beat = agent.client.heartbeat(agent.agent_id, metadata={"gpu_queue": 3})
    assert beat.status == AgentStatus.HEALTHY
    assert beat.last_heartbeat is not None
    assert beat.last_heartbeat >= before - timedelta(seconds=1)
    assert beat.metadata["gpu_queue"] == 3


def test_reported_status_change_writes_one_event(agent: AgentHandle, operator: OptiInfraClient) -> None:
    agent.client.heartbeat(agent.agent_id)
    agent.client.heartbeat(agent.agent_id)
    agent.client.heartbeat(agent.agent_id, status=AgentStatus.DEGRADED)
    changes = operator.list_events(agent_id=agent.agent_id, event_type="agent.status_changed").items
    assert [(e.data["before"]["status"], e.data["after"]["status"]) for e in reversed(changes)] == [
        ("starting", "healthy"),
        ("healthy", "degraded"),
    ]
    assert changes[0].severity == "warning"


def _set_last_heartbeat(api_server: Server, agent_id: uuid.UUID, moment: datetime) -> None:
    with api_server.engine.begin() as connection:
        connection.execute(
            text("UPDATE agents SET last_heartbeat = :at WHERE id = :id"), {"at": moment, "id": agent_id}
        )


@pytest.mark.parametrize(
    ("seconds_silent", "expected"),
    [(50, AgentStatus.HEALTHY), (95, AgentStatus.DEGRADED), (299, AgentStatus.DEGRADED), (301, AgentStatus.FAILED)],
)
def test_health_is_derived_from_heartbeat_age(
    seconds_silent: int,
    expected: AgentStatus,
    make_agent: Callable[..., AgentHandle],
    api_server: Server,
    operator: OptiInfraClient,
) -> None:
    handle = make_agent(heartbeat_interval_seconds=30)
    handle.client.heartbeat(handle.agent_id)
    now = datetime.now(UTC)
    _set_last_heartbeat(api_server, handle.agent_id, now - timedelta(seconds=seconds_silent))
    with Session(api_server.engine) as session, session.begin():
        agent_service.sweep_health(session, now)
    assert operator.get_agent(handle.agent_id).status == expected
    changes = operator.list_events(agent_id=handle.agent_id, event_type="agent.status_changed").items
    if expected is AgentStatus.HEALTHY:
        assert changes[0].data["after"]["status"] == "healthy"
    else:
        assert changes[0].data["after"]["status"] == str(expected)
        assert changes[0].data["actor"]["name"] == "system:health"


def test_sweep_is_idempotent_and_a_heartbeat_restores_health(
    agent: AgentHandle, api_server: Server, operator: OptiInfraClient
) -> None:
    agent.client.heartbeat(agent.agent_id)
    now = datetime.now(UTC)
    _set_last_heartbeat(api_server, agent.agent_id, now - timedelta(hours=1))
    for _ in range(2):
        with Session(api_server.engine) as session, session.begin():
            agent_service.sweep_health(session, now)
    failed_events = operator.list_events(agent_id=agent.agent_id, event_type="agent.status_changed").items
    assert [e.data["after"]["status"] for e in failed_events].count("failed") == 1
    assert agent.client.heartbeat(agent.agent_id).status == AgentStatus.HEALTHY


def test_agents_list_filters_by_type_and_status(
    make_agent: Callable[..., AgentHandle], operator: OptiInfraClient
) -> None:
    resource = make_agent(AgentType.RESOURCE)
    resource.client.heartbeat(resource.agent_id, status=AgentStatus.STOPPED)
    stopped = operator.list_agents(type=AgentType.RESOURCE, status=AgentStatus.STOPPED, limit=500).items
    assert resource.agent_id in {a.id for a in stopped}
    assert all(a.type == AgentType.RESOURCE and a.status == AgentStatus.STOPPED for a in stopped)


def test_agent_appends_its_own_events(
    agent: AgentHandle, operator: OptiInfraClient, tenant: Tenant, make_tenant: Callable[..., Tenant]
) -> None:
    event = agent.client.append_event("analysis.finished", customer_id=tenant.id, data={"instances": 12})
    assert event.agent_id == agent.agent_id
    assert event.data["payload"] == {"instances": 12}
    assert event.data["actor"]["role"] == "agent"
    assert any(e.id == event.id for e in tenant.client.list_events().items)
    with pytest.raises(ApiError) as refused:
        tenant.client.append_event("customer.says", data={})
    assert refused.value.status_code == 403


# --- the customers an agent serves -----------------------------------------------------------------------------


def test_registration_assigns_customers_and_re_registration_only_adds(
    operator: OptiInfraClient, make_tenant: Callable[..., Tenant]
) -> None:
    first, second = make_tenant(), make_tenant()
    name = f"cost-{uuid.uuid4().hex[:8]}"
    registered = operator.register_agent(AgentType.COST, name, customer_ids=[first.id, first.id])
    assert registered.customer_ids == [first.id]
    again = operator.register_agent(AgentType.COST, name, customer_ids=[second.id])
    assert again.customer_ids == [first.id, second.id]
    assert operator.register_agent(AgentType.COST, name).customer_ids == [first.id, second.id]
    # Each assignment is in the customer's own log, once.
    logged = first.client.list_events(event_type="agent.customer_assigned").items
    assert [(event.agent_id, event.data["actor"]["role"]) for event in logged] == [(registered.id, "operator")]


def test_registration_naming_an_unknown_customer_registers_nothing(
    operator: OptiInfraClient, tenant: Tenant, api_server: Server
) -> None:
    name = f"cost-{uuid.uuid4().hex[:8]}"
    with pytest.raises(ApiError) as refused:
        operator.register_agent(AgentType.COST, name, customer_ids=[tenant.id, uuid.uuid4()])
    assert refused.value.status_code == 404
    with api_server.engine.connect() as connection:
        found = connection.execute(text("SELECT count(*) FROM agents WHERE name = :name"), {"name": name}).scalar()
    assert found == 0


def test_only_the_operator_assigns_customers(agent: AgentHandle, tenant: Tenant, make_tenant: Callable) -> None:
    other = make_tenant()
    me = agent.client.get_agent(agent.agent_id)
    with pytest.raises(ApiError) as refused:
        agent.client.register_agent(me.type, me.name, customer_ids=[other.id])
    assert refused.value.status_code == 403
    for client in (agent.client, tenant.client):
        with pytest.raises(ApiError) as refused:
            client.assign_customer(agent.agent_id, other.id)
        assert refused.value.status_code == 403
        with pytest.raises(ApiError) as refused:
            client.unassign_customer(agent.agent_id, tenant.id)
        assert refused.value.status_code == 403
    assert agent.client.get_agent(agent.agent_id).customer_ids == [tenant.id]


def test_assign_is_idempotent_and_unassign_refuses_what_is_not_assigned(
    operator: OptiInfraClient, make_agent: Callable[..., AgentHandle], make_tenant: Callable[..., Tenant]
) -> None:
    tenant = make_tenant()
    handle = make_agent()
    assert operator.assign_customer(handle.agent_id, tenant.id).customer_ids == [tenant.id]
    assert operator.assign_customer(handle.agent_id, tenant.id).customer_ids == [tenant.id]
    assert len(tenant.client.list_events(event_type="agent.customer_assigned").items) == 1
    assert operator.unassign_customer(handle.agent_id, tenant.id).customer_ids == []
    for agent_id, customer_id in ((handle.agent_id, tenant.id), (uuid.uuid4(), tenant.id)):
        with pytest.raises(ApiError) as refused:
            operator.unassign_customer(agent_id, customer_id)
        assert refused.value.status_code == 404
    for agent_id, customer_id in ((handle.agent_id, uuid.uuid4()), (uuid.uuid4(), tenant.id)):
        with pytest.raises(ApiError) as refused:
            operator.assign_customer(agent_id, customer_id)
        assert refused.value.status_code == 404
    unassigned = tenant.client.list_events(event_type="agent.customer_unassigned").items
    assert [(event.agent_id, event.severity) for event in unassigned] == [(handle.agent_id, "warning")]


def test_who_sees_which_customers_an_agent_serves(
    operator: OptiInfraClient, make_agent: Callable[..., AgentHandle], make_tenant: Callable[..., Tenant]
) -> None:
    """Customer ids of one tenant are not shown to another: a customer sees only itself in an agent's list, another
    agent sees none; the operator and the agent itself see all."""
    mine, theirs = make_tenant(), make_tenant()
    shared = make_agent(serves=[mine, theirs])
    other_agent = make_agent(serves=[theirs])
    assert set(operator.get_agent(shared.agent_id).customer_ids) == {mine.id, theirs.id}
    assert set(shared.client.get_agent(shared.agent_id).customer_ids) == {mine.id, theirs.id}
    assert mine.client.get_agent(shared.agent_id).customer_ids == [mine.id]
    assert other_agent.client.get_agent(shared.agent_id).customer_ids == []
    listed = {agent.id: agent.customer_ids for agent in mine.client.list_agents(limit=500).items}
    assert listed[shared.agent_id] == [mine.id]
    assert listed[other_agent.agent_id] == []
    assert all(theirs.id not in customer_ids for customer_ids in listed.values())
