"""The Prometheus collector: range queries in, `resource_metrics` and `agent_metrics` rows out.

One collection of one source:
1. reads the source and picks the agents the rows are attributed to (the customer's resource agent for machine
   metrics, its performance agent, else the resource agent, for serving metrics), then closes the transaction;
2. walks from `collected_until` (on the first collection: now minus the look-back window) to the last whole step
   before now, in chunks of at most `MAX_CHUNK_POINTS` steps; for each chunk it runs every query (retrying a failed
   call with back-off) with no transaction open, then in one short transaction locks the source row, leaves out
   any sample this source already stored (same instance, metric and time), writes the rest and moves
   `collected_until` past the chunk. Steps are aligned on multiples of the step since the epoch, so the same
   instant always gets the same timestamp and a range collected twice stores nothing twice.
3. When Prometheus cannot be reached (after the retries), the chunk is not written, `collected_until` stays, the
   source records the error and the failures in a row, and the first failure of a streak records an event
   (`collector.source_unreachable`). The next collection starts again at `collected_until`, so nothing is
   skipped; its success records `collector.source_recovered`.
"""

from __future__ import annotations

import logging
import math
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import insert
from sqlalchemy.orm import Session, sessionmaker

from optiinfra.auth.principal import Principal
from optiinfra.collectors import queries, repository
from optiinfra.collectors.prometheus import Connection, PrometheusError, Series, query_range
from optiinfra.collectors.schemas import SourceCollection
from optiinfra.db.engine import unit_of_work
from optiinfra.events import service as events
from optiinfra.models import AgentMetric, AgentType, EventSeverity, MetricType, PrometheusSource
from optiinfra.resources import repository as resource_repository
from optiinfra.workflows import repository as workflow_repository

logger = logging.getLogger(__name__)

MAX_CHUNK_POINTS = 10_000  # below Prometheus's 11,000 points per series
MAX_CHUNK = timedelta(days=1)
COLLECTOR = Principal.system("collector")


@dataclass(frozen=True)
class RetryPolicy:
    attempts: int = 3
    backoff_seconds: float = 1.0  # doubled after each failed attempt


@dataclass(frozen=True)
class Snapshot:
    """What a collection needs of its source, read in one short transaction."""

    id: uuid.UUID
    customer_id: uuid.UUID
    name: str
    connection: Connection
    labels: queries.LabelMapping
    step: int
    lookback: timedelta
    collected_until: datetime | None
    resource_agent_id: uuid.UUID | None
    serving_agent_id: uuid.UUID | None


@dataclass
class ChunkAnswers:
    start: datetime
    end: datetime
    results: list[tuple[queries.QuerySpec, list[Series]]] = field(default_factory=list)


def align_down(moment: datetime, step: int) -> datetime:
    return datetime.fromtimestamp(math.floor(moment.timestamp() / step) * step, UTC)


def align_up(moment: datetime, step: int) -> datetime:
    return datetime.fromtimestamp(math.ceil(moment.timestamp() / step) * step, UTC)


def _snapshot(session: Session, source: PrometheusSource) -> Snapshot:
    resource_agent = resource_repository.default_resource_agent(session, source.customer_id)
    performance = workflow_repository.most_recent_agent(session, AgentType.PERFORMANCE, source.customer_id)
    return Snapshot(
        id=source.id,
        customer_id=source.customer_id,
        name=source.name,
        connection=Connection(source.base_url, source.auth_type, source.auth_username, source.auth_secret),
        labels=queries.LabelMapping(
            source.instance_label, source.instance_type_label, source.zone_label, source.purchase_option_label
        ),
        step=source.step_seconds,
        lookback=timedelta(hours=source.lookback_hours),
        collected_until=source.collected_until,
        resource_agent_id=resource_agent,
        serving_agent_id=performance.id if performance is not None else resource_agent,
    )


