"""Quality rules: ingest, baselines, settings, and people resolving regressions."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from optiinfra.agents import repository as agent_repository
from optiinfra.auth.principal import Principal, Role
from optiinfra.customers import repository as customer_repository
from optiinfra.errors import ConflictError, InvalidInputError, NotFoundError
from optiinfra.events import service as events
from optiinfra.gcpause import no_cyclic_gc
from optiinfra.metrics import counters
from optiinfra.models import (
    BaselineType,
    Customer,
    QualityBaseline,
    RegressionAction,
    RegressionSeverity,
    ScoringText,
)
from optiinfra.pagination import Page
from optiinfra.quality import monitoring_store, partitions, repository
from optiinfra.quality import schemas as quality_schemas
from optiinfra.quality.monitoring import Reference
from optiinfra.quality.repository import RouteSummary as RouteSummary
from optiinfra.quality.repository import SeriesPoint as SeriesPoint
from optiinfra.quality.scoring import overall_quality_score
from optiinfra.quality.settings import QualitySettings, settings_of, store_settings
from optiinfra.scoring import service as scoring_service
from optiinfra.timeseries import refuse_batch, validate_batch

# Stored as the overall score of a record waiting for its scores; read as missing (metadata.scores_pending).
PENDING_OVERALL = 1.0


def _now() -> datetime:
    return datetime.now(UTC)


def resolve_customer(
    session: Session, principal: Principal, customer_id: uuid.UUID | None, *, for_update: bool = False
) -> Customer:
    """The customer a quality call is about: a customer's own; the one an operator names; for an agent, only a
    customer assigned to it (404 otherwise)."""
    return customer_repository.customer_to_act_for(session, principal, customer_id, for_update=for_update)


def validate_file_records(raw_records: list[dict[str, Any]], now: datetime) -> list[quality_schemas.QualityRecord]:
    """Validate a file's records of any number, batch by batch; any bad record refuses them all, listing every bad
    record's index (in the file's order) and reasons."""
    validated: list[quality_schemas.QualityRecord] = []
    problems: dict[int, list[dict[str, str]]] = {}
    for offset in range(0, len(raw_records), quality_schemas.MAX_BATCH):
        try:
            validated.extend(validate_records(raw_records[offset : offset + quality_schemas.MAX_BATCH], now))
        except InvalidInputError as error:
            if "invalid_count" not in error.details:
                raise
            for bad in error.details.get("records", []):
                problems[offset + int(bad["index"])] = bad["problems"]
    if problems:
        refuse_batch(problems, len(raw_records), "records")
    return validated


# --- ingest ----------------------------------------------------------------------------------------------------


def validate_records(raw_records: list[dict[str, Any]], now: datetime) -> list[quality_schemas.QualityRecord]:
    """Validate a whole batch; any bad record refuses it all, listing every bad record's index and reasons."""
    return validate_batch(
        quality_schemas.QualityRecord, raw_records, now=now, timestamp_field="timestamp", field="records"
    )


def ingest(
    session: Session,
    principal: Principal,
    raw_records: list[dict[str, Any]],
    *,
    customer_id: uuid.UUID | None,
    agent_id: uuid.UUID | None,
    source: str | None = "json",
) -> quality_schemas.IngestResult:
    """Store a batch of quality records atomically; records already stored (same request_id) are skipped. `source`
    (json, import) names the counters the batch adds to; None: the caller counts (OTLP)."""
    with no_cyclic_gc():  # the batch allocates no cycles; see optiinfra.gcpause
        return _ingest(session, principal, raw_records, customer_id=customer_id, agent_id=agent_id, source=source)


