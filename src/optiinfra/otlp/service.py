"""OTLP ingest rules: spans become quality records through the quality ingest; evaluations become their scores.

Per request, per customer: every LLM span is mapped, validated and stored through `quality.service.ingest` (COPY,
idempotent on request id); spans and log records that cannot be used are rejected with a reason in the OTLP
`partial_success`; non-LLM spans are skipped and counted; attributes and evaluation names that are not understood
are counted in the customer's report. Evaluations land on their record whenever they arrive: with the span, after
it (the stored record is updated), or before it (they wait in the event log and are applied when the span comes).
"""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.trace.v1.trace_pb2 import Span
from sqlalchemy.orm import Session

from optiinfra.auth.principal import Principal, Role
from optiinfra.errors import ForbiddenError, InvalidInputError, NotFoundError
from optiinfra.events import service as events
from optiinfra.metrics import counters
from optiinfra.models import Customer
from optiinfra.otlp import repository
from optiinfra.otlp import schemas as otlp_schemas
from optiinfra.otlp.mapping import (
    CUSTOMER_ATTRIBUTE,
    EVALUATION_EVENT,
    PENDING_KEY,
    Evaluation,
    MappedSpan,
    Unmapped,
    attributes,
    evaluation_of,
    evaluation_problem,
    map_span,
    score_fields,
    span_evaluations,
    span_key,
)
from optiinfra.otlp.settings import OtlpSettings, otlp_settings_of, store_otlp_settings
from optiinfra.quality import repository as quality_repository
from optiinfra.quality import service as quality_service
from optiinfra.quality.schemas import MAX_BATCH
from optiinfra.quality.scoring import overall_quality_score
from optiinfra.quality.settings import settings_of

MAX_MESSAGE_CHARS = 2_000
_EMPTY_ID = "0" * 16


def _now() -> datetime:
    return datetime.now(UTC)


@dataclass
class ExportOutcome:
    """What one export request did: rejected items with their reasons, and counts for the caller's logs."""

    rejected: int = 0
    reasons: Counter[str] = field(default_factory=Counter)
    stored: int = 0
    duplicates: int = 0
    skipped: int = 0
    evaluations_applied: int = 0
    evaluations_waiting: int = 0

    def reject(self, reason: str, count: int = 1) -> None:
        if count:
            self.rejected += count
            self.reasons[reason] += count

    @property
    def message(self) -> str:
        """The partial_success error_message: every distinct reason with its count."""
        text = "; ".join(f"{count} rejected: {reason}" for reason, count in self.reasons.most_common())
        return text if len(text) <= MAX_MESSAGE_CHARS else text[: MAX_MESSAGE_CHARS - 1] + "…"


def _named_customer(principal: Principal, resource_attrs: dict[str, Any]) -> uuid.UUID | None:
    raw = resource_attrs.get(CUSTOMER_ATTRIBUTE)
    if raw is None or raw == "":
        if principal.role is Role.CUSTOMER:
            return None
        raise InvalidInputError(
            f"agent and operator keys name the customer with the resource attribute {CUSTOMER_ATTRIBUTE}"
        )
    try:
        return uuid.UUID(str(raw))
    except ValueError:
        raise InvalidInputError(f"resource attribute {CUSTOMER_ATTRIBUTE} {str(raw)[:64]!r} is not a UUID") from None


T = TypeVar("T")


def _group_by_customer(
    principal: Principal, resources: Iterable[tuple[dict[str, Any], list[T]]], outcome: ExportOutcome
) -> dict[uuid.UUID | None, list[tuple[dict[str, Any], T]]]:
    groups: dict[uuid.UUID | None, list[tuple[dict[str, Any], T]]] = {}
    for resource_attrs, items in resources:
        try:
            customer_id = _named_customer(principal, resource_attrs)
        except InvalidInputError as error:
            outcome.reject(error.message, len(items))
            continue
        groups.setdefault(customer_id, []).extend((resource_attrs, item) for item in items)
    return groups


def _resolve(
    session: Session, principal: Principal, customer_id: uuid.UUID | None, count: int, outcome: ExportOutcome
) -> Customer | None:
    """The customer (with the same checks as the JSON ingest), or None with every item rejected."""
    try:
        return quality_service.resolve_customer(session, principal, customer_id)
    except (NotFoundError, InvalidInputError, ForbiddenError) as error:
        reason = error.message
        if customer_id is not None:
            reason = f"{reason} ({CUSTOMER_ATTRIBUTE} {customer_id})"
        outcome.reject(reason, count)
        return None


def _begin(principal: Principal) -> None:
    principal.require(Role.CUSTOMER, Role.AGENT, Role.OPERATOR)
    principal.require_writable()


