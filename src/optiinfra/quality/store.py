"""Where per-request quality records live: one interface, a PostgreSQL and a ClickHouse implementation (issue 16).

`QualityStore` is the write of a batch of records and the reads of per-request data that do not need the control
plane's tables: a window of one model version (detection, baselines, A/B tests), hourly rollups (charts, fleet
summaries, time-of-day aggregates), the model versions of a customer, and per-request drill-down.

- `PostgresStore` keeps everything in PostgreSQL: records in `quality_metrics` (written by
  `repository.bulk_insert_metrics`), hourly aggregates in `quality_rollups`, which triggers keep exact in the
  writing transaction (migration 017).
- `ClickHouseStore` keeps the records in a ClickHouse table (`CLICKHOUSE_SCHEMA`: a ReplacingMergeTree partitioned
  by month, ordered by customer, model, version and time) and aggregates them when read; the control plane
  (customers, baselines, regressions, ...) stays in PostgreSQL. It talks to ClickHouse through `ClickHouseClient`:
  `HttpClickHouse` (clickhouse-connect, the `optiinfra[clickhouse]` extra) for a server, `ChdbClickHouse` (the
  ClickHouse engine in-process, for tests and benchmarks). Both run the same SQL text with the same server-side
  parameters (`{name:Type}`), and both insert JSONEachRow; docs/scale.md says what differs and which server
  versions are supported.

Every SQL text here is a constant; values are bound parameters.
"""

from __future__ import annotations

import hashlib
import math
import uuid
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

import numpy as np
import orjson
from numpy.typing import NDArray
from sqlalchemy import select, text
from sqlalchemy.orm import Session

from optiinfra.models import QualityMetric, QualityRollup
from optiinfra.models.application_schema import LATENCY_BINS, LATENCY_GROWTH, ROLLUP_TOXIC_THRESHOLD
from optiinfra.quality import repository
from optiinfra.quality.repository import INGEST_COLUMNS, SeriesPoint, WindowRows

HOUR = timedelta(hours=1)
SUM_FIELDS = (
    "record_count",
    "scored_count",
    "overall_sum",
    "overall_sum_squares",
    "hallucination_count",
    "toxic_count",
    "relevance_count",
    "relevance_sum",
    "relevance_sum_squares",
    "coherence_count",
    "coherence_sum",
    "coherence_sum_squares",
    "factuality_count",
    "factuality_sum",
    "factuality_sum_squares",
    "toxicity_count",
    "toxicity_sum",
    "toxicity_sum_squares",
    "latency_count",
    "latency_sum",
    "latency_sum_squares",
    "prompt_tokens_sum",
    "completion_tokens_sum",
)


def latency_bin(latency_ms: float) -> int:
    """The latency histogram's bin of a latency (the same as migration 017's quality_latency_bin)."""
    if latency_ms < 1:
        return 0
    return min(LATENCY_BINS - 1, 1 + math.floor(math.log(latency_ms) / math.log(LATENCY_GROWTH)))


def histogram_quantile(histogram: Sequence[int], quantile: float) -> float | None:
    """The quantile of a latency histogram: the middle (geometric) of the bin it falls in, within about 5% of the
    exact value; None for an empty histogram."""
    total = sum(histogram)
    if total <= 0:
        return None
    rank = quantile * total
    seen = 0
    for index, count in enumerate(histogram):
        seen += count
        if seen >= rank and count > 0:
            if index == 0:
                return 0.5
            return float(LATENCY_GROWTH ** (index - 0.5))
    return float(LATENCY_GROWTH ** (LATENCY_BINS - 2))


@dataclass
class HourlyRollup:
    """The aggregates of one hour (or a sum of hours) of one model version on one route."""

    hour_start: datetime
    route: str
    sums: dict[str, float] = field(default_factory=dict)
    latency_histogram: list[int] = field(default_factory=lambda: [0] * LATENCY_BINS)

    def add(self, other: HourlyRollup) -> None:
        for name in SUM_FIELDS:
            self.sums[name] = self.sums.get(name, 0) + other.sums.get(name, 0)
        self.latency_histogram = [a + b for a, b in zip(self.latency_histogram, other.latency_histogram, strict=True)]

    @property
    def record_count(self) -> int:
        return int(self.sums.get("record_count", 0))


