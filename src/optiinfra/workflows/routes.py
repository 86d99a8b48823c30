"""/api/v1/workflows"""

from __future__ import annotations

import uuid

from fastapi import APIRouter, Request
from fastapi.responses import FileResponse

from optiinfra.api.deps import DEFAULT_PAGE_SIZE, CursorQuery, LimitQuery, PrincipalDep, SessionDep
from optiinfra.api.pagination import Page
from optiinfra.api.strict import StrictRoute
from optiinfra.models import WorkflowStatus, WorkflowType
from optiinfra.workflows import schemas, service
from optiinfra.workflows.engine import WorkflowRunner

router = APIRouter(prefix="/workflows", tags=["workflows"], route_class=StrictRoute)


def _runner(request: Request) -> WorkflowRunner:
    runner: WorkflowRunner = request.app.state.workflow_runner
    return runner


@router.post("/spot-migration/analyze", status_code=201, response_model=schemas.ExecutionDetail)
def analyze_spot(
    payload: schemas.SpotAnalysisRequest, request: Request, session: SessionDep, principal: PrincipalDep
) -> schemas.ExecutionDetail:
    """Run the spot-migration analysis for a customer; a recommendation is created when instances qualify."""
    execution_id = service.analyze_spot(session, _runner(request), principal, payload)
    return service.get_execution(session, principal, execution_id)


@router.post("/spot-migration/rollout", status_code=201, response_model=schemas.ExecutionDetail)
def roll_out_spot(
    payload: schemas.SpotRolloutRequest, request: Request, session: SessionDep, principal: PrincipalDep
) -> schemas.ExecutionDetail:
    """Execute an approved spot migration in phases (10 %, 50 %, 100 %), each gated by the quality judge."""
    execution_id = service.roll_out_spot(session, _runner(request), principal, payload)
    return service.get_execution(session, principal, execution_id)


@router.post("/scaling-decision", status_code=201, response_model=schemas.ExecutionDetail)
def scaling_decision(
    payload: schemas.ScalingRequest, request: Request, session: SessionDep, principal: PrincipalDep
) -> schemas.ExecutionDetail:
    """Decide scale up / down / nothing from utilization history, with hysteresis and a cool-down."""
    execution_id = service.decide_scaling(session, _runner(request), principal, payload)
    return service.get_execution(session, principal, execution_id)


@router.get("", response_model=Page[schemas.Execution])
def list_workflows(
    session: SessionDep,
    principal: PrincipalDep,
    customer_id: uuid.UUID | None = None,
    workflow_type: WorkflowType | None = None,
    status: WorkflowStatus | None = None,
    cursor: CursorQuery = None,
    limit: LimitQuery = DEFAULT_PAGE_SIZE,
) -> Page[schemas.Execution]:
    return service.list_executions(
        session,
        principal,
        customer_id=customer_id,
        workflow_type=workflow_type,
        status=status,
        cursor=cursor,
        limit=limit,
    )


@router.get("/{workflow_id}", response_model=schemas.ExecutionDetail)
def get_workflow(workflow_id: uuid.UUID, session: SessionDep, principal: PrincipalDep) -> schemas.ExecutionDetail:
    """An execution with its steps (in order) and artifacts."""
    return service.get_execution(session, principal, workflow_id)


@router.post("/{workflow_id}/cancel", response_model=schemas.ExecutionDetail)
def cancel_workflow(
    workflow_id: uuid.UUID, request: Request, session: SessionDep, principal: PrincipalDep
) -> schemas.ExecutionDetail:
    service.cancel(session, _runner(request), principal, workflow_id)
    session.expire_all()
    return service.get_execution(session, principal, workflow_id)


@router.get("/{workflow_id}/artifacts/{artifact_id}", response_class=FileResponse)
def download_artifact(
    workflow_id: uuid.UUID, artifact_id: uuid.UUID, request: Request, session: SessionDep, principal: PrincipalDep
) -> FileResponse:
    """Download an artifact's file."""
    path, name, content_type = service.artifact_file(
        session, principal, workflow_id, artifact_id, _runner(request).artifact_root
    )
    return FileResponse(path, media_type=content_type, filename=name)