# --- traces ----------------------------------------------------------------------------------------------------


def export_traces(session: Session, principal: Principal, request: ExportTraceServiceRequest) -> ExportOutcome:
    """Store the LLM spans of an OTLP trace export as quality records, and their evaluation events as scores."""
    _begin(principal)
    outcome = ExportOutcome()
    resources = (
        (attributes(rs.resource.attributes), [span for ss in rs.scope_spans for span in ss.spans])
        for rs in request.resource_spans
    )
    for customer_id, items in _group_by_customer(principal, resources, outcome).items():
        customer = _resolve(session, principal, customer_id, len(items), outcome)
        if customer is not None:
            _ingest_spans(session, principal, customer, items, outcome)
    labels = {"source": "otlp"}
    counters.add(session, "optiinfra_quality_records_ingested", labels, outcome.stored)
    counters.add(session, "optiinfra_quality_records_duplicate", labels, outcome.duplicates)
    counters.add(session, "optiinfra_quality_records_rejected", labels, outcome.rejected)
    return outcome


def _ingest_spans(
    session: Session,
    principal: Principal,
    customer: Customer,
    items: Sequence[tuple[dict[str, Any], Span]],
    outcome: ExportOutcome,
) -> None:
    settings = otlp_settings_of(customer)
    weights = settings_of(customer).weights
    unmapped = Unmapped()
    mapped: list[MappedSpan] = []
    evaluations: list[Evaluation] = []
    for resource_attrs, span in items:
        span_attrs = attributes(span.attributes)
        evaluations.extend(span_evaluations(span, settings))
        result = map_span(span, span_attrs, resource_attrs, settings, unmapped)
        if isinstance(result, MappedSpan):
            mapped.append(result)
        elif result.rejected:
            outcome.reject(result.reason)
            unmapped.add("rejected_span", result.reason, span.name)
        else:
            outcome.skipped += 1
            unmapped.add("skipped_span", result.reason, span.name)
    usable = _usable(evaluations, unmapped)
    keys = {key for m in mapped for key in m.match_keys} | {key for e in usable for key in e.match_keys}
    repository.lock_keys(session, customer.id, keys)

    # Evaluations that came before their span, then the ones in this request, in arrival order.
    span_keys = [key for m in mapped for key in m.match_keys]
    waiting = repository.pending_evaluations(session, customer.id, span_keys, _now() - repository.PENDING_RETENTION)
    by_key: dict[str, list[Evaluation]] = {}
    for evaluation in [*waiting, *usable]:
        for key in evaluation.match_keys:
            by_key.setdefault(key, []).append(evaluation)
    already_stored = quality_repository.stored_request_ids(
        session, customer.id, [m.record["request_id"] for m in mapped]
    )
    landed: set[int] = set()
    records = []
    for llm_span in mapped:
        record = llm_span.record
        if record["request_id"] in already_stored:
            continue  # a re-sent span: counted as a duplicate below; its evaluations update the stored record
        on_span = _unique(evaluation for key in llm_span.match_keys for evaluation in by_key.get(key, []))
        landed.update(id(evaluation) for evaluation in on_span)
        _score(record, on_span, weights)
        records.append(record)
    outcome.duplicates += len(mapped) - len(records)
    for start in range(0, len(records), MAX_BATCH):
        _store(session, principal, customer, records[start : start + MAX_BATCH], outcome, unmapped)
    outcome.evaluations_applied += sum(1 for evaluation in usable if id(evaluation) in landed)
    later = [evaluation for evaluation in usable if id(evaluation) not in landed]
    _apply_evaluations(session, principal, customer, later, weights, outcome)
    _record_report(session, principal, customer.id, unmapped)


def _unique(evaluations: Iterable[Evaluation]) -> list[Evaluation]:
    seen: set[int] = set()
    unique = []
    for evaluation in evaluations:
        if id(evaluation) not in seen:
            seen.add(id(evaluation))
            unique.append(evaluation)
    return unique


def _usable(evaluations: Sequence[Evaluation], unmapped: Unmapped) -> list[Evaluation]:
    """Evaluations that can become a score; the others are counted in the report."""
    usable = []
    for evaluation in evaluations:
        problem = evaluation_problem(evaluation)
        if problem is None:
            usable.append(evaluation)
        elif evaluation.component is None:
            unmapped.add("evaluation_name", evaluation.name or "(no gen_ai.evaluation.name)", problem)
        else:
            unmapped.add("unusable_evaluation", problem, evaluation.name)
    return usable