def _ingest(
    session: Session,
    principal: Principal,
    raw_records: list[dict[str, Any]],
    *,
    customer_id: uuid.UUID | None,
    agent_id: uuid.UUID | None,
    source: str | None,
) -> quality_schemas.IngestResult:
    principal.require(Role.CUSTOMER, Role.AGENT, Role.OPERATOR)
    principal.require_writable()
    if len(raw_records) > quality_schemas.MAX_BATCH:
        raise InvalidInputError(f"A batch holds at most {quality_schemas.MAX_BATCH} records.")
    customer = resolve_customer(session, principal, customer_id)
    records = validate_records(raw_records, _now())
    if principal.role is Role.AGENT:
        if agent_id is not None and agent_id != principal.agent_id:
            raise InvalidInputError("An agent reports metrics as itself; leave agent_id out.")
        agent_id = principal.agent_id
    elif agent_id is not None:
        agent_repository.get_agent_serving(session, agent_id, customer.id)
    else:
        agent_id = repository.default_application_agent(session, customer.id)
        if agent_id is None:
            raise InvalidInputError(
                "No application agent serves this customer to attribute these metrics to; assign one "
                "(POST /api/v1/agents/{agent_id}/customers) or pass agent_id."
            )
    settings = settings_of(customer)
    weights = settings.weights
    # Records already stored, or repeated inside the batch, count as duplicates and are not sent again.
    seen = repository.stored_request_ids(session, customer.id, [record.request_id for record in records])
    rows = []
    texts: list[tuple[str, str, str, str | None]] = []
    unscorable: dict[int, list[dict[str, str]]] = {}
    for index, record in enumerate(records):
        overall = record.overall_quality_score
        metadata = record.metadata
        to_score = settings.scoring.enabled and record.wants_scoring and record.request_id not in seen
        if to_score:
            # Stored waiting for the scorers' worker: the placeholder overall score is never read as a score.
            overall = PENDING_OVERALL
            metadata = {**metadata, quality_schemas.SCORES_PENDING_KEY: True}
        elif overall is None:
            try:
                overall = overall_quality_score(
                    relevance=record.relevance_score,
                    coherence=record.coherence_score,
                    factuality=record.factuality_score,
                    toxicity=record.toxicity_score,
                    hallucination_detected=record.hallucination_detected,
                    weights=weights,
                )
            except ValueError:
                unscorable[index] = [
                    {
                        "field": "overall_quality_score",
                        "message": "is missing, and none of the components sent has a non-zero weight",
                    }
                ]
                continue
        if record.request_id in seen:
            continue
        seen.add(record.request_id)
        if to_score:
            assert record.prompt is not None
            assert record.response is not None
            texts.append((record.request_id, record.prompt, record.response, record.context))
        rows.append(
            (
                agent_id,
                customer.id,
                record.request_id,
                record.model_name,
                record.model_version,
                record.prompt_tokens,
                record.completion_tokens,
                record.latency_ms,
                record.relevance_score,
                record.coherence_score,
                record.factuality_score,
                record.hallucination_detected,
                record.toxicity_score,
                overall,
                record.timestamp,
                metadata,
            )
        )
    if unscorable:
        refuse_batch(unscorable, len(records), "records")
    inserted = repository.bulk_insert_metrics(session, rows)
    scoring_service.queue_for_scoring(session, customer.id, settings, texts)
    if source is not None:
        labels = {"source": source}
        counters.add(session, "optiinfra_quality_records_ingested", labels, inserted, customer_id=customer.id)
        counters.add(session, "optiinfra_quality_records_duplicate", labels, len(records) - inserted, customer.id)
    return quality_schemas.IngestResult(received=len(records), inserted=inserted, duplicates=len(records) - inserted)


def request_records_deletion(
    session: Session, principal: Principal, customer_id: uuid.UUID
) -> quality_schemas.RecordsDeletion:
    """Have the worker delete every per-request quality record of the customer stored until now (its idempotency keys
    and texts go with them; baselines, regressions and other customers' records stay). Operators only."""
    principal.require(Role.OPERATOR)
    principal.require_writable()
    customer = resolve_customer(session, principal, customer_id, for_update=True)
    requested_at = partitions.request_deletion(customer, _now())
    events.record(
        session,
        event_type="quality.records_deletion_requested",
        actor=principal,
        customer_id=customer.id,
        subject={"customer_id": str(customer.id)},
        after={"requested_at": requested_at.isoformat()},
    )
    return quality_schemas.RecordsDeletion(customer_id=customer.id, requested_at=requested_at)


