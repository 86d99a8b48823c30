"""/api/v1/quality"""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Body, Path, Query
from fastapi.responses import JSONResponse
from sqlalchemy.orm import Session

from optiinfra.api.deps import PrincipalDep, SessionDep
from optiinfra.api.errors import error_response
from optiinfra.api.pagination import Page
from optiinfra.api.strict import StrictRoute
from optiinfra.auth.principal import Principal
from optiinfra.errors import InvalidInputError
from optiinfra.metrics import counters
from optiinfra.quality import abtest, detection, service
from optiinfra.quality import schemas as quality_schemas
from optiinfra.quality.settings import QualitySettings
from optiinfra.recommendations.service import rollback_for_quality

router = APIRouter(prefix="/quality", tags=["quality"], route_class=StrictRoute)


class SingleRecord(quality_schemas.QualityRecord):
    """One record, optionally naming the customer (operator and agent keys) and the agent."""

    customer_id: uuid.UUID | None = None
    agent_id: uuid.UUID | None = None


def _ingest(
    session: Session,
    principal: Principal,
    records: list[dict[str, Any]],
    customer_id: uuid.UUID | None,
    agent_id: uuid.UUID | None,
) -> quality_schemas.IngestResult | JSONResponse:
    """The ingest; a batch refused for invalid records is answered 422 while the refusal is counted (the request's
    transaction then commits only the counter: the savepoint took back everything else)."""
    try:
        with session.begin_nested():
            return service.ingest(session, principal, records, customer_id=customer_id, agent_id=agent_id)
    except InvalidInputError as error:
        refused = int(error.details.get("invalid_count") or 0)
        if not refused:
            raise
        counters.add(session, "optiinfra_quality_records_rejected", {"source": "json"}, refused)
        details = {**error.details, **({"fix": error.fix} if error.fix else {})}
        return error_response(error.status_code, error.code, error.message, details)


@router.post("/metrics", response_model=quality_schemas.IngestResult)
def ingest_metrics(
    payload: Annotated[quality_schemas.IngestRequest | SingleRecord, Body()],
    session: SessionDep,
    principal: PrincipalDep,
) -> quality_schemas.IngestResult | JSONResponse:
    """Store one record or a batch of up to 10,000. A batch with any invalid record is refused whole (422, with each
    bad record's index and reasons); records whose request_id is already stored are counted as duplicates."""
    if isinstance(payload, SingleRecord):
        record = payload.model_dump(mode="json", exclude={"customer_id", "agent_id"}, exclude_none=True)
        return _ingest(session, principal, [record], payload.customer_id, payload.agent_id)
    return _ingest(session, principal, payload.records, payload.customer_id, payload.agent_id)


@router.get("/metrics/{request_id}", response_model=quality_schemas.RecordDetail)
def get_record(
    request_id: Annotated[str, Path(min_length=1, max_length=255, pattern=r"^[^\x00]+$")],
    session: SessionDep,
    principal: PrincipalDep,
    customer_id: uuid.UUID | None = None,
) -> quality_schemas.RecordDetail:
    """One record: its scores, the scorers' versions and raw scores in its metadata, and its text while it waits for
    scoring or is kept for drill-down (`scoring.keep_text`)."""
    return service.record_detail(session, principal, customer_id, request_id)


@router.post("/records/deletion", status_code=202, response_model=quality_schemas.RecordsDeletion)
def request_records_deletion(
    payload: quality_schemas.RecordsDeletionRequest, session: SessionDep, principal: PrincipalDep
) -> quality_schemas.RecordsDeletion:
    """Delete one customer's per-request quality records stored until now (operators only). The worker deletes
    them in bounded batches; other customers' records, and the customer's baselines and regressions, stay."""
    return service.request_records_deletion(session, principal, payload.customer_id)


@router.post("/baselines", status_code=201, response_model=quality_schemas.Baseline)
def establish_baseline(
    payload: quality_schemas.BaselineCreate, session: SessionDep, principal: PrincipalDep
) -> quality_schemas.Baseline:
    """Establish a baseline for a model version from a window (time range or last N records)."""
    return service.establish_baseline(session, principal, payload)


@router.get("/baselines", response_model=Page[quality_schemas.Baseline])
def list_baselines(
    session: SessionDep, principal: PrincipalDep, filters: Annotated[quality_schemas.BaselineFilters, Query()]
) -> Page[quality_schemas.Baseline]:
    return service.list_baselines(session, principal, filters)


@router.post("/detect", response_model=quality_schemas.DetectionReport)
def detect(
    payload: quality_schemas.DetectRequest, session: SessionDep, principal: PrincipalDep
) -> quality_schemas.DetectionReport:
    """Judge a window of one model version against its active baseline; record regressions and act on them."""
    return detection.detect(session, principal, payload, rollback_for_quality)


@router.get("/regressions", response_model=Page[quality_schemas.Regression])
def list_regressions(
    session: SessionDep, principal: PrincipalDep, filters: Annotated[quality_schemas.RegressionFilters, Query()]
) -> Page[quality_schemas.Regression]:
    return service.list_regressions(session, principal, filters)


@router.get("/regressions/{regression_id}", response_model=quality_schemas.Regression)
def get_regression(
    regression_id: uuid.UUID, session: SessionDep, principal: PrincipalDep
) -> quality_schemas.Regression:
    return service.get_regression(session, principal, regression_id)


@router.post("/regressions/{regression_id}/resolve", response_model=quality_schemas.Regression)
def resolve_regression(
    regression_id: uuid.UUID, payload: quality_schemas.ResolveRequest, session: SessionDep, principal: PrincipalDep
) -> quality_schemas.Regression:
    """Mark a regression resolved, with notes (customer or operator)."""
    return service.resolve_regression(session, principal, regression_id, payload.notes)


@router.post("/abtest", response_model=quality_schemas.ABTestResult)
def ab_test(
    payload: quality_schemas.ABTestRequest, session: SessionDep, principal: PrincipalDep
) -> quality_schemas.ABTestResult:
    """Compare a control and a candidate arm: per-arm statistics, tests, and promote / reject / inconclusive."""
    return abtest.run_ab_test(session, principal, payload)


@router.get("/settings", response_model=QualitySettings)
def get_settings(session: SessionDep, principal: PrincipalDep, customer_id: uuid.UUID | None = None) -> QualitySettings:
    """Score weights, judge thresholds and the action policy in force (defaults where not set)."""
    return service.get_settings(session, principal, customer_id)


@router.put("/settings", response_model=QualitySettings)
def update_settings(
    payload: QualitySettings, session: SessionDep, principal: PrincipalDep, customer_id: uuid.UUID | None = None
) -> QualitySettings:
    return service.update_settings(session, principal, customer_id, payload)
