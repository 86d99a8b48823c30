"""/api/v1/agents/{agent_id}/configs|state|locks|capabilities|metrics and /api/v1/locks"""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Body, Path, Query

from optiinfra.agent_state import schemas, service
from optiinfra.api.deps import PrincipalDep, SessionDep
from optiinfra.api.strict import StrictRoute

router = APIRouter(tags=["agent state"], route_class=StrictRoute)

ConfigKey = Annotated[str, Path(max_length=255, pattern=schemas.NAME_PATTERN)]
Resource = Annotated[str, Path(max_length=255, pattern=schemas.NAME_PATTERN, description="the locked resource")]
CapabilityName = Annotated[str, Path(max_length=255)]


@router.get("/agents/{agent_id}/configs", response_model=list[schemas.AgentConfig])
def list_configs(agent_id: uuid.UUID, session: SessionDep, principal: PrincipalDep) -> list[schemas.AgentConfig]:
    """The agent's config values, by key (operator, or the agent itself)."""
    return service.list_configs(session, principal, agent_id)


@router.put("/agents/{agent_id}/configs/{config_key}", response_model=schemas.AgentConfig)
def set_config(
    agent_id: uuid.UUID,
    config_key: ConfigKey,
    payload: schemas.AgentConfigSet,
    session: SessionDep,
    principal: PrincipalDep,
) -> schemas.AgentConfig:
    """Create or replace a config value, validated against its type (operator, or the agent itself)."""
    return service.set_config(session, principal, agent_id, config_key, payload)


@router.get("/agents/{agent_id}/state", response_model=schemas.AgentState)
def get_state(agent_id: uuid.UUID, session: SessionDep, principal: PrincipalDep) -> schemas.AgentState:
    """The agent's live state, locks included (operator, or the agent itself)."""
    return service.get_state(session, principal, agent_id)


@router.patch("/agents/{agent_id}/state", response_model=schemas.AgentState)
def update_state(
    agent_id: uuid.UUID, payload: schemas.AgentStateUpdate, session: SessionDep, principal: PrincipalDep
) -> schemas.AgentState:
    """Report status, running workflows, resource usage and metadata (operator, or the agent itself)."""
    return service.update_state(session, principal, agent_id, payload)


@router.post("/agents/{agent_id}/locks/{resource}", response_model=schemas.Lock)
def acquire_lock(
    agent_id: uuid.UUID,
    resource: Resource,
    session: SessionDep,
    principal: PrincipalDep,
    payload: Annotated[schemas.LockAcquire | None, Body()] = None,
) -> schemas.Lock:
    """Acquire the lock on a resource (the agent itself). 409 names the holder when another live agent has it."""
    return service.acquire_lock(session, principal, agent_id, resource, payload)


@router.delete("/agents/{agent_id}/locks/{resource}", response_model=schemas.Lock)
def release_lock(agent_id: uuid.UUID, resource: Resource, session: SessionDep, principal: PrincipalDep) -> schemas.Lock:
    """Release a lock the agent holds (the agent itself, or the operator); answers with the released lock."""
    return service.release_lock(session, principal, agent_id, resource)


@router.get("/locks", response_model=list[schemas.Lock])
def list_locks(session: SessionDep, principal: PrincipalDep) -> list[schemas.Lock]:
    """Every held lock, with its holder and whether it has expired (operator and agents)."""
    return service.list_locks(session, principal)


@router.get("/agents/{agent_id}/capabilities", response_model=list[schemas.AgentCapability])
def list_capabilities(
    agent_id: uuid.UUID, session: SessionDep, principal: PrincipalDep
) -> list[schemas.AgentCapability]:
    """The capabilities the agent registered, with version, enabled flag and config."""
    return service.list_capabilities(session, principal, agent_id)


@router.patch("/agents/{agent_id}/capabilities/{capability_name}", response_model=schemas.AgentCapability)
def update_capability(
    agent_id: uuid.UUID,
    capability_name: CapabilityName,
    payload: schemas.AgentCapabilityUpdate,
    session: SessionDep,
    principal: PrincipalDep,
) -> schemas.AgentCapability:
    """Enable or disable a registered capability, or set its version, config or description (operator, or the agent
    itself)."""
    return service.update_capability(session, principal, agent_id, capability_name, payload)


@router.post("/agents/{agent_id}/metrics", response_model=schemas.IngestResult)
def ingest_metrics(
    agent_id: uuid.UUID, payload: schemas.AgentMetricBatch, session: SessionDep, principal: PrincipalDep
) -> schemas.IngestResult:
    """Store up to 10,000 samples of the agent's own metrics (the agent itself, or the operator). A batch with any
    invalid sample is refused whole (422, with each bad sample's index and reasons)."""
    return service.ingest_metrics(session, principal, agent_id, payload.metrics)


@router.get("/agents/{agent_id}/metrics", response_model=schemas.AgentMetricSeries)
def query_metrics(
    agent_id: uuid.UUID,
    session: SessionDep,
    principal: PrincipalDep,
    query: Annotated[schemas.AgentMetricQuery, Query()],
) -> schemas.AgentMetricSeries:
    """avg / min / max / count per metric and bucket over [start, end); default the last hour in 60 s buckets."""
    return service.query_metrics(session, principal, agent_id, query)