def record_detail(
    session: Session, principal: Principal, customer_id: uuid.UUID | None, request_id: str
) -> quality_schemas.RecordDetail:
    """One of the customer's records, with its text while it is kept (404 for another tenant's or a missing one)."""
    customer = resolve_customer(session, principal, customer_id)
    record = repository.get_record(session, customer.id, request_id)
    if record is None:
        raise NotFoundError("No such quality record.", details={"request_id": request_id})
    stored_text = session.scalar(select(ScoringText).where(ScoringText.quality_metric_id == record.id))
    pending = quality_schemas.SCORES_PENDING_KEY in record.metadata_
    return quality_schemas.RecordDetail(
        request_id=record.request_id,
        model_name=record.model_name,
        model_version=record.model_version,
        timestamp=record.timestamp,
        latency_ms=record.latency_ms,
        relevance_score=record.relevance_score,
        coherence_score=record.coherence_score,
        factuality_score=record.factuality_score,
        toxicity_score=record.toxicity_score,
        hallucination_detected=record.hallucination_detected,
        overall_quality_score=None if pending else record.overall_quality_score,
        scores_pending=pending,
        metadata=record.metadata_,
        text=None
        if stored_text is None
        else quality_schemas.RecordText(
            prompt=stored_text.prompt,
            response=stored_text.response,
            context=stored_text.context,
            scored_at=stored_text.scored_at,
            expires_at=stored_text.expires_at,
        ),
    )


# --- baselines -------------------------------------------------------------------------------------------------


def establish_baseline(
    session: Session, principal: Principal, request: quality_schemas.BaselineCreate
) -> quality_schemas.Baseline:
    """Summarise a window of one model version into a new baseline, which replaces the active one."""
    principal.require(Role.CUSTOMER, Role.AGENT, Role.OPERATOR)
    principal.require_writable()
    customer = resolve_customer(session, principal, request.customer_id, for_update=True)
    settings = settings_of(customer)
    window = request.window
    rows = repository.read_window(
        session,
        customer.id,
        request.model_name,
        model_version=request.model_version,
        start=window.start,
        end=window.end,
        last_n=window.last_n,
    )
    scored = sum(1 for overall in rows.overall if overall is not None)  # records still waiting for scores do not count
    if scored < settings.min_samples:
        raise InvalidInputError(
            f"A baseline needs at least {settings.min_samples} records; the window has {scored}.",
            details={"sample_size": scored, "min_samples": settings.min_samples},
        )
    now = _now()
    latest = repository.latest_baseline(session, customer.id, request.model_name, request.model_version)
    if latest is None:
        baseline_type = BaselineType.INITIAL
    elif repository.rollback_since(
        session, customer.id, request.model_name, request.model_version, latest.established_at
    ):
        baseline_type = BaselineType.ROLLBACK
    else:
        baseline_type = BaselineType.UPDATED
    # The window holds at least min_samples records (checked above).
    assert rows.first_at is not None
    assert rows.last_at is not None
    assert rows.agent_id is not None
    start = window.start or rows.first_at
    end = window.end or rows.last_at + timedelta(microseconds=1)
    reference = monitoring_store.reference_from_db(
        session,
        customer.id,
        request.model_name,
        request.model_version,
        start,
        end,
        [],
        low_quantile=settings.monitoring.low_score_quantile,
        toxic_threshold=settings.monitoring.toxic_threshold,
        min_records=settings.min_samples,
    )
    repository.expire_baselines(session, customer.id, request.model_name, request.model_version, now)
    baseline = build_baseline(
        customer_id=customer.id,
        agent_id=rows.agent_id,
        model_name=request.model_name,
        model_version=request.model_version,
        baseline_type=baseline_type,
        rows=rows,
        established_at=now,
        valid_until=request.valid_until,
        window={
            "start": (window.start or rows.first_at).isoformat(),
            "end": (window.end or rows.last_at).isoformat(),
            "last_n": window.last_n,
        },
        reference=reference,
    )
    # The scorers of the window's newest scored record: a later change of scorers ends this baseline (worker.py).
    baseline.metadata_ = {
        **baseline.metadata_,
        "scorer_set": monitoring_store.current_scorer_set(
            session, customer.id, request.model_name, request.model_version, end
        )[1],
    }
    session.add(baseline)
    session.flush()
    events.record(
        session,
        event_type="quality.baseline_established",
        actor=principal,
        customer_id=customer.id,
        agent_id=baseline.agent_id,
        subject={
            "baseline_id": str(baseline.id),
            "model_name": baseline.model_name,
            "model_version": baseline.model_version,
        },
        after={
            "baseline_type": str(baseline.baseline_type),
            "sample_size": baseline.sample_size,
            "avg_overall_score": baseline.avg_overall_score,
        },
    )
    return quality_schemas.Baseline.model_validate(baseline)