def _overall(scores: dict[str, Any], weights: dict[str, float]) -> float | None:
    """The overall score from the components present, or None while no evaluation has arrived."""
    if all(scores.get(name) is None for name in repository.SCORE_COLUMNS):
        return None
    try:
        return overall_quality_score(
            relevance=scores.get("relevance_score"),
            coherence=scores.get("coherence_score"),
            factuality=scores.get("factuality_score"),
            toxicity=scores.get("toxicity_score"),
            hallucination_detected=bool(scores.get("hallucination_detected")),
            weights=weights,
        )
    except ValueError:
        return None


# Stored while a record's evaluations have not arrived; the judge, baselines and charts read such a record's
# overall score as missing (metadata.scores_pending), never as this value.
PENDING_OVERALL = 1.0


def _note(metadata: dict[str, Any], evaluations: Sequence[Evaluation]) -> None:
    """Keep each evaluation's name, score and label on the record, for people reading it."""
    if evaluations:
        noted = dict(metadata.get("evaluations") or {})
        for evaluation in evaluations:
            noted[evaluation.name] = {"score": evaluation.score, "label": evaluation.label}
        metadata["evaluations"] = noted


def _score(record: dict[str, Any], evaluations: Sequence[Evaluation], weights: dict[str, float]) -> None:
    for evaluation in evaluations:
        record.update(score_fields(evaluation))
    _note(record["metadata"], evaluations)
    overall = _overall(record, weights)
    if overall is None:
        record["overall_quality_score"] = PENDING_OVERALL
        record["metadata"][PENDING_KEY] = True
    else:
        record["overall_quality_score"] = overall


def _store(
    session: Session,
    principal: Principal,
    customer: Customer,
    records: list[dict[str, Any]],
    outcome: ExportOutcome,
    unmapped: Unmapped,
) -> None:
    """Store records through the quality ingest. It refuses a batch with any invalid record, naming each one (and
    writing nothing), so those are rejected with their first problem and the rest is sent again."""
    remaining = records
    while remaining:
        try:
            ingested = quality_service.ingest(
                session, principal, remaining, customer_id=customer.id, agent_id=None, source=None
            )
        except InvalidInputError as error:
            listed = error.details.get("records") or []
            if not listed:
                outcome.reject(error.message, len(remaining))
                return
            bad = set()
            for entry in listed:
                bad.add(entry["index"])
                problem = entry["problems"][0]
                reason = f"{problem['field']} {problem['message']}"
                outcome.reject(reason)
                unmapped.add("rejected_span", reason, remaining[entry["index"]].get("request_id"))
            remaining = [record for index, record in enumerate(remaining) if index not in bad]
        else:
            outcome.stored += ingested.inserted
            outcome.duplicates += ingested.duplicates
            return


def _apply_evaluations(
    session: Session,
    principal: Principal,
    customer: Customer,
    evaluations: Sequence[Evaluation],
    weights: dict[str, float],
    outcome: ExportOutcome,
) -> None:
    """Land evaluations on stored records; the ones whose span has not arrived wait for it."""
    if not evaluations:
        return
    keys = sorted({key for evaluation in evaluations for key in evaluation.match_keys})
    span_ids = sorted({evaluation.span_id for evaluation in evaluations if evaluation.span_id})
    stored = repository.stored_records(session, customer.id, keys, span_ids, _now() - repository.PENDING_RETENTION)
    by_key: dict[str, repository.StoredRecord] = {}
    for record in stored:
        by_key[record.request_id] = record
        trace_id, span_id = record.metadata.get("trace_id"), record.metadata.get("span_id")
        if trace_id and span_id:
            by_key.setdefault(span_key(str(trace_id), str(span_id)), record)
    landed: dict[uuid.UUID, list[Evaluation]] = {}
    waiting = []
    for evaluation in evaluations:
        target = next((by_key[key] for key in evaluation.match_keys if key in by_key), None)
        if target is None:
            waiting.append(evaluation)
        else:
            landed.setdefault(target.id, []).append(evaluation)
    updates = []
    for record in stored:
        arrived = landed.get(record.id)
        if not arrived:
            continue
        for evaluation in arrived:
            record.scores.update(score_fields(evaluation))
        metadata = dict(record.metadata)
        _note(metadata, arrived)
        overall = _overall(record.scores, weights)
        if overall is not None:
            metadata.pop(PENDING_KEY, None)
        update: dict[str, Any] = {
            "id": record.id,
            "timestamp": record.timestamp,
            **record.scores,
            "metadata_": metadata,
        }
        if overall is not None:
            update["overall_quality_score"] = overall
        updates.append(update)
        outcome.evaluations_applied += len(arrived)
    # One statement per shape of update (with or without a new overall score).
    repository.update_records(session, [u for u in updates if "overall_quality_score" in u])
    repository.update_records(session, [u for u in updates if "overall_quality_score" not in u])
    if waiting:
        _record_pending(session, principal, customer.id, waiting)
        outcome.evaluations_waiting += len(waiting)