def plan(snapshot: Snapshot, now: datetime, since: datetime | None = None) -> list[tuple[datetime, datetime]]:
    """The chunks [start, end] (both evaluated) still to collect, oldest first."""
    step = snapshot.step
    if since is not None:
        start = align_up(since, step)
    elif snapshot.collected_until is not None:
        start = align_up(snapshot.collected_until, step)
    else:
        start = align_up(now - snapshot.lookback, step)
    last = align_down(now - timedelta(seconds=step), step)  # the last step surely scraped
    points = max(1, min(MAX_CHUNK_POINTS, int(MAX_CHUNK.total_seconds()) // step))
    chunks = []
    while start <= last:
        end = min(last, start + timedelta(seconds=step * (points - 1)))
        chunks.append((start, end))
        start = end + timedelta(seconds=step)
    return chunks


def _with_retries(call: Callable[[], list[Series]], retry: RetryPolicy) -> list[Series]:
    delay = retry.backoff_seconds
    for attempt in range(1, retry.attempts + 1):
        try:
            return call()
        except PrometheusError:
            if attempt == retry.attempts:
                raise
            time.sleep(delay)
            delay *= 2
    raise AssertionError("unreachable")


def fetch(snapshot: Snapshot, start: datetime, end: datetime, retry: RetryPolicy) -> ChunkAnswers:
    """Every query over [start, end]; no database work here."""
    answers = ChunkAnswers(start, end)
    for spec in queries.QUERIES:
        promql = queries.render(spec, snapshot.labels, snapshot.step)

        def call(promql: str = promql) -> list[Series]:
            return query_range(snapshot.connection, promql, start, end, snapshot.step)

        answers.results.append((spec, _with_retries(call, retry)))
    return answers


def _label(labels: dict[str, str], name: str, limit: int = 100) -> str | None:
    value = labels.get(name)
    return value[:limit] if value else None


def _write(session: Session, snapshot: Snapshot, answers: ChunkAnswers, report: SourceCollection) -> None:
    assert snapshot.resource_agent_id is not None
    assert snapshot.serving_agent_id is not None
    have_resource = repository.stored_resource_keys(
        session, snapshot.id, snapshot.customer_id, answers.start, answers.end
    )
    have_serving = repository.stored_agent_keys(
        session, snapshot.id, snapshot.serving_agent_id, answers.start, answers.end
    )
    resource_rows: list[resource_repository.ResourceMetricRow] = []
    serving_rows: list[dict[str, Any]] = []
    source_id = str(snapshot.id)
    for spec, found in answers.results:
        for series in found:
            instance = series.labels.get(snapshot.labels.instance)
            if not instance or len(instance) > 255:
                continue  # a series that names no machine cannot be attributed
            described = {
                "source": "prometheus",
                "source_id": source_id,
                "instance_type": _label(series.labels, snapshot.labels.instance_type),
                "zone": _label(series.labels, snapshot.labels.zone),
                "purchase_option": queries.purchase_option(series.labels.get(snapshot.labels.purchase_option)),
            }
            if spec.target == queries.RESOURCE:
                assert spec.resource_type is not None
                for moment, value in series.points:
                    key = (instance, spec.resource_type.value, spec.key, moment)
                    if key in have_resource:
                        report.skipped_duplicates += 1
                        continue
                    have_resource.add(key)
                    resource_rows.append(
                        resource_repository.ResourceMetricRow(
                            agent_id=snapshot.resource_agent_id,
                            customer_id=snapshot.customer_id,
                            instance_id=instance,
                            resource_type=spec.resource_type.value,
                            metric_name=spec.key,
                            metric_value=value,
                            unit=spec.unit,
                            timestamp=moment,
                            metadata=described,
                        )
                    )
            else:
                model = _label(series.labels, "model_name", 255) or ""
                tags = {
                    **described,
                    "customer_id": str(snapshot.customer_id),
                    "instance_id": instance,
                    "model_name": model,
                    "unit": spec.unit,
                }
                for moment, value in series.points:
                    serving_key = (instance, model, spec.key, moment)
                    if serving_key in have_serving:
                        report.skipped_duplicates += 1
                        continue
                    have_serving.add(serving_key)
                    serving_rows.append(
                        {
                            "agent_id": snapshot.serving_agent_id,
                            "metric_name": spec.key,
                            "metric_value": value,
                            "metric_type": MetricType.GAUGE,
                            "tags": tags,
                            "recorded_at": moment,
                        }
                    )
    report.resource_rows += resource_repository.copy_metrics(session, resource_rows)
    if serving_rows:
        session.execute(insert(AgentMetric), serving_rows)
    report.agent_rows += len(serving_rows)


def _locked(session: Session, source_id: uuid.UUID) -> PrometheusSource | None:
    return session.get(PrometheusSource, source_id, with_for_update=True, populate_existing=True)


def _record_failure(factory: sessionmaker[Session], snapshot: Snapshot, message: str, now: datetime) -> None:
    with unit_of_work(factory) as session:
        source = _locked(session, snapshot.id)
        if source is None:
            return
        source.last_attempt_at = now
        source.last_error = message[:2000]
        source.consecutive_failures += 1
        if source.consecutive_failures == 1:
            events.record(
                session,
                event_type="collector.source_unreachable",
                actor=COLLECTOR,
                customer_id=source.customer_id,
                severity=EventSeverity.WARNING,
                subject={"source_id": str(source.id), "name": source.name},
                extra={
                    "error": message[:2000],
                    "collected_until": source.collected_until.isoformat() if source.collected_until else None,
                },
            )


def _record_success(session: Session, source: PrometheusSource, now: datetime, chunk_end: datetime) -> None:
    resumed_from = source.collected_until
    failures = source.consecutive_failures
    following = chunk_end + timedelta(seconds=source.step_seconds)
    source.collected_until = max(source.collected_until or following, following)
    source.last_attempt_at = now
    source.last_success_at = now
    source.last_error = None
    source.consecutive_failures = 0
    if failures:
        events.record(
            session,
            event_type="collector.source_recovered",
            actor=COLLECTOR,
            customer_id=source.customer_id,
            subject={"source_id": str(source.id), "name": source.name},
            extra={
                "failed_collections": failures,
                "resumed_from": resumed_from.isoformat() if resumed_from else None,
                "collected_until": source.collected_until.isoformat(),
            },
        )


def collect_source(
    factory: sessionmaker[Session],
    source_id: uuid.UUID,
    *,
    now: datetime | None = None,
    since: datetime | None = None,
    retry: RetryPolicy = RetryPolicy(),
    analyze: bool = True,
) -> SourceCollection:
    """Collect one source up to now (or re-collect from `since`), then look for performance recommendations."""
    from optiinfra.collectors import analysis  # the analysis imports the recommendation services

    now = now or datetime.now(UTC)
    with unit_of_work(factory) as session:
        source = session.get(PrometheusSource, source_id)
        if source is None:
            raise LookupError(f"no Prometheus source {source_id}")
        snapshot = _snapshot(session, source)
    report = SourceCollection(source_id=snapshot.id, name=snapshot.name, ok=True)
    if snapshot.resource_agent_id is None:
        message = (
            "No resource agent serves this customer to attribute the metrics to; assign one "
            "(optiinfra agents assign AGENT -c CUSTOMER)."
        )
        _record_failure(factory, snapshot, message, now)
        return report.model_copy(update={"ok": False, "error": message})
    chunks = plan(snapshot, now, since)
    for start, end in chunks:
        try:
            answers = fetch(snapshot, start, end, retry)
        except PrometheusError as error:
            logger.warning("collector: source %s: %s", snapshot.name, error)
            _record_failure(factory, snapshot, str(error), now)
            report.ok = False
            report.error = str(error)
            return report
        with unit_of_work(factory) as session:
            source = _locked(session, snapshot.id)
            if source is None:
                report.ok = False
                report.error = "the source was removed during the collection"
                return report
            _write(session, snapshot, answers, report)
            _record_success(session, source, now, end)
        report.start = report.start or start
        report.end = end
    if not chunks:
        with unit_of_work(factory) as session:
            source = _locked(session, snapshot.id)
            if source is not None:
                source.last_attempt_at = now
    if analyze:
        report.recommendations = analysis.recommend(
            factory, snapshot.customer_id, now=now, labels=snapshot.labels, step=snapshot.step
        )
    return report


def collect_all(
    factory: sessionmaker[Session], *, now: datetime | None = None, retry: RetryPolicy = RetryPolicy()
) -> list[SourceCollection]:
    """Collect every enabled source, one after the other; one source's failure does not stop the others."""
    with unit_of_work(factory) as session:
        source_ids = repository.enabled_source_ids(session)
    return [collect_source(factory, source_id, now=now, retry=retry) for source_id in source_ids]