def build_baseline(
    *,
    customer_id: uuid.UUID,
    agent_id: uuid.UUID,
    model_name: str,
    model_version: str,
    baseline_type: BaselineType,
    rows: repository.WindowRows,
    established_at: datetime,
    valid_until: datetime | None,
    window: dict[str, Any],
    reference: Reference | None = None,
    policy: str = "manual",
) -> QualityBaseline:
    """A QualityBaseline summarising `rows` (used by the service and by the demo data alike); with the monitoring's
    stratified reference when given, and how it was established (`policy`: manual or automatic)."""
    summary = rows.summarize()
    components = summary.components
    overall_mean = components["overall_quality_score"].mean
    assert overall_mean is not None
    return QualityBaseline(
        customer_id=customer_id,
        agent_id=agent_id,
        model_name=model_name,
        model_version=model_version,
        baseline_type=baseline_type,
        sample_size=summary.sample_size,
        avg_relevance_score=components["relevance_score"].mean,
        avg_coherence_score=components["coherence_score"].mean,
        avg_factuality_score=components["factuality_score"].mean,
        avg_overall_score=overall_mean,
        p95_latency_ms=summary.latency_ms.p95,
        established_at=established_at,
        valid_until=valid_until,
        metadata_={
            **summary.model_dump(mode="json"),
            "window": window,
            "policy": policy,
            **({"monitoring": reference.to_json()} if reference is not None else {}),
        },
    )


def list_baselines(
    session: Session, principal: Principal, filters: quality_schemas.BaselineFilters
) -> Page[quality_schemas.Baseline]:
    return repository.list_baselines(session, principal, filters).map(quality_schemas.Baseline.model_validate)


# --- settings --------------------------------------------------------------------------------------------------


def get_settings(session: Session, principal: Principal, customer_id: uuid.UUID | None) -> QualitySettings:
    return settings_of(resolve_customer(session, principal, customer_id))


def update_settings(
    session: Session, principal: Principal, customer_id: uuid.UUID | None, settings: QualitySettings
) -> QualitySettings:
    principal.require(Role.CUSTOMER, Role.OPERATOR)
    principal.require_writable()
    customer = resolve_customer(session, principal, customer_id, for_update=True)
    before = settings_of(customer)
    store_settings(customer, settings)
    session.flush()
    events.record(
        session,
        event_type="quality.settings_updated",
        actor=principal,
        customer_id=customer.id,
        before=before.model_dump(mode="json"),
        after=settings.model_dump(mode="json"),
    )
    return settings


# --- regressions -----------------------------------------------------------------------------------------------


def list_regressions(
    session: Session, principal: Principal, filters: quality_schemas.RegressionFilters
) -> Page[quality_schemas.Regression]:
    return repository.list_regressions(session, principal, filters).map(quality_schemas.Regression.model_validate)


def get_regression(session: Session, principal: Principal, regression_id: uuid.UUID) -> quality_schemas.Regression:
    return quality_schemas.Regression.model_validate(repository.get_regression(session, principal, regression_id))


def resolve_regression(
    session: Session, principal: Principal, regression_id: uuid.UUID, notes: str
) -> quality_schemas.Regression:
    """A person marks a regression resolved, with notes."""
    principal.require(Role.CUSTOMER, Role.OPERATOR)
    principal.require_writable()
    regression = repository.get_regression(session, principal, regression_id, for_update=True)
    if regression.resolved_at is not None:
        raise ConflictError(
            "The regression is already resolved.", details={"resolved_at": regression.resolved_at.isoformat()}
        )
    regression.resolved_at = _now()
    regression.resolution_notes = notes
    session.flush()
    events.record(
        session,
        event_type="quality.regression_resolved",
        actor=principal,
        customer_id=regression.customer_id,
        agent_id=regression.agent_id,
        subject={"regression_id": str(regression.id), "metric_name": regression.metric_name},
        before={"resolved": False},
        after={"resolved": True},
        extra={"notes": notes},
    )
    return quality_schemas.Regression.model_validate(regression)


# --- incidents (the dashboard's view of regressions) ---------------------------------------------------------------

SEVERITY_ORDER = list(RegressionSeverity)
# The strongest action wins when an incident's regressions differ.
ACTION_ORDER = [
    RegressionAction.ALERT_ONLY,
    RegressionAction.AUTO_FIXED,
    RegressionAction.MANUAL_REVIEW,
    RegressionAction.ROLLBACK_TRIGGERED,
]
INCIDENT_SCAN = 1000  # regressions read to group into incidents (the newest)
RECORDS_PAGE = 50
DEFAULT_WINDOW_MINUTES = 60