@dataclass(frozen=True)
class VersionSummary:
    """A fleet summary line: one model version's traffic and quality over a period."""

    customer_id: uuid.UUID
    model_name: str
    model_version: str
    record_count: int
    mean_overall: float | None
    hallucination_rate: float | None
    toxic_rate: float | None
    mean_latency_ms: float | None
    p95_latency_ms: float | None
    prompt_tokens: int
    completion_tokens: int


@dataclass(frozen=True)
class RecordRow:
    """One request, for drill-down."""

    request_id: str
    timestamp: datetime
    agent_id: uuid.UUID
    route: str
    latency_ms: float | None
    overall_quality_score: float | None  # None while its evaluations have not arrived
    hallucination_detected: bool
    toxicity_score: float | None


def _summary(customer_id: uuid.UUID, model_name: str, model_version: str, total: HourlyRollup) -> VersionSummary:
    sums = total.sums
    scored = sums.get("scored_count", 0)
    latency_n = sums.get("latency_count", 0)
    return VersionSummary(
        customer_id=customer_id,
        model_name=model_name,
        model_version=model_version,
        record_count=int(sums.get("record_count", 0)),
        mean_overall=sums["overall_sum"] / scored if scored else None,
        hallucination_rate=sums["hallucination_count"] / scored if scored else None,
        toxic_rate=sums["toxic_count"] / sums["toxicity_count"] if sums.get("toxicity_count") else None,
        mean_latency_ms=sums["latency_sum"] / latency_n if latency_n else None,
        p95_latency_ms=histogram_quantile(total.latency_histogram, 0.95),
        prompt_tokens=int(sums.get("prompt_tokens_sum", 0)),
        completion_tokens=int(sums.get("completion_tokens_sum", 0)),
    )


