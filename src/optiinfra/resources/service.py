"""Resource rules: who reports resource metrics and scaling events for which customer, and who reads them.

Tenancy as everywhere: a customer sees and reports its own rows; an agent reports for a customer assigned to it and
reads the rows it wrote for its customers; the operator sees everything. Another tenant's row is reported as not
found.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from sqlalchemy.orm import Session

from optiinfra.agents import repository as agent_repository
from optiinfra.auth.principal import Principal, Role
from optiinfra.customers import repository as customer_repository
from optiinfra.errors import InvalidInputError, NotFoundError
from optiinfra.events import service as events
from optiinfra.models import Customer, EventSeverity, ScalingEvent
from optiinfra.pagination import Page
from optiinfra.resources import repository
from optiinfra.resources import schemas as resource_schemas
from optiinfra.timeseries import CLOCK_SKEW, MAX_BUCKETS, bucketing, refuse_too_many_buckets, validate_batch


def _now() -> datetime:
    return datetime.now(UTC)


def _resolve_customer(session: Session, principal: Principal, customer_id: uuid.UUID | None) -> Customer:
    """The customer a write is about: a customer's own; the one an operator names; for an agent, only a customer
    assigned to it (404 otherwise)."""
    return customer_repository.customer_to_act_for(session, principal, customer_id)


def _reporting_agent(
    session: Session, principal: Principal, customer_id: uuid.UUID, agent_id: uuid.UUID | None
) -> uuid.UUID:
    """The agent a write is attributed to: an agent is always itself; a customer or the operator may name one that
    serves the customer, by default the serving resource agent that last reported the customer's metrics, else the
    most recently alive one serving it."""
    if principal.role is Role.AGENT:
        if agent_id is not None and agent_id != principal.agent_id:
            raise InvalidInputError("An agent reports as itself; leave agent_id out.")
        assert principal.agent_id is not None
        return principal.agent_id
    if agent_id is not None:
        return agent_repository.get_agent_serving(session, agent_id, customer_id).id
    default = repository.default_resource_agent(session, customer_id)
    if default is None:
        raise InvalidInputError(
            "No resource agent serves this customer to attribute this to; assign one "
            "(POST /api/v1/agents/{agent_id}/customers) or pass agent_id."
        )
    return default


# --- metrics ---------------------------------------------------------------------------------------------------


def ingest_metrics(
    session: Session, principal: Principal, batch: resource_schemas.ResourceMetricBatch
) -> resource_schemas.IngestResult:
    """Store a batch of resource samples atomically (COPY); any invalid sample refuses the whole batch."""
    principal.require(Role.CUSTOMER, Role.AGENT, Role.OPERATOR)
    principal.require_writable()
    customer = _resolve_customer(session, principal, batch.customer_id)
    samples = validate_batch(
        resource_schemas.ResourceMetricSample, batch.metrics, now=_now(), timestamp_field="timestamp", field="metrics"
    )
    agent_id = _reporting_agent(session, principal, customer.id, batch.agent_id)
    rows = [
        repository.ResourceMetricRow(
            agent_id=agent_id,
            customer_id=customer.id,
            instance_id=sample.instance_id,
            resource_type=sample.resource_type.value,
            metric_name=sample.metric_name,
            metric_value=sample.metric_value,
            unit=sample.unit,
            timestamp=sample.timestamp,
            metadata=sample.metadata,
        )
        for sample in samples
    ]
    inserted = repository.copy_metrics(session, rows)
    return resource_schemas.IngestResult(received=len(samples), inserted=inserted)


def query_metrics(
    session: Session, principal: Principal, query: resource_schemas.ResourceMetricQuery
) -> resource_schemas.ResourceMetricSeries:
    """avg / min / max / count per instance, metric and bucket over [start, end), of the samples the caller may
    see (default: the last hour, 60 s buckets)."""
    window = bucketing(query.start, query.end, query.bucket, _now())
    rows = repository.metric_buckets(session, principal, window, query, limit=MAX_BUCKETS + 1)
    refuse_too_many_buckets(len(rows))
    return resource_schemas.ResourceMetricSeries(
        start=window.start,
        end=window.end,
        bucket_seconds=window.seconds,
        buckets=[
            resource_schemas.ResourceMetricBucket(
                customer_id=row[0],
                instance_id=row[1],
                resource_type=row[2],
                metric_name=row[3],
                unit=row[4],
                bucket_start=row[5],
                bucket_end=row[5] + window.width,
                avg=row[6],
                min=row[7],
                max=row[8],
                count=row[9],
            )
            for row in rows
        ],
    )


# --- scaling events --------------------------------------------------------------------------------------------


def _refuse_future(payload: resource_schemas.ScalingEventCreate, now: datetime) -> None:
    problems = [
        {"location": ["body", name], "message": "is in the future (more than 5 minutes ahead)", "type": "future"}
        for name, moment in (("executed_at", payload.executed_at), ("completed_at", payload.completed_at))
        if moment is not None and moment > now + CLOCK_SKEW
    ]
    if problems:
        raise InvalidInputError("A scaling event cannot have happened in the future.", details={"problems": problems})


def record_scaling_event(
    session: Session, principal: Principal, payload: resource_schemas.ScalingEventCreate
) -> resource_schemas.ScalingEvent:
    """Record a scaling action on a customer's fleet: an agent reports its own for the customer it names; the
    operator names the customer, and the agent (by default the customer's resource agent, as for metrics)."""
    principal.require(Role.AGENT, Role.OPERATOR)
    _refuse_future(payload, _now())
    customer = _resolve_customer(session, principal, payload.customer_id)
    agent_id = _reporting_agent(session, principal, customer.id, payload.agent_id)
    if payload.workflow_execution_id is not None and not repository.workflow_of_customer(
        session, payload.workflow_execution_id, customer.id
    ):
        raise NotFoundError(
            "No such workflow execution.", details={"workflow_execution_id": str(payload.workflow_execution_id)}
        )
    event = ScalingEvent(
        customer_id=customer.id,
        agent_id=agent_id,
        workflow_execution_id=payload.workflow_execution_id,
        event_type=payload.event_type,
        trigger_reason=payload.trigger_reason,
        before_state=payload.before_state,
        after_state=payload.after_state,
        success=payload.success,
        error_details=payload.error_details,
        executed_at=payload.executed_at,
        completed_at=payload.completed_at,
        metadata_=payload.metadata,
    )
    session.add(event)
    session.flush()
    session.refresh(event)
    recorded = resource_schemas.ScalingEvent.model_validate(event)
    events.record(
        session,
        event_type="resource.scaling_recorded",
        actor=principal,
        customer_id=customer.id,
        agent_id=agent_id,
        severity=EventSeverity.INFO if payload.success or payload.completed_at is None else EventSeverity.WARNING,
        subject={"scaling_event_id": str(event.id), "event_type": str(event.event_type)},
        before=payload.before_state,
        after=payload.after_state,
        extra={"success": event.success, "duration_seconds": recorded.duration_seconds},
    )
    return recorded


def get_scaling_event(
    session: Session, principal: Principal, scaling_event_id: uuid.UUID
) -> resource_schemas.ScalingEvent:
    return resource_schemas.ScalingEvent.model_validate(
        repository.get_scaling_event(session, principal, scaling_event_id)
    )


def list_scaling_events(
    session: Session, principal: Principal, filters: resource_schemas.ScalingEventFilters
) -> Page[resource_schemas.ScalingEvent]:
    return repository.list_scaling_events(session, principal, filters).map(resource_schemas.ScalingEvent.model_validate)
