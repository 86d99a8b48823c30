"""/api/v1/workflows"""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.responses import FileResponse

from optiinfra.api.deps import PrincipalDep, SessionDep
from optiinfra.api.pagination import Page
from optiinfra.api.strict import StrictRoute
from optiinfra.workflows import schemas, service
from optiinfra.workflows.engine import WorkflowRunner

router = APIRouter(prefix="/workflows", tags=["workflows"], route_class=StrictRoute)


def _runner(request: Request) -> WorkflowRunner:
    runner: WorkflowRunner = request.app.state.workflow_runner
    return runner


@router.post("/spot-migration/analyze", status_code=202, response_model=schemas.ExecutionDetail)
def analyze_spot(
    payload: schemas.SpotAnalysisRequest, request: Request, session: SessionDep, principal: PrincipalDep
) -> schemas.ExecutionDetail:
    """Start the spot-migration analysis for a customer (a recommendation is created when instances qualify).

    Answers 202 with the pending run at once; a worker runs it. Follow it with `GET /workflows/{id}`."""
    execution_id = service.analyze_spot(session, _runner(request), principal, payload)
    return service.get_execution(session, principal, execution_id)


@router.post("/spot-migration/rollout", status_code=202, response_model=schemas.ExecutionDetail)
def roll_out_spot(
    payload: schemas.SpotRolloutRequest, request: Request, session: SessionDep, principal: PrincipalDep
) -> schemas.ExecutionDetail:
    """Start an approved spot migration's rollout in phases (10 %, 50 %, 100 %).

    Each phase waits for its bake time and enough traffic on both arms, then is judged against a concurrent control;
    a regression undoes the phases and rolls the optimization back; too little traffic by the deadline pauses the run
    for a human (`/resume` or `/abort`). Answers 202 with the pending run at once; a worker runs it."""
    execution_id = service.roll_out_spot(session, _runner(request), principal, payload)
    return service.get_execution(session, principal, execution_id)


@router.post("/scaling-decision", status_code=202, response_model=schemas.ExecutionDetail)
def scaling_decision(
    payload: schemas.ScalingRequest, request: Request, session: SessionDep, principal: PrincipalDep
) -> schemas.ExecutionDetail:
    """Start the scaling decision (scale up / down / nothing from utilization history, with hysteresis and a
    cool-down). Answers 202 with the pending run at once; a worker runs it."""
    execution_id = service.decide_scaling(session, _runner(request), principal, payload)
    return service.get_execution(session, principal, execution_id)


@router.get("", response_model=Page[schemas.Execution])
def list_workflows(
    session: SessionDep, principal: PrincipalDep, filters: Annotated[schemas.ExecutionFilters, Query()]
) -> Page[schemas.Execution]:
    return service.list_executions(session, principal, filters)


@router.get("/{workflow_id}", response_model=schemas.ExecutionDetail)
def get_workflow(workflow_id: uuid.UUID, session: SessionDep, principal: PrincipalDep) -> schemas.ExecutionDetail:
    """An execution with its steps (in order) and artifacts."""
    return service.get_execution(session, principal, workflow_id)


@router.post("/{workflow_id}/cancel", response_model=schemas.ExecutionDetail)
def cancel_workflow(
    workflow_id: uuid.UUID, request: Request, session: SessionDep, principal: PrincipalDep
) -> schemas.ExecutionDetail:
    """Stop a run. A pending run is cancelled at once; a running, waiting or paused one becomes `cancelling` and a
    worker, at the next safe point, undoes what it did and ends it `cancelled`."""
    service.cancel(session, _runner(request), principal, workflow_id)
    session.flush()
    session.expire_all()
    return service.get_execution(session, principal, workflow_id)


@router.post("/{workflow_id}/resume", response_model=schemas.ExecutionDetail)
def resume_workflow(
    workflow_id: uuid.UUID,
    request: Request,
    session: SessionDep,
    principal: PrincipalDep,
    payload: schemas.Decision | None = None,
) -> schemas.ExecutionDetail:
    """Continue a paused run (a human's decision, recorded with who and why). 409 unless the run is paused."""
    service.resume(session, _runner(request), principal, workflow_id, payload.note if payload else None)
    session.flush()
    session.expire_all()
    return service.get_execution(session, principal, workflow_id)


@router.post("/{workflow_id}/abort", response_model=schemas.ExecutionDetail)
def abort_workflow(
    workflow_id: uuid.UUID, request: Request, session: SessionDep, principal: PrincipalDep
) -> schemas.ExecutionDetail:
    """Stop a paused run: a worker undoes its applied phases in reverse and rolls the optimization back; the run
    ends `cancelled`. 409 unless the run is paused."""
    service.abort(session, _runner(request), principal, workflow_id)
    session.flush()
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