def series_from_rollups(rollups: Sequence[HourlyRollup], since: datetime, bucket: timedelta) -> list[SeriesPoint]:
    """Chart points per bucket (a whole number of hours, from the hour of `since`) from hourly rollups."""
    origin = since.astimezone(UTC).replace(minute=0, second=0, microsecond=0)
    merged: dict[datetime, tuple[dict[str, float], NDArray[np.int64]]] = {}
    for rollup in rollups:
        start = origin + bucket * ((rollup.hour_start - origin) // bucket)
        sums, histogram = merged.setdefault(start, ({}, np.zeros(LATENCY_BINS, dtype=np.int64)))
        for name in ("record_count", "scored_count", "overall_sum", "hallucination_count"):
            sums[name] = sums.get(name, 0) + rollup.sums.get(name, 0)
        histogram += rollup.latency_histogram
    points = []
    for start in sorted(merged):
        sums, histogram = merged[start]
        scored = sums.get("scored_count", 0)
        points.append(
            SeriesPoint(
                start,
                int(sums.get("record_count", 0)),
                sums["overall_sum"] / scored if scored else None,
                histogram_quantile(histogram.tolist(), 0.95),
                sums["hallucination_count"] / scored if scored else None,
            )
        )
    return points


def _hour_floor(moment: datetime) -> datetime:
    return moment.astimezone(UTC).replace(minute=0, second=0, microsecond=0)


class QualityStore(Protocol):
    """Per-request quality records: the batch write and every read of per-request data."""

    name: str

    def insert_records(self, session: Session, rows: Sequence[Sequence[Any]]) -> int:
        """Store the rows (INGEST_COLUMNS order, metadata a dict) not stored yet; how many were new."""

    def read_window(
        self,
        session: Session,
        customer_id: uuid.UUID,
        model_name: str,
        *,
        model_version: str | None = None,
        start: datetime | None = None,
        end: datetime | None = None,
        last_n: int | None = None,
    ) -> WindowRows:
        """One window of a model version's records, oldest first: [start, end), or the newest `last_n`."""

    def hourly_rollups(
        self,
        session: Session,
        customer_id: uuid.UUID,
        model_name: str,
        model_version: str,
        since: datetime,
        until: datetime | None = None,
    ) -> list[HourlyRollup]:
        """Per (hour, route): the aggregates of the version's records in the hours from the hour of `since` up to
        (excluding) the hour of `until`, in time order."""

    def fleet_summary(
        self, session: Session, since: datetime, until: datetime, customer_ids: Sequence[uuid.UUID] | None = None
    ) -> list[VersionSummary]:
        """One line per (customer, model, version) with records in the hours of [since, until)."""

    def model_versions(self, session: Session, customer_id: uuid.UUID) -> list[tuple[str, str]]:
        """The customer's (model, version) pairs with records, sorted."""

    def records(
        self,
        session: Session,
        customer_id: uuid.UUID,
        model_name: str,
        model_version: str,
        start: datetime,
        end: datetime,
        limit: int,
    ) -> list[RecordRow]:
        """Drill-down: the version's records in [start, end), newest first, at most `limit`."""


def series(
    store: QualityStore,
    session: Session,
    customer_id: uuid.UUID,
    model_name: str,
    model_version: str,
    since: datetime,
    bucket: timedelta = HOUR,
) -> list[SeriesPoint]:
    """Chart points (count, mean overall score, p95 latency, hallucination rate) per bucket, from hourly rollups."""
    rollups = store.hourly_rollups(session, customer_id, model_name, model_version, since)
    return series_from_rollups(rollups, since, bucket)


# --- PostgreSQL -------------------------------------------------------------------------------------------------


class PostgresStore:
    """Records in quality_metrics, hourly aggregates in quality_rollups (kept by migration 017's triggers)."""

    name = "postgresql"

    def insert_records(self, session: Session, rows: Sequence[Sequence[Any]]) -> int:
        return repository.bulk_insert_metrics(session, rows)

    def read_window(
        self,
        session: Session,
        customer_id: uuid.UUID,
        model_name: str,
        *,
        model_version: str | None = None,
        start: datetime | None = None,
        end: datetime | None = None,
        last_n: int | None = None,
    ) -> WindowRows:
        return repository.read_window(
            session, customer_id, model_name, model_version=model_version, start=start, end=end, last_n=last_n
        )

    def hourly_rollups(
        self,
        session: Session,
        customer_id: uuid.UUID,
        model_name: str,
        model_version: str,
        since: datetime,
        until: datetime | None = None,
    ) -> list[HourlyRollup]:
        conditions = [
            QualityRollup.customer_id == customer_id,
            QualityRollup.model_name == model_name,
            QualityRollup.model_version == model_version,
            QualityRollup.hour_start >= _hour_floor(since),
        ]
        if until is not None:
            conditions.append(QualityRollup.hour_start < _hour_floor(until))
        columns = [getattr(QualityRollup, name) for name in SUM_FIELDS]
        rows = session.execute(
            select(QualityRollup.hour_start, QualityRollup.route, QualityRollup.latency_histogram, *columns)
            .where(*conditions)
            .order_by(QualityRollup.hour_start, QualityRollup.route)
        ).all()
        return [HourlyRollup(row[0], row[1], dict(zip(SUM_FIELDS, row[3:], strict=True)), list(row[2])) for row in rows]

    def fleet_summary(
        self, session: Session, since: datetime, until: datetime, customer_ids: Sequence[uuid.UUID] | None = None
    ) -> list[VersionSummary]:
        # Sums in SQL, and the hours' histograms summed bin by bin in SQL too (only the bins that count anything):
        # the work grows with versions x hours, never with records.
        key = "customer_id, model_name, model_version"
        window = (
            "hour_start >= :since AND hour_start < :until "
            "AND (CAST(:all_customers AS boolean) OR customer_id = ANY(CAST(:customer_ids AS uuid[])))"
        )
        statement = text(
            f"WITH sums AS (SELECT {key}, "  # noqa: S608 (constant SQL)
            + ", ".join(f"sum({name}) AS {name}" for name in SUM_FIELDS)
            + f" FROM quality_rollups WHERE {window} GROUP BY {key}), "  # noqa: S608
            f"bins AS (SELECT {key}, b.bin, sum(b.n) AS n FROM quality_rollups CROSS JOIN LATERAL "
            f"unnest(latency_histogram) WITH ORDINALITY AS b(n, bin) WHERE {window} AND b.n <> 0 "
            f"GROUP BY {key}, b.bin), "
            f"histograms AS (SELECT {key}, array_agg(bin ORDER BY bin) AS bins, array_agg(n ORDER BY bin) AS counts "
            f"FROM bins GROUP BY {key}) "
            f"SELECT s.*, h.bins, h.counts FROM sums AS s LEFT JOIN histograms AS h USING ({key}) "
            f"ORDER BY {key}"
        )
        rows = session.execute(
            statement,
            {
                "since": _hour_floor(since),
                "until": _hour_floor(until),
                "all_customers": customer_ids is None,
                "customer_ids": list(customer_ids or []),
            },
        ).all()
        out = []
        for row in rows:
            histogram = [0] * LATENCY_BINS
            for position, count in zip(row[-2] or [], row[-1] or [], strict=True):
                histogram[int(position) - 1] = int(count)  # WITH ORDINALITY counts from 1
            sums = {name: float(value) for name, value in zip(SUM_FIELDS, row[3:-2], strict=True)}
            out.append(_summary(row[0], row[1], row[2], HourlyRollup(_hour_floor(since), "", sums, histogram)))
        return out

    def model_versions(self, session: Session, customer_id: uuid.UUID) -> list[tuple[str, str]]:
        rows = session.execute(
            select(QualityRollup.model_name, QualityRollup.model_version)
            .where(QualityRollup.customer_id == customer_id)
            .distinct()
        ).all()
        return sorted((row[0], row[1]) for row in rows)

    def records(
        self,
        session: Session,
        customer_id: uuid.UUID,
        model_name: str,
        model_version: str,
        start: datetime,
        end: datetime,
        limit: int,
    ) -> list[RecordRow]:
        rows = session.execute(
            select(
                QualityMetric.request_id,
                QualityMetric.timestamp,
                QualityMetric.agent_id,
                QualityMetric.metadata_["route"].astext,
                QualityMetric.latency_ms,
                repository.SCORED_OVERALL,
                QualityMetric.hallucination_detected,
                QualityMetric.toxicity_score,
            )
            .where(
                QualityMetric.customer_id == customer_id,
                QualityMetric.model_name == model_name,
                QualityMetric.model_version == model_version,
                QualityMetric.timestamp >= start,
                QualityMetric.timestamp < end,
            )
            .order_by(QualityMetric.timestamp.desc(), QualityMetric.request_id)
            .limit(limit)
        ).all()
        return [RecordRow(r[0], r[1], r[2], r[3] or "", r[4], r[5], bool(r[6]), r[7]) for r in rows]


# --- ClickHouse -------------------------------------------------------------------------------------------------


class ClickHouseClient(Protocol):
    """The little of a ClickHouse connection the store uses: the same SQL text on a server and in-process."""

    def command(self, sql: str, parameters: dict[str, Any] | None = None) -> None: ...

    def rows(self, sql: str, parameters: dict[str, Any] | None = None) -> list[tuple[Any, ...]]: ...

    def insert_json_rows(self, table: str, columns: Sequence[str], lines: bytes, deduplication_token: str) -> None:
        """INSERT INTO table (columns) FORMAT JSONEachRow with `lines` as the data, as one block."""


# Partitioned by month, ordered by (customer, model, version, time): a version's window is one contiguous range of
# each month's parts. ReplacingMergeTree on (..., timestamp, request_id) folds a record stored twice into one at
# merge time, and reads use FINAL so a duplicate not merged yet is never counted twice; a retried batch is
# dropped whole by its insert deduplication token (non_replicated_deduplication_window; Replicated* tables keep
# such a window by default). A bloom filter on request_id serves the duplicate check of ingest.
CLICKHOUSE_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS quality_metrics ("
    " customer_id UUID, agent_id UUID, request_id String,"
    " model_name LowCardinality(String), model_version LowCardinality(String), route LowCardinality(String),"
    " timestamp DateTime64(6, 'UTC'),"
    " prompt_tokens Nullable(Int64), completion_tokens Nullable(Int64), latency_ms Nullable(Float64),"
    " relevance_score Nullable(Float64), coherence_score Nullable(Float64), factuality_score Nullable(Float64),"
    " hallucination_detected Bool, toxicity_score Nullable(Float64), overall_quality_score Float64,"
    " scores_pending Bool, metadata String,"
    " inserted_at DateTime64(6, 'UTC') DEFAULT now64(6),"
    " INDEX request_id_bloom request_id TYPE bloom_filter(0.01) GRANULARITY 4"
    ") ENGINE = ReplacingMergeTree(inserted_at)"
    " PARTITION BY toYYYYMM(timestamp)"
    " ORDER BY (customer_id, model_name, model_version, timestamp, request_id)"
    " SETTINGS non_replicated_deduplication_window = 1000"
)
CLICKHOUSE_COLUMNS = (
    "customer_id",
    "agent_id",
    "request_id",
    "model_name",
    "model_version",
    "route",
    "timestamp",
    "prompt_tokens",
    "completion_tokens",
    "latency_ms",
    "relevance_score",
    "coherence_score",
    "factuality_score",
    "hallucination_detected",
    "toxicity_score",
    "overall_quality_score",
    "scores_pending",
    "metadata",
)
_CH_KEY = (
    "customer_id = {customer_id:UUID} AND model_name = {model_name:String} AND model_version = {model_version:String}"
)
# ClickHouse evaluates both branches of if(): the logarithm's argument is kept >= 1 so that no row gives -inf.
_CH_BIN = (
    f"if(latency_ms < 1, 0, least({LATENCY_BINS - 1}, "
    f"1 + toInt32(floor(log(greatest(ifNull(latency_ms, 1), 1)) / log({LATENCY_GROWTH})))))"
)
# Per group: the SUM_FIELDS, then the latency histogram as sparse (bins, counts).
_CH_SUMS = ", ".join(
    [
        "count()",
        "countIf(NOT scores_pending)",
        "sumIf(overall_quality_score, NOT scores_pending)",
        "sumIf(overall_quality_score * overall_quality_score, NOT scores_pending)",
        "countIf(NOT scores_pending AND hallucination_detected)",
        f"countIf(toxicity_score >= {ROLLUP_TOXIC_THRESHOLD})",
        *(
            item
            for name in ("relevance", "coherence", "factuality", "toxicity")
            for item in (
                f"count({name}_score)",
                f"sumOrDefault(assumeNotNull({name}_score) * ({name}_score IS NOT NULL))",
                f"sumOrDefault(assumeNotNull({name}_score) * assumeNotNull({name}_score) * ({name}_score IS NOT NULL))",
            )
        ),
        "count(latency_ms)",
        "sumOrDefault(assumeNotNull(latency_ms) * (latency_ms IS NOT NULL))",
        "sumOrDefault(assumeNotNull(latency_ms) * assumeNotNull(latency_ms) * (latency_ms IS NOT NULL))",
        "sum(ifNull(prompt_tokens, 0))",
        "sum(ifNull(completion_tokens, 0))",
        f"sumMapIf([toUInt16({_CH_BIN})], [toUInt64(1)], latency_ms IS NOT NULL)",
    ]
)
_CH_WINDOW_COLUMNS = (
    "if(scores_pending, NULL, overall_quality_score), relevance_score, coherence_score, factuality_score, latency_ms,"
    " hallucination_detected, toxicity_score, timestamp, agent_id"
)


def _dense(sparse: Any) -> list[int]:
    histogram = [0] * LATENCY_BINS
    bins, counts = sparse
    for index, count in zip(bins, counts, strict=True):
        histogram[int(index)] += int(count)
    return histogram


def _as_utc(value: Any) -> datetime:
    moment = value if isinstance(value, datetime) else datetime.fromisoformat(str(value))
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _as_uuid(value: Any) -> uuid.UUID:
    return value if isinstance(value, uuid.UUID) else uuid.UUID(str(value))


def _opt_float(value: Any) -> float | None:
    return None if value is None else float(value)


class ClickHouseStore:
    """Records in ClickHouse (`CLICKHOUSE_SCHEMA`), aggregated when read; the control plane stays in PostgreSQL."""

    name = "clickhouse"

    def __init__(self, client: ClickHouseClient) -> None:
        self.client = client

    def ensure_schema(self) -> None:
        self.client.command(CLICKHOUSE_SCHEMA)

    def stored_request_ids(self, customer_id: uuid.UUID, request_ids: Sequence[str]) -> set[str]:
        rows = self.client.rows(
            "SELECT DISTINCT request_id FROM quality_metrics WHERE customer_id = {customer_id:UUID} "
            "AND request_id IN {request_ids:Array(String)}",
            {"customer_id": customer_id, "request_ids": list(request_ids)},
        )
        return {str(row[0]) for row in rows}

    def insert_records(self, session: Session, rows: Sequence[Sequence[Any]]) -> int:
        """Store the batch's new records as one INSERT.

        All or nothing, in ClickHouse's terms: the batch is one INSERT of one block, written as one part per month
        it spans; a block is visible whole or not at all, and a batch within one month is atomic. A batch across a
        month boundary may be stored in part if the server fails between two parts; sending the same batch again
        then stores the rest (its token differs, the records already stored are skipped by the duplicate check and,
        failing that, folded by ReplacingMergeTree). A batch retried after a lost reply is dropped whole by its
        deduplication token.
        """
        if not rows:
            return 0
        position = {name: i for i, name in enumerate(INGEST_COLUMNS)}
        by_customer: dict[uuid.UUID, list[Sequence[Any]]] = {}
        for row in rows:
            by_customer.setdefault(_as_uuid(row[position["customer_id"]]), []).append(row)
        inserted = 0
        for customer_id, batch in by_customer.items():
            seen = self.stored_request_ids(customer_id, [row[position["request_id"]] for row in batch])
            fresh: dict[str, Sequence[Any]] = {}
            for row in batch:
                request_id = str(row[position["request_id"]])
                if request_id not in seen and request_id not in fresh:
                    fresh[request_id] = row
            if not fresh:
                continue
            lines = []
            for request_id in sorted(fresh):
                row = fresh[request_id]
                metadata = dict(row[position["metadata"]] or {})
                timestamp = _as_utc(row[position["timestamp"]])
                record = {
                    "customer_id": str(customer_id),
                    "agent_id": str(row[position["agent_id"]]),
                    "request_id": request_id,
                    "model_name": row[position["model_name"]],
                    "model_version": row[position["model_version"]],
                    "route": str(metadata.get("route") or ""),
                    "timestamp": timestamp.strftime("%Y-%m-%d %H:%M:%S.%f"),
                    **{
                        name: row[position[name]]
                        for name in (
                            "prompt_tokens",
                            "completion_tokens",
                            "latency_ms",
                            "relevance_score",
                            "coherence_score",
                            "factuality_score",
                            "hallucination_detected",
                            "toxicity_score",
                            "overall_quality_score",
                        )
                    },
                    "scores_pending": "scores_pending" in metadata,
                    "metadata": orjson.dumps(metadata).decode(),
                }
                lines.append(orjson.dumps(record))
            token = hashlib.sha256(f"{customer_id}\n".encode() + b"\n".join(lines)).hexdigest()
            self.client.insert_json_rows("quality_metrics", CLICKHOUSE_COLUMNS, b"\n".join(lines) + b"\n", token)
            inserted += len(fresh)
        return inserted

    def read_window(
        self,
        session: Session,
        customer_id: uuid.UUID,
        model_name: str,
        *,
        model_version: str | None = None,
        start: datetime | None = None,
        end: datetime | None = None,
        last_n: int | None = None,
    ) -> WindowRows:
        conditions = ["customer_id = {customer_id:UUID}", "model_name = {model_name:String}"]
        parameters: dict[str, Any] = {"customer_id": customer_id, "model_name": model_name}
        if model_version is not None:
            conditions.append("model_version = {model_version:String}")
            parameters["model_version"] = model_version
        if start is not None:
            conditions.append("timestamp >= {start:DateTime64(6, 'UTC')}")
            parameters["start"] = _as_utc(start)
        if end is not None:
            conditions.append("timestamp < {end:DateTime64(6, 'UTC')}")
            parameters["end"] = _as_utc(end)
        sql = f"SELECT {_CH_WINDOW_COLUMNS} FROM quality_metrics FINAL WHERE {' AND '.join(conditions)}"  # noqa: S608
        if last_n is not None:
            sql += " ORDER BY timestamp DESC LIMIT {last_n:UInt64}"
            parameters["last_n"] = last_n
        rows = sorted(self.client.rows(sql, parameters), key=lambda row: _as_utc(row[7]))
        return WindowRows(
            overall=[_opt_float(r[0]) for r in rows],
            relevance=[_opt_float(r[1]) for r in rows],
            coherence=[_opt_float(r[2]) for r in rows],
            factuality=[_opt_float(r[3]) for r in rows],
            latency_ms=[_opt_float(r[4]) for r in rows],
            hallucination=[bool(r[5]) for r in rows],
            toxicity=[_opt_float(r[6]) for r in rows],
            first_at=_as_utc(rows[0][7]) if rows else None,
            last_at=_as_utc(rows[-1][7]) if rows else None,
            agent_id=Counter(_as_uuid(r[8]) for r in rows).most_common(1)[0][0] if rows else None,
        )

    def _grouped(self, group: str, where: str, parameters: dict[str, Any]) -> list[tuple[Any, ...]]:
        return self.client.rows(
            f"SELECT {group}, {_CH_SUMS} FROM quality_metrics FINAL WHERE {where} "  # noqa: S608 (constant SQL)
            f"GROUP BY {group} ORDER BY {group}",
            parameters,
        )

    def hourly_rollups(
        self,
        session: Session,
        customer_id: uuid.UUID,
        model_name: str,
        model_version: str,
        since: datetime,
        until: datetime | None = None,
    ) -> list[HourlyRollup]:
        where = f"{_CH_KEY} AND timestamp >= {{since:DateTime64(6, 'UTC')}}"
        parameters: dict[str, Any] = {
            "customer_id": customer_id,
            "model_name": model_name,
            "model_version": model_version,
            "since": _hour_floor(since),
        }
        if until is not None:
            where += " AND timestamp < {until:DateTime64(6, 'UTC')}"
            parameters["until"] = _hour_floor(until)
        rows = self._grouped("toStartOfHour(timestamp), route", where, parameters)
        return [
            HourlyRollup(
                _as_utc(row[0]),
                str(row[1]),
                {name: float(value) for name, value in zip(SUM_FIELDS, row[2:-1], strict=True)},
                _dense(row[-1]),
            )
            for row in rows
        ]

    def fleet_summary(
        self, session: Session, since: datetime, until: datetime, customer_ids: Sequence[uuid.UUID] | None = None
    ) -> list[VersionSummary]:
        where = "timestamp >= {since:DateTime64(6, 'UTC')} AND timestamp < {until:DateTime64(6, 'UTC')}"
        parameters: dict[str, Any] = {"since": _hour_floor(since), "until": _hour_floor(until)}
        if customer_ids is not None:
            where += " AND customer_id IN {customer_ids:Array(UUID)}"
            parameters["customer_ids"] = list(customer_ids)
        rows = self._grouped("customer_id, model_name, model_version", where, parameters)
        out = []
        for row in rows:
            total = HourlyRollup(
                _hour_floor(since),
                "",
                {name: float(value) for name, value in zip(SUM_FIELDS, row[3:-1], strict=True)},
                _dense(row[-1]),
            )
            out.append(_summary(_as_uuid(row[0]), str(row[1]), str(row[2]), total))
        # ClickHouse orders UUIDs by their two 64-bit halves, not as PostgreSQL (and Python) do.
        return sorted(out, key=lambda line: (line.customer_id, line.model_name, line.model_version))

    def model_versions(self, session: Session, customer_id: uuid.UUID) -> list[tuple[str, str]]:
        rows = self.client.rows(
            "SELECT DISTINCT model_name, model_version FROM quality_metrics WHERE customer_id = {customer_id:UUID}",
            {"customer_id": customer_id},
        )
        return sorted((str(row[0]), str(row[1])) for row in rows)

    def records(
        self,
        session: Session,
        customer_id: uuid.UUID,
        model_name: str,
        model_version: str,
        start: datetime,
        end: datetime,
        limit: int,
    ) -> list[RecordRow]:
        rows = self.client.rows(
            "SELECT request_id, timestamp, agent_id, route, latency_ms, "  # noqa: S608 (constant SQL)
            "if(scores_pending, NULL, overall_quality_score), hallucination_detected, toxicity_score "
            f"FROM quality_metrics FINAL WHERE {_CH_KEY} AND timestamp >= {{start:DateTime64(6, 'UTC')}} "
            "AND timestamp < {end:DateTime64(6, 'UTC')} ORDER BY timestamp DESC, request_id LIMIT {limit:UInt64}",
            {
                "customer_id": customer_id,
                "model_name": model_name,
                "model_version": model_version,
                "start": _as_utc(start),
                "end": _as_utc(end),
                "limit": limit,
            },
        )
        return [
            RecordRow(
                str(r[0]),
                _as_utc(r[1]),
                _as_uuid(r[2]),
                str(r[3]),
                _opt_float(r[4]),
                _opt_float(r[5]),
                bool(r[6]),
                _opt_float(r[7]),
            )
            for r in rows
        ]