def _window_start(regression: quality_schemas.Regression) -> datetime:
    """Where the records behind a regression begin: the start of the window a detection read (metadata.window),
    or, for the monitoring, its window's length before detection."""
    window = regression.metadata.get("window")
    if isinstance(window, dict) and isinstance(window.get("start"), str):
        try:
            return datetime.fromisoformat(window["start"])
        except ValueError:
            pass
    evidence = regression.metadata.get("evidence") or {}
    minutes = int(evidence.get("window_minutes") or DEFAULT_WINDOW_MINUTES)
    return regression.detected_at - timedelta(minutes=minutes)


def _incident(regressions: list[quality_schemas.Regression]) -> quality_schemas.Incident:
    first = regressions[0]
    is_open = any(r.resolved_at is None for r in regressions)
    return quality_schemas.Incident(
        id=first.id,
        customer_id=first.customer_id,
        model_name=first.model_name,
        model_version=first.model_version,
        severity=max((r.severity for r in regressions), key=SEVERITY_ORDER.index),
        started_at=first.detected_at,
        ended_at=None if is_open else max(r.resolved_at for r in regressions if r.resolved_at is not None),
        window_start=min(_window_start(r) for r in regressions),
        action_taken=max((r.action_taken for r in regressions), key=ACTION_ORDER.index),
        rolled_back_optimization_ids=sorted(
            {
                str(r.metadata["rolled_back_optimization_id"])
                for r in regressions
                if r.metadata.get("rolled_back_optimization_id")
            }
        ),
        regressions=regressions,
    )


def group_incidents(regressions: list[quality_schemas.Regression]) -> list[quality_schemas.Incident]:
    """Regressions grouped into incidents, newest first: per (customer, model, version), a regression joins the
    incident it was detected in (detected before every regression of it was resolved), else opens a new one."""
    groups: dict[tuple[uuid.UUID, str | None, str | None], list[list[quality_schemas.Regression]]] = {}
    for regression in sorted(regressions, key=lambda r: (r.detected_at, str(r.id))):
        key = (regression.customer_id, regression.model_name, regression.model_version)
        runs = groups.setdefault(key, [])
        if runs:
            current = runs[-1]
            ends = [r.resolved_at for r in current]
            if any(end is None for end in ends) or regression.detected_at <= max(e for e in ends if e is not None):
                current.append(regression)
                continue
        runs.append([regression])
    incidents = [_incident(run) for runs in groups.values() for run in runs]
    return sorted(incidents, key=lambda i: (i.started_at, str(i.id)), reverse=True)


def list_incidents(
    session: Session, principal: Principal, *, customer_id: uuid.UUID | None, is_open: bool | None
) -> list[quality_schemas.Incident]:
    """The caller's incidents, newest first, grouped from its newest INCIDENT_SCAN regressions."""
    # Past the API's page limit: the incidents are grouped from one read (model_construct: trusted values).
    scan = quality_schemas.RegressionFilters.model_construct(customer_id=customer_id, limit=INCIDENT_SCAN)
    rows = repository.list_regressions(session, principal, scan).items
    incidents = group_incidents([quality_schemas.Regression.model_validate(r) for r in rows])
    if is_open is not None:
        incidents = [i for i in incidents if i.is_open == is_open]
    return incidents


def get_incident(session: Session, principal: Principal, incident_id: uuid.UUID) -> quality_schemas.Incident:
    """The incident that one of its regressions belongs to (404 if the caller may not see the regression)."""
    regression = repository.get_regression(session, principal, incident_id)
    scan = quality_schemas.RegressionFilters.model_construct(
        customer_id=regression.customer_id, model_name=regression.model_name, limit=INCIDENT_SCAN
    )
    rows = repository.list_regressions(session, principal, scan).items
    same_version = [
        quality_schemas.Regression.model_validate(r) for r in rows if r.model_version == regression.model_version
    ]
    if regression.id not in {r.id for r in same_version}:
        same_version.append(quality_schemas.Regression.model_validate(regression))
    return next(i for i in group_incidents(same_version) if regression.id in {r.id for r in i.regressions})