# --- logs ------------------------------------------------------------------------------------------------------


def _record_pending(
    session: Session, principal: Principal, customer_id: uuid.UUID, evaluations: Sequence[Evaluation]
) -> None:
    """Keep evaluations that came before their span in the event log, where a later span finds them."""
    keys = sorted({key for evaluation in evaluations for key in evaluation.match_keys})
    events.record(
        session,
        event_type=repository.PENDING_EVENT,
        actor=principal,
        customer_id=customer_id,
        agent_id=principal.agent_id,
        extra={"keys": keys, "evaluations": [evaluation.as_json() for evaluation in evaluations]},
    )


def _record_report(session: Session, principal: Principal, customer_id: uuid.UUID, unmapped: Unmapped) -> None:
    """Count what was not understood, in the event log (read back by `not_understood`)."""
    if unmapped.items:
        events.record(
            session,
            event_type=repository.REPORT_EVENT,
            actor=principal,
            customer_id=customer_id,
            agent_id=principal.agent_id,
            extra={"items": unmapped.as_json()},
        )


def _hex_id(raw: bytes) -> str | None:
    value = raw.hex()
    return value if value and value.strip("0") else None


def export_logs(session: Session, principal: Principal, request: ExportLogsServiceRequest) -> ExportOutcome:
    """Apply the gen_ai.evaluation.result events of an OTLP log export to their records."""
    _begin(principal)
    outcome = ExportOutcome()
    resources = (
        (attributes(rl.resource.attributes), [record for sl in rl.scope_logs for record in sl.log_records])
        for rl in request.resource_logs
    )
    for customer_id, items in _group_by_customer(principal, resources, outcome).items():
        customer = _resolve(session, principal, customer_id, len(items), outcome)
        if customer is None:
            continue
        settings: OtlpSettings = otlp_settings_of(customer)
        unmapped = Unmapped()
        usable = []
        for _, log_record in items:
            attrs = attributes(log_record.attributes)
            event_name = log_record.event_name or attrs.get("event.name")
            if event_name != EVALUATION_EVENT:
                reason = "not a gen_ai.evaluation.result event (only evaluation events are stored from logs)"
                outcome.reject(reason)
                unmapped.add("skipped_log", str(event_name or "(no event name)"), reason)
                continue
            evaluation = evaluation_of(
                attrs, settings, trace_id=_hex_id(log_record.trace_id), span_id=_hex_id(log_record.span_id)
            )
            problem = evaluation_problem(evaluation)
            if problem is not None:
                outcome.reject(problem)
                kind = "evaluation_name" if evaluation.component is None else "unusable_evaluation"
                name = evaluation.name or "(no gen_ai.evaluation.name)" if kind == "evaluation_name" else problem
                unmapped.add(kind, name, problem if kind == "evaluation_name" else evaluation.name)
                continue
            usable.append(evaluation)
        repository.lock_keys(session, customer.id, {key for evaluation in usable for key in evaluation.match_keys})
        _apply_evaluations(session, principal, customer, usable, settings_of(customer).weights, outcome)
        _record_report(session, principal, customer.id, unmapped)
    return outcome


# --- settings and report ---------------------------------------------------------------------------------------


def get_settings(session: Session, principal: Principal, customer_id: uuid.UUID | None) -> OtlpSettings:
    return otlp_settings_of(quality_service.resolve_customer(session, principal, customer_id))


def update_settings(
    session: Session, principal: Principal, customer_id: uuid.UUID | None, settings: OtlpSettings
) -> OtlpSettings:
    principal.require(Role.CUSTOMER, Role.OPERATOR)
    principal.require_writable()
    customer = quality_service.resolve_customer(session, principal, customer_id, for_update=True)
    before = otlp_settings_of(customer)
    store_otlp_settings(customer, settings)
    session.flush()
    events.record(
        session,
        event_type="otlp.settings_updated",
        actor=principal,
        customer_id=customer.id,
        before=before.model_dump(mode="json"),
        after=settings.model_dump(mode="json"),
    )
    return settings


def not_understood(
    session: Session, principal: Principal, customer_id: uuid.UUID | None, days: int, limit: int
) -> otlp_schemas.NotUnderstoodReport:
    """What the customer's telemetry carried that did not become part of a quality record, with counts."""
    customer = quality_service.resolve_customer(session, principal, customer_id)
    since = _now() - timedelta(days=days)
    rows = repository.report(session, customer.id, since, limit)
    return otlp_schemas.NotUnderstoodReport(
        customer_id=customer.id,
        since=since,
        items=[otlp_schemas.NotUnderstoodItem.model_validate(row) for row in rows],
    )
