"""Quality queries: the COPY fast path for ingest, window reads, baselines and regressions."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import psycopg
from sqlalchemy import (
    ARRAY,
    ColumnElement,
    DateTime,
    Integer,
    String,
    Uuid,
    and_,
    any_,
    bindparam,
    case,
    cast,
    func,
    null,
    select,
    text,
    true,
    tuple_,
    update,
)
from sqlalchemy.dialects.postgresql import aggregate_order_by
from sqlalchemy.orm import Session, defer

from optiinfra.auth.principal import Principal
from optiinfra.db.bulk import copy_rows
from optiinfra.db.queries import get_row, list_page
from optiinfra.models import (
    Agent,
    AgentType,
    QualityBaseline,
    QualityMetric,
    QualityRegression,
    QualityRequestKey,
    RegressionAction,
    RegressionType,
)
from optiinfra.pagination import Page
from optiinfra.quality.schemas import BaselineFilters, RegressionFilters
from optiinfra.quality.statistics import WindowSummary, summarize_window
from optiinfra.tenancy import agents_serving

INGEST_COLUMNS = (
    "agent_id",
    "customer_id",
    "request_id",
    "model_name",
    "model_version",
    "prompt_tokens",
    "completion_tokens",
    "latency_ms",
    "relevance_score",
    "coherence_score",
    "factuality_score",
    "hallucination_detected",
    "toxicity_score",
    "overall_quality_score",
    "timestamp",
    "metadata",
)

# Fixed SQL (no user input is ever formatted into it; the column names are the constant above).
_COLUMN_LIST = ", ".join(f'"{name}"' for name in INGEST_COLUMNS)
_CREATE_STAGING = (
    "CREATE TEMP TABLE IF NOT EXISTS quality_ingest_staging (LIKE quality_metrics INCLUDING DEFAULTS) ON COMMIT DROP"
)
# The rows whose key is not stored yet. quality_metrics' insert trigger stores their keys, and refuses the statement
# if a concurrent batch stored one of them first (migration 016).
_INSERT_FROM_STAGING = (
    f"INSERT INTO quality_metrics ({_COLUMN_LIST}) SELECT {_COLUMN_LIST} FROM ("  # noqa: S608
    f"SELECT DISTINCT ON (s.customer_id, s.request_id) {_COLUMN_LIST} FROM quality_ingest_staging AS s "
    "WHERE NOT EXISTS (SELECT 1 FROM quality_request_keys AS k "
    "WHERE k.customer_id = s.customer_id AND k.request_id = s.request_id) "
    "ORDER BY s.customer_id, s.request_id, s.ctid) AS first_of_each ORDER BY request_id"
)
_STAGING_ATTEMPTS = 5
_REQUEST_ID = INGEST_COLUMNS.index("request_id")
_JSON_COLUMNS = frozenset({"metadata"})


# The customer's (model, version) pairs, enumerated by a recursive skip scan of the (customer_id, model_name,
# model_version, timestamp) index: each step jumps to the next pair, so the cost grows with the number of versions,
# not of records. Bound parameter: customer_id.
_CUSTOMER_VERSIONS = (
    "WITH RECURSIVE versions AS ("
    " (SELECT model_name, model_version FROM quality_metrics WHERE customer_id = :customer_id"
    "  ORDER BY model_name, model_version LIMIT 1)"
    " UNION ALL"
    " SELECT next.model_name, next.model_version FROM versions AS v CROSS JOIN LATERAL"
    "  (SELECT m.model_name, m.model_version FROM quality_metrics AS m WHERE m.customer_id = :customer_id"
    "   AND (m.model_name, m.model_version) > (v.model_name, v.model_version)"
    "   ORDER BY m.model_name, m.model_version LIMIT 1) AS next)"
)

# A record stored before its evaluations arrived (OTLP spans) has metadata.scores_pending: its overall score is read
# as missing, so it counts for latency and tokens but never as a score.
SCORED_OVERALL = case(
    (QualityMetric.metadata_.has_key("scores_pending"), null()), else_=QualityMetric.overall_quality_score
)
# Likewise its hallucination flag: it is false only because no evaluation has said otherwise yet.
SCORED_HALLUCINATION = case(
    (QualityMetric.metadata_.has_key("scores_pending"), null()),
    else_=cast(QualityMetric.hallucination_detected, Integer),
)


def stored_request_ids(session: Session, customer_id: uuid.UUID, request_ids: Sequence[str]) -> set[str]:
    """Which of these request ids the customer already has."""
    # One array parameter, not thousands of bound values; the keys table holds every stored record's key.
    ids = bindparam("request_ids", list(request_ids), type_=ARRAY(String))
    rows = session.execute(
        select(QualityRequestKey.request_id).where(
            QualityRequestKey.customer_id == customer_id, QualityRequestKey.request_id == any_(ids)
        )
    )
    return {row[0] for row in rows}


def by_request_id(customer_id: uuid.UUID, request_ids: Sequence[str]) -> ColumnElement[bool]:
    """A condition on quality_metrics: the customer's records with these request ids, found through the keys table
    (which says each record's partition, so only those partitions are read)."""
    keys = (
        select(QualityRequestKey.quality_metric_id, QualityRequestKey.quality_metric_timestamp)
        .where(
            QualityRequestKey.customer_id == customer_id,
            QualityRequestKey.request_id
            == any_(bindparam("request_ids", list(request_ids), type_=ARRAY(String), unique=True)),
        )
        .subquery()
    )
    return and_(
        QualityMetric.customer_id == customer_id,
        tuple_(QualityMetric.id, QualityMetric.timestamp).in_(
            select(keys.c.quality_metric_id, keys.c.quality_metric_timestamp)
        ),
    )


def get_record(session: Session, customer_id: uuid.UUID, request_id: str) -> QualityMetric | None:
    return session.scalar(select(QualityMetric).where(by_request_id(customer_id, [request_id])))


def bulk_insert_metrics(session: Session, rows: Sequence[Sequence[Any]]) -> int:
    """Insert rows (in INGEST_COLUMNS order; metadata a dict) that are not stored yet; returns how many were new.

    Fast path: COPY straight into quality_metrics, inside a savepoint (the caller has left out the request ids it
    found stored). If the batch names a request id twice, or a concurrent batch stored one of the same request ids in
    the meantime, the keys table refuses the COPY; the savepoint is rolled back and the rows go through a staging
    table and an INSERT of the first row of each request id whose key is not stored yet, retried if yet another batch
    got in first, so nothing is lost or stored twice.
    """
    if not rows:
        return 0
    # Every batch writes its keys in the same (request id) order, so two overlapping batches wait for each other
    # instead of deadlocking.
    rows = sorted(rows, key=lambda row: row[_REQUEST_ID])
    driver = session.connection().connection.driver_connection
    assert driver is not None
    try:
        with driver.transaction():
            copy_rows(session, "quality_metrics", INGEST_COLUMNS, rows, json_columns=_JSON_COLUMNS)
        return len(rows)
    except psycopg.errors.UniqueViolation:
        pass
    with driver.cursor() as cursor:
        cursor.execute(_CREATE_STAGING)
        cursor.execute("TRUNCATE quality_ingest_staging")
        copy_rows(session, "quality_ingest_staging", INGEST_COLUMNS, rows, json_columns=_JSON_COLUMNS)
        for attempt in range(_STAGING_ATTEMPTS):
            try:
                with driver.transaction():
                    cursor.execute(_INSERT_FROM_STAGING)
                break
            except psycopg.errors.UniqueViolation:
                if attempt == _STAGING_ATTEMPTS - 1:
                    raise
        inserted = cursor.rowcount
        cursor.execute("TRUNCATE quality_ingest_staging")
    return int(inserted)


def default_application_agent(session: Session, customer_id: uuid.UUID) -> uuid.UUID | None:
    """The application agent serving this customer that last reported its quality, else the most recently alive
    application agent serving it."""
    # Per model version (found by a skip scan), its newest record by a serving application agent, then the newest of
    # those: one short probe of the (customer, model, version, timestamp) index per version, where ordering all the
    # customer's records by time would need an index of its own, paid on every ingested row.
    serving = Agent.id.in_(agents_serving(customer_id))
    candidates = list(session.scalars(select(Agent.id).where(Agent.type == AgentType.APPLICATION, serving)))
    if not candidates:
        return None
    recent = session.scalar(
        text(
            f"{_CUSTOMER_VERSIONS} SELECT latest.agent_id FROM versions AS v CROSS JOIN LATERAL ("  # noqa: S608
            " SELECT m.agent_id, m.timestamp FROM quality_metrics AS m WHERE m.customer_id = :customer_id"
            " AND m.model_name = v.model_name AND m.model_version = v.model_version AND m.agent_id = ANY(:agent_ids)"
            " ORDER BY m.timestamp DESC LIMIT 1) AS latest ORDER BY latest.timestamp DESC LIMIT 1"
        ).bindparams(bindparam("agent_ids", type_=ARRAY(Uuid))),
        {"customer_id": customer_id, "agent_ids": candidates},
    )
    if recent is not None:
        return uuid.UUID(str(recent))
    return session.scalar(
        select(Agent.id)
        .where(Agent.id == any_(bindparam("candidates", candidates, type_=ARRAY(Uuid))))
        .order_by(Agent.last_heartbeat.desc().nulls_last(), Agent.created_at)
        .limit(1)
    )


@dataclass(frozen=True)
class WindowRows:
    """The columns of one window of a model version's metrics, oldest first."""

    overall: list[float | None]
    relevance: list[float | None]
    coherence: list[float | None]
    factuality: list[float | None]
    latency_ms: list[float | None]
    hallucination: list[bool]
    toxicity: list[float | None]
    first_at: datetime | None  # the oldest record's timestamp (None: no records)
    last_at: datetime | None  # the newest record's
    agent_id: uuid.UUID | None  # the agent that sent most of the records

    @property
    def size(self) -> int:
        return len(self.overall)

    def summarize(self) -> WindowSummary:
        """The window's summary statistics (what a baseline stores and the judge compares). A record still waiting
        for its scores (overall None) counts for latency, not for the hallucination rate: its flag is false only
        because no evaluation has arrived."""
        return summarize_window(
            overall=self.overall,
            relevance=self.relevance,
            coherence=self.coherence,
            factuality=self.factuality,
            latency_ms=self.latency_ms,
            hallucination=[
                flag for flag, overall in zip(self.hallucination, self.overall, strict=True) if overall is not None
            ],
            toxicity=self.toxicity,
        )


def read_window(
    session: Session,
    customer_id: uuid.UUID,
    model_name: str,
    *,
    model_version: str | None = None,
    start: datetime | None = None,
    end: datetime | None = None,
    last_n: int | None = None,
    extra_condition: ColumnElement[bool] | None = None,
) -> WindowRows:
    """One window of metrics: a time range [start, end), or the last N records (newest N by timestamp)."""
    conditions = [QualityMetric.customer_id == customer_id, QualityMetric.model_name == model_name]
    if model_version is not None:
        conditions.append(QualityMetric.model_version == model_version)
    if start is not None:
        conditions.append(QualityMetric.timestamp >= start)
    if end is not None:
        conditions.append(QualityMetric.timestamp < end)
    if extra_condition is not None:
        conditions.append(extra_condition)
    window = select(
        SCORED_OVERALL.label("overall"),
        QualityMetric.relevance_score,
        QualityMetric.coherence_score,
        QualityMetric.factuality_score,
        QualityMetric.latency_ms,
        QualityMetric.hallucination_detected,
        QualityMetric.toxicity_score,
        QualityMetric.timestamp,
        QualityMetric.agent_id,
    ).where(and_(*conditions))
    if last_n is not None:
        window = window.order_by(QualityMetric.timestamp.desc()).limit(last_n)
    records = window.subquery()
    # Each column as one array, oldest first: a day of a busy version is tens of thousands of records, and arrays
    # cross the wire and load (in binary, in C) about 20 times cheaper than as many rows.
    statement = select(
        *(func.array_agg(aggregate_order_by(column, records.c.timestamp)) for column in list(records.c)[:7]),
        func.min(records.c.timestamp),
        func.max(records.c.timestamp),
        func.mode().within_group(records.c.agent_id),
    )
    # Straight through the driver: the session is flushed first, as session.execute would, so records added in this
    # unit of work are read.
    session.flush()
    connection = session.connection()
    compiled = statement.compile(dialect=connection.dialect, compile_kwargs={"render_postcompile": True})
    driver = connection.connection.driver_connection
    assert driver is not None
    with driver.cursor(binary=True) as cursor:
        cursor.execute(str(compiled), compiled.params)
        arrays = cursor.fetchone()
    assert arrays is not None
    columns: list[list[Any]] = [list(array or ()) for array in arrays[:7]]
    return WindowRows(
        overall=columns[0],
        relevance=columns[1],
        coherence=columns[2],
        factuality=columns[3],
        latency_ms=columns[4],
        hallucination=columns[5],
        toxicity=columns[6],
        first_at=arrays[7],
        last_at=arrays[8],
        agent_id=arrays[9],
    )


def active_baseline(
    session: Session,
    customer_id: uuid.UUID,
    model_name: str,
    model_version: str,
    now: datetime,
    *,
    with_metadata: bool = True,
) -> QualityBaseline | None:
    """The newest baseline of the model version that is still valid at `now` (its metadata, which holds the whole
    summary and the monitoring's reference, loaded only when first used if `with_metadata` is False)."""
    return session.scalar(
        select(QualityBaseline)
        .options(*([] if with_metadata else [defer(QualityBaseline.metadata_)]))
        .where(
            QualityBaseline.customer_id == customer_id,
            QualityBaseline.model_name == model_name,
            QualityBaseline.model_version == model_version,
            QualityBaseline.established_at <= now,
            (QualityBaseline.valid_until.is_(None)) | (QualityBaseline.valid_until > now),
        )
        .order_by(QualityBaseline.established_at.desc())
        .limit(1)
    )


def latest_baseline(
    session: Session, customer_id: uuid.UUID, model_name: str, model_version: str
) -> QualityBaseline | None:
    return session.scalar(
        select(QualityBaseline)
        .where(
            QualityBaseline.customer_id == customer_id,
            QualityBaseline.model_name == model_name,
            QualityBaseline.model_version == model_version,
        )
        .order_by(QualityBaseline.established_at.desc())
        .limit(1)
    )


def expire_baselines(
    session: Session, customer_id: uuid.UUID, model_name: str, model_version: str, at: datetime
) -> None:
    """End the validity of every baseline of the model version still valid at `at`."""
    session.execute(
        update(QualityBaseline)
        .where(
            QualityBaseline.customer_id == customer_id,
            QualityBaseline.model_name == model_name,
            QualityBaseline.model_version == model_version,
            (QualityBaseline.valid_until.is_(None)) | (QualityBaseline.valid_until > at),
        )
        .values(valid_until=at)
    )


def rollback_since(
    session: Session, customer_id: uuid.UUID, model_name: str, model_version: str, since: datetime | None
) -> bool:
    """Whether a regression of this model version triggered a rollback after `since`."""
    conditions = [
        QualityRegression.customer_id == customer_id,
        QualityRegression.model_name == model_name,
        QualityRegression.model_version == model_version,
        QualityRegression.action_taken == RegressionAction.ROLLBACK_TRIGGERED,
    ]
    if since is not None:
        rolled_back_at = cast(QualityRegression.metadata_["rolled_back_at"].astext, DateTime(timezone=True))
        conditions.append(rolled_back_at > since)
    return session.scalar(select(func.count()).select_from(QualityRegression).where(*conditions)) > 0  # type: ignore[operator]


def lock_key(session: Session, key: str) -> bool:
    """Try a transaction-scoped advisory lock on `key` (released at commit); False if another holds it."""
    return bool(session.scalar(text("SELECT pg_try_advisory_xact_lock(hashtextextended(:key, 0))"), {"key": key}))


def open_regression(
    session: Session,
    customer_id: uuid.UUID,
    model_name: str,
    model_version: str,
    regression_type: RegressionType,
    metric_name: str,
) -> QualityRegression | None:
    return session.scalar(
        select(QualityRegression)
        .where(
            QualityRegression.customer_id == customer_id,
            QualityRegression.model_name == model_name,
            QualityRegression.model_version == model_version,
            QualityRegression.regression_type == regression_type,
            QualityRegression.metric_name == metric_name,
            QualityRegression.resolved_at.is_(None),
        )
        .with_for_update()
        .execution_options(populate_existing=True)
    )


def get_regression(
    session: Session, principal: Principal, regression_id: uuid.UUID, *, for_update: bool = False
) -> QualityRegression:
    return get_row(
        session, QualityRegression, regression_id, principal, "regression", "regression_id", for_update=for_update
    )


def list_regressions(session: Session, principal: Principal, filters: RegressionFilters) -> Page[QualityRegression]:
    return list_page(session, QualityRegression, filters, principal=principal)


def list_baselines(session: Session, principal: Principal, filters: BaselineFilters) -> Page[QualityBaseline]:
    return list_page(session, QualityBaseline, filters, principal=principal)


def model_versions_where(
    session: Session, customer_id: uuid.UUID, condition: ColumnElement[bool]
) -> list[tuple[str, str]]:
    """The customer's (model, version) pairs among the records matching `condition`."""
    rows = session.execute(
        select(QualityMetric.model_name, QualityMetric.model_version)
        .where(QualityMetric.customer_id == customer_id, condition)
        .distinct()
    )
    return [(row[0], row[1]) for row in rows]


def model_versions_since(session: Session, customer_id: uuid.UUID, since: datetime) -> list[tuple[str, str]]:
    """The customer's (model, version) pairs with metrics at or after `since`."""
    rows = session.execute(
        select(QualityMetric.model_name, QualityMetric.model_version)
        .where(QualityMetric.customer_id == customer_id, QualityMetric.timestamp >= since)
        .distinct()
    )
    return [(row[0], row[1]) for row in rows]


@dataclass(frozen=True)
class SeriesPoint:
    bucket: datetime
    count: int
    overall: float | None
    p95_latency_ms: float | None
    hallucination_rate: float | None  # None when no record of the bucket has scores yet


def bucketed_series(
    session: Session,
    customer_id: uuid.UUID,
    model_name: str,
    model_version: str,
    since: datetime,
    bucket: timedelta,
    route: str | None = None,
) -> list[SeriesPoint]:
    """Per bucket: request count, mean overall score, p95 latency and hallucination rate (for charts); with
    `route`, only the records whose metadata.route is that route ("": records naming none).

    Buckets of whole hours (the 7- and 30-day charts) are read from the hourly rollups (migration 017), whatever
    the traffic (a week is 168 hours x routes rows), from the hour of `since`; the p95 comes from the rollups'
    latency histogram (within about 5%). Finer buckets (the last 6 or 24 hours) read the records themselves."""
    if bucket % timedelta(hours=1) == timedelta(0):
        from optiinfra.quality import store

        rollups = store.PostgresStore().hourly_rollups(session, customer_id, model_name, model_version, since)
        if route is not None:
            rollups = [rollup for rollup in rollups if rollup.route == route]
        return store.series_from_rollups(rollups, since, bucket)

    start = func.date_bin(bindparam("bucket", bucket), QualityMetric.timestamp, bindparam("origin", since))
    route_condition = (
        func.coalesce(QualityMetric.metadata_["route"].astext, "") == route if route is not None else true()
    )
    rows = session.execute(
        select(
            start,
            func.count(),
            func.avg(SCORED_OVERALL),
            func.percentile_cont(0.95).within_group(QualityMetric.latency_ms),
            func.avg(SCORED_HALLUCINATION),
        )
        .where(
            QualityMetric.customer_id == customer_id,
            QualityMetric.model_name == model_name,
            QualityMetric.model_version == model_version,
            QualityMetric.timestamp >= since,
            route_condition,
        )
        .group_by(start)
        .order_by(start)
    ).all()
    return [
        SeriesPoint(
            row[0],
            int(row[1]),
            float(row[2]) if row[2] is not None else None,
            float(row[3]) if row[3] is not None else None,
            float(row[4]) if row[4] is not None else None,
        )
        for row in rows
    ]


def model_versions_of(session: Session, customer_id: uuid.UUID) -> list[tuple[str, str]]:
    """The customer's (model, version) pairs that have metrics or baselines, sorted."""
    # A skip scan of the (customer, model, version, timestamp) index: one probe per version, not one index entry
    # per stored record (a DISTINCT over the customer's records read them all: a second at 1,000,000 rows).
    rows = session.execute(
        text(
            f"{_CUSTOMER_VERSIONS} SELECT model_name, model_version FROM versions UNION "  # noqa: S608 (constant SQL)
            "SELECT model_name, model_version FROM quality_baselines WHERE customer_id = :customer_id"
        ),
        {"customer_id": customer_id},
    ).all()
    return sorted((row[0], row[1]) for row in rows)


def fresh_model_versions(session: Session, since: datetime) -> list[tuple[uuid.UUID, str, str]]:
    """(customer, model, version) keys with metrics newer than `since` and an active baseline."""
    rows = session.execute(
        select(QualityMetric.customer_id, QualityMetric.model_name, QualityMetric.model_version)
        .where(QualityMetric.timestamp >= since)
        .where(
            select(QualityBaseline.id)
            .where(
                QualityBaseline.customer_id == QualityMetric.customer_id,
                QualityBaseline.model_name == QualityMetric.model_name,
                QualityBaseline.model_version == QualityMetric.model_version,
                (QualityBaseline.valid_until.is_(None)) | (QualityBaseline.valid_until > func.now()),
            )
            .exists()
        )
        .distinct()
    )
    return [(row[0], row[1], row[2]) for row in rows]


# --- dashboard breakdowns and drill-down ---------------------------------------------------------------------------

record_route = func.coalesce(QualityMetric.metadata_["route"].astext, "")
# Records name their instance as metadata.instance_id (agents, the simulator) or metadata.instance (OTLP).
record_instance = func.coalesce(
    QualityMetric.metadata_["instance_id"].astext, QualityMetric.metadata_["instance"].astext, ""
)


@dataclass(frozen=True)
class RouteSummary:
    route: str  # "" for records without metadata.route
    count: int
    overall: float | None
    p95_latency_ms: float | None
    hallucination_rate: float | None


def route_breakdown(
    session: Session,
    customer_id: uuid.UUID,
    model_name: str,
    model_version: str,
    since: datetime,
    limit: int = 50,
) -> list[RouteSummary]:
    """Per metadata.route since `since`: request count, mean overall score, p95 latency and hallucination rate,
    busiest routes first (at most `limit`). Over more than a day, read from the hourly rollups (from the hour of
    `since`; p95 from their latency histogram, within about 5%); over a day or less, from the records."""
    if datetime.now(since.tzinfo) - since > timedelta(days=1):
        from optiinfra.quality import store

        merged: dict[str, store.HourlyRollup] = {}
        for rollup in store.PostgresStore().hourly_rollups(session, customer_id, model_name, model_version, since):
            merged.setdefault(rollup.route, store.HourlyRollup(rollup.hour_start, rollup.route)).add(rollup)
        summaries = []
        for route_name, total in merged.items():
            scored = total.sums.get("scored_count", 0)
            summaries.append(
                RouteSummary(
                    route_name,
                    total.record_count,
                    total.sums["overall_sum"] / scored if scored else None,
                    store.histogram_quantile(total.latency_histogram, 0.95),
                    total.sums["hallucination_count"] / scored if scored else None,
                )
            )
        return sorted(summaries, key=lambda summary: (-summary.count, summary.route))[:limit]
    rows = session.execute(
        select(
            record_route,
            func.count(),
            func.avg(SCORED_OVERALL),
            func.percentile_cont(0.95).within_group(QualityMetric.latency_ms),
            func.avg(SCORED_HALLUCINATION),
        )
        .where(
            QualityMetric.customer_id == customer_id,
            QualityMetric.model_name == model_name,
            QualityMetric.model_version == model_version,
            QualityMetric.timestamp >= since,
        )
        .group_by(record_route)
        .order_by(func.count().desc(), record_route)
        .limit(limit)
    ).all()
    return [
        RouteSummary(
            str(row[0]),
            int(row[1]),
            float(row[2]) if row[2] is not None else None,
            float(row[3]) if row[3] is not None else None,
            float(row[4]) if row[4] is not None else None,
        )
        for row in rows
    ]


def window_facets(
    session: Session,
    customer_id: uuid.UUID,
    model_name: str,
    model_version: str,
    start: datetime,
    end: datetime,
    limit: int = 50,
) -> tuple[list[tuple[str, int]], list[tuple[str, int]]]:
    """The routes and the instances of a window's records, with their counts (busiest first, at most `limit`)."""
    window = (
        QualityMetric.customer_id == customer_id,
        QualityMetric.model_name == model_name,
        QualityMetric.model_version == model_version,
        QualityMetric.timestamp >= start,
        QualityMetric.timestamp < end,
    )
    facets = []
    for column in (record_route, record_instance):
        rows = session.execute(
            select(column, func.count()).where(*window).group_by(column).order_by(func.count().desc()).limit(limit)
        ).all()
        facets.append([(str(row[0]), int(row[1])) for row in rows])
    return facets[0], facets[1]


def window_records(
    session: Session,
    customer_id: uuid.UUID,
    model_name: str,
    model_version: str,
    start: datetime,
    end: datetime,
    *,
    route: str | None,
    instance: str | None,
    after: tuple[datetime, str] | None,
    limit: int,
) -> list[QualityMetric]:
    """A window's records in time order (keyset pagination after (timestamp, request_id)), optionally of one route
    and one instance ("" meaning records that name none)."""
    statement = select(QualityMetric).where(
        QualityMetric.customer_id == customer_id,
        QualityMetric.model_name == model_name,
        QualityMetric.model_version == model_version,
        QualityMetric.timestamp >= start,
        QualityMetric.timestamp < end,
    )
    if route is not None:
        statement = statement.where(record_route == route)
    if instance is not None:
        statement = statement.where(record_instance == instance)
    if after is not None:
        statement = statement.where(
            (QualityMetric.timestamp > after[0])
            | and_(QualityMetric.timestamp == after[0], QualityMetric.request_id > after[1])
        )
    statement = statement.order_by(QualityMetric.timestamp, QualityMetric.request_id).limit(limit)
    return list(session.scalars(statement))