def incident_records(
    session: Session,
    principal: Principal,
    incident_id: uuid.UUID,
    *,
    route: str | None,
    instance: str | None,
    after: str | None,
) -> quality_schemas.IncidentRecords:
    """One page (RECORDS_PAGE) of the records of an incident's window, from the start of the longest window that
    flagged it to its end (or now), optionally of one route and one instance. `after` is the previous page's
    `next_after` cursor."""
    incident = get_incident(session, principal, incident_id)
    start, end = incident.window_start, incident.ended_at or _now()
    cursor: tuple[datetime, str] | None = None
    if after:
        stamp, _, request_id = after.partition("|")
        try:
            cursor = (datetime.fromisoformat(stamp), request_id)
        except ValueError as error:
            raise InvalidInputError("Not a page cursor.", details={"after": after[:100]}) from error
    if incident.model_name is None or incident.model_version is None:
        routes: list[tuple[str, int]] = []
        instances: list[tuple[str, int]] = []
        rows = []
    else:
        routes, instances = repository.window_facets(
            session, incident.customer_id, incident.model_name, incident.model_version, start, end
        )
        rows = repository.window_records(
            session,
            incident.customer_id,
            incident.model_name,
            incident.model_version,
            start,
            end,
            route=route,
            instance=instance,
            after=cursor,
            limit=RECORDS_PAGE + 1,
        )
    page = rows[:RECORDS_PAGE]
    next_after = (
        f"{page[-1].timestamp.isoformat()}|{page[-1].request_id}" if len(rows) > RECORDS_PAGE and page else None
    )
    return quality_schemas.IncidentRecords(
        incident=incident,
        start=start,
        end=end,
        routes=routes,
        instances=instances,
        records=[quality_schemas.IncidentRecord.model_validate(r) for r in page],
        next_after=next_after,
    )


def resolve_incident(
    session: Session, principal: Principal, incident_id: uuid.UUID, notes: str
) -> quality_schemas.Incident:
    """A person resolves an incident: each of its regressions still open, with the same notes."""
    incident = get_incident(session, principal, incident_id)
    still_open = [r for r in incident.regressions if r.resolved_at is None]
    if not still_open:
        raise ConflictError("The incident is already resolved.", details={"incident_id": str(incident_id)})
    for regression in still_open:
        resolve_regression(session, principal, regression.id, notes)
    return get_incident(session, principal, incident_id)


# --- the dashboard's reads --------------------------------------------------------------------------------------


def model_versions(session: Session, principal: Principal, customer_id: uuid.UUID | None) -> list[tuple[str, str]]:
    """The customer's (model, version) pairs that have records or baselines, sorted."""
    principal.require(Role.CUSTOMER, Role.AGENT, Role.OPERATOR)
    customer = resolve_customer(session, principal, customer_id)
    return repository.model_versions_of(session, customer.id)


def quality_series(
    session: Session,
    principal: Principal,
    customer_id: uuid.UUID | None,
    model_name: str,
    model_version: str,
    since: datetime,
    bucket: timedelta,
    route: str | None = None,
) -> list[SeriesPoint]:
    """Per bucket since `since`: request count, mean overall score, p95 latency and hallucination rate (whole hours
    from the hourly rollups, finer buckets from the records); with `route`, only that route's records."""
    principal.require(Role.CUSTOMER, Role.AGENT, Role.OPERATOR)
    customer = resolve_customer(session, principal, customer_id)
    return repository.bucketed_series(session, customer.id, model_name, model_version, since, bucket, route)


def route_breakdown(
    session: Session,
    principal: Principal,
    customer_id: uuid.UUID | None,
    model_name: str,
    model_version: str,
    since: datetime,
) -> list[RouteSummary]:
    """Per route since `since`, busiest first: request count, mean overall score, p95 latency, hallucination rate."""
    principal.require(Role.CUSTOMER, Role.AGENT, Role.OPERATOR)
    customer = resolve_customer(session, principal, customer_id)
    return repository.route_breakdown(session, customer.id, model_name, model_version, since)


def active_baseline(
    session: Session, principal: Principal, customer_id: uuid.UUID | None, model_name: str, model_version: str
) -> quality_schemas.Baseline | None:
    """The model version's baseline in force now, if any."""
    principal.require(Role.CUSTOMER, Role.AGENT, Role.OPERATOR)
    customer = resolve_customer(session, principal, customer_id)
    baseline = repository.active_baseline(session, customer.id, model_name, model_version, _now())
    return None if baseline is None else quality_schemas.Baseline.model_validate(baseline)
