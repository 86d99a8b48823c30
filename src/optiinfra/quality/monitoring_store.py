"""The monitoring's reads from PostgreSQL: per-cell aggregates of the judged windows and of a reference period.

A pass reads only aggregates: one query returns, per (route, hour of day) cell and per window, the sufficient
statistics of `monitoring.AGG_FIELDS` (counts, sums, sums of squares, and counts above the reference's thresholds),
so its cost depends on the number of cells, not on how many raw rows the application sends. The SQL text is fixed
(built only from the constant field lists below); every value is a bound parameter.
"""

from __future__ import annotations

import math
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import numpy as np
from numpy.typing import NDArray
from sqlalchemy import text
from sqlalchemy.orm import Session

from optiinfra.quality.monitoring import (
    AGG_FIELDS,
    MIN_CELL,
    Cells,
    Reference,
    Thresholds,
    build_reference,
)

_ROUTE = "coalesce(m.metadata->>'route', '')"
_HOUR = "CAST(extract(hour FROM m.timestamp AT TIME ZONE 'UTC') AS integer)"
_DAY = "CAST(floor(extract(epoch FROM m.timestamp) / 86400) AS bigint)"
_KEY = "m.customer_id = :customer_id AND m.model_name = :model_name AND m.model_version = :model_version"
# A record stored before its evaluations arrived (OTLP, metadata.scores_pending) has no overall score yet.
_OVERALL = "(CASE WHEN m.metadata ? 'scores_pending' THEN NULL ELSE m.overall_quality_score END)"
_THRESHOLDS = (
    "LEFT JOIN unnest(CAST(:t_route AS text[]), CAST(:t_hour AS integer[]), CAST(:t_low AS double precision[]), "
    "CAST(:t_p50 AS double precision[]), CAST(:t_p95 AS double precision[]), CAST(:t_p90 AS double precision[])) "
    "AS t(route, hour, low, p50, p95, p90) "
    f"ON t.route = {_ROUTE} AND t.hour = {_HOUR}"
)
_NOT_EXCLUDED = (
    "NOT EXISTS (SELECT 1 FROM unnest(CAST(:x_start AS timestamptz[]), CAST(:x_end AS timestamptz[])) AS x(s, e) "
    "WHERE m.timestamp >= x.s AND m.timestamp < x.e)"
)


def _aggregates(condition: str) -> list[str]:
    """SQL of every AGG_FIELDS aggregate over the rows matching `condition` (a constant SQL snippet)."""

    def count(extra: str = "") -> str:
        return f"count(*) FILTER (WHERE {condition}{extra})"

    def total(expression: str, extra: str = "") -> str:
        return f"coalesce(sum({expression}) FILTER (WHERE {condition}{extra}), 0)"

    columns = {
        "n": count(),
        "ov_n": f"count({_OVERALL}) FILTER (WHERE {condition})",
        "ov_s": total(_OVERALL),
        "ov_q": total(f"{_OVERALL} * {_OVERALL}"),
        "hal_k": count(" AND m.hallucination_detected"),
        "toxic_k": count(" AND m.toxicity_score >= :toxic_threshold"),
        "low_k": count(f" AND {_OVERALL} < t.low"),
        "low_s": total(_OVERALL, f" AND {_OVERALL} < t.low"),
        "lat_n": f"count(m.latency_ms) FILTER (WHERE {condition})",
        "p50_k": count(" AND m.latency_ms > t.p50"),
        "p95_k": count(" AND m.latency_ms > t.p95"),
        "p90_k": count(" AND m.latency_ms > t.p90"),
    }
    for prefix, column in (
        ("rel", "relevance_score"),
        ("coh", "coherence_score"),
        ("fac", "factuality_score"),
        ("tox", "toxicity_score"),
    ):
        columns[f"{prefix}_n"] = f"count(m.{column}) FILTER (WHERE {condition})"
        columns[f"{prefix}_s"] = total(f"m.{column}")
        columns[f"{prefix}_q"] = total(f"m.{column} * m.{column}")
    return [columns[name] for name in AGG_FIELDS]


def _threshold_params(thresholds: Thresholds) -> dict[str, Any]:
    table = thresholds.table()

    def clean(value: float) -> float | None:
        return None if math.isnan(value) else value  # NaN compares greater than everything in PostgreSQL

    return {
        "t_route": [row[0] for row in table],
        "t_hour": [row[1] for row in table],
        "t_low": [clean(row[2]) for row in table],
        "t_p50": [clean(row[3]) for row in table],
        "t_p95": [clean(row[4]) for row in table],
        "t_p90": [clean(row[5]) for row in table],
    }


def _key_params(customer_id: uuid.UUID, model_name: str, model_version: str) -> dict[str, Any]:
    return {"customer_id": customer_id, "model_name": model_name, "model_version": model_version}


@dataclass
class _Block:
    """Aggregates per (route, hour, bucket) of [anchor + first x step, anchor + last x step), rows sorted by bucket."""

    anchor: datetime
    step: int  # seconds
    first: int
    last: int
    thresholds: Thresholds
    toxic_threshold: float
    bucket: NDArray[np.int64]
    cell: NDArray[np.int64]  # index into routes / hours
    routes: list[str]
    hours: NDArray[np.int64]
    values: NDArray[np.float64]  # rows x AGG_FIELDS

    def covers(self, lo: int, hi: int, thresholds: Thresholds, toxic_threshold: float) -> bool:
        return (
            self.first <= lo
            and hi <= self.last
            and thresholds is self.thresholds
            and toxic_threshold == self.toxic_threshold
        )


@dataclass
class WindowCache:
    """Read-ahead for a replay of data that no longer changes (the backtest): one query returns the per-bucket
    aggregates of `ahead_minutes` of future passes, and each pass sums its windows from them. The worker, whose data
    still arrives, reads only its own windows (no cache: the same query and sums, over [now - longest, now))."""

    ahead_minutes: int
    anchor: datetime
    step_seconds: int
    blocks: dict[tuple[uuid.UUID, str, str], _Block] = field(default_factory=dict)


def _bucket_block(
    session: Session,
    customer_id: uuid.UUID,
    model_name: str,
    model_version: str,
    anchor: datetime,
    step: int,
    first: int,
    last: int,
    thresholds: Thresholds,
    toxic_threshold: float,
) -> _Block:
    """One query: the aggregates per (route, hour, bucket) of the version's records in the block's span, where
    bucket = floor((timestamp - anchor) / step)."""
    statement = text(
        f"SELECT {_ROUTE} AS route, {_HOUR} AS hour, "  # noqa: S608 (constant SQL)
        "CAST(floor(extract(epoch FROM (m.timestamp - :anchor)) / CAST(:step AS integer)) AS bigint) AS bucket, "
        f"{', '.join(_aggregates('true'))} FROM quality_metrics AS m {_THRESHOLDS} "
        f"WHERE {_KEY} AND m.timestamp >= :since AND m.timestamp < :until GROUP BY 1, 2, 3 ORDER BY 3, 1, 2"
    )
    rows = session.execute(
        statement,
        {
            **_key_params(customer_id, model_name, model_version),
            **_threshold_params(thresholds),
            "toxic_threshold": toxic_threshold,
            "anchor": anchor,
            "step": step,
            "since": anchor + timedelta(seconds=first * step),
            "until": anchor + timedelta(seconds=last * step),
        },
    ).all()
    cell_keys = sorted({(str(row[0]), int(row[1])) for row in rows})
    index_of = {key: i for i, key in enumerate(cell_keys)}
    return _Block(
        anchor=anchor,
        step=step,
        first=first,
        last=last,
        thresholds=thresholds,
        toxic_threshold=toxic_threshold,
        bucket=np.array([int(row[2]) for row in rows], dtype=np.int64),
        cell=np.array([index_of[(str(row[0]), int(row[1]))] for row in rows], dtype=np.int64),
        routes=[key[0] for key in cell_keys],
        hours=np.array([key[1] for key in cell_keys], dtype=np.int64),
        values=np.array([row[3:] for row in rows], dtype=float).reshape(len(rows), len(AGG_FIELDS)),
    )


def _sum_window(block: _Block, lo: int, hi: int) -> Cells:
    """The per-cell aggregates of the buckets [lo, hi) of `block`, in (route, hour) order."""
    start, stop = np.searchsorted(block.bucket, [lo, hi], side="left")
    cells = block.cell[start:stop]
    width = len(AGG_FIELDS)
    size = len(block.routes)
    flat = (cells[:, None] * width + np.arange(width)[None, :]).ravel()
    sums = np.bincount(flat, weights=block.values[start:stop].ravel(), minlength=size * width).reshape(size, width)
    present = sums[:, 0] > 0
    return Cells(
        route=[route for route, keep in zip(block.routes, present, strict=True) if keep],
        hour=block.hours[present],
        values={name: sums[present, j] for j, name in enumerate(AGG_FIELDS)},
    )


def window_cells(
    session: Session,
    customer_id: uuid.UUID,
    model_name: str,
    model_version: str,
    now: datetime,
    windows_minutes: Sequence[int],
    thresholds: Thresholds,
    toxic_threshold: float,
    cache: WindowCache | None = None,
) -> dict[int, Cells]:
    """Per window [now - minutes, now): the aggregates per (route, hour) cell. One query returns them per bucket of
    time (a minute, or the replay's interval if finer), and each window is the sum of its buckets; with a `cache`
    (a replay), the query also reads `ahead_minutes` of later buckets, which the next passes sum without a query."""
    longest = max(windows_minutes)
    if cache is None or (now - cache.anchor).total_seconds() % cache.step_seconds:
        anchor, step, ahead = now, 60, 0
    else:
        anchor, step, ahead = cache.anchor, math.gcd(cache.step_seconds, 60), cache.ahead_minutes
    position = round((now - anchor).total_seconds() / step)
    per_minute = 60 // step
    lo = position - longest * per_minute
    key = (customer_id, model_name, model_version)
    block = cache.blocks.get(key) if cache is not None and ahead else None
    if block is None or block.anchor != anchor or not block.covers(lo, position, thresholds, toxic_threshold):
        block = _bucket_block(
            session,
            customer_id,
            model_name,
            model_version,
            anchor,
            step,
            lo,
            position + ahead * per_minute,
            thresholds,
            toxic_threshold,
        )
        if cache is not None and ahead:
            cache.blocks[key] = block
    return {minutes: _sum_window(block, position - minutes * per_minute, position) for minutes in windows_minutes}


def traffic_stats(
    session: Session,
    customer_id: uuid.UUID,
    model_name: str,
    model_version: str,
    now: datetime,
    cap: int,
    since: datetime | None = None,
) -> tuple[datetime | None, int]:
    """The first record's time and the number of records of the version before `now` (and from `since`: a scorer
    boundary), counted up to `cap` (all the baseline policy needs to know, and a cost bounded by `cap` on the
    version's index, whatever its size)."""
    params = {
        **_key_params(customer_id, model_name, model_version),
        "now": now,
        "since": since or datetime.fromtimestamp(0).astimezone(),
    }
    first = session.execute(
        text(
            f"SELECT min(m.timestamp) FROM quality_metrics AS m WHERE {_KEY} "  # noqa: S608 (constant SQL)
            "AND m.timestamp < :now AND m.timestamp >= :since"
        ),
        params,
    ).scalar_one()
    count = session.execute(
        text(
            f"SELECT count(*) FROM (SELECT 1 FROM quality_metrics AS m WHERE {_KEY} AND m.timestamp < :now "  # noqa: S608
            "AND m.timestamp >= :since LIMIT :cap) AS capped"
        ),
        {**params, "cap": cap},
    ).scalar_one()
    return first, int(count)


# The scorers that scored a record (optiinfra.scoring.suite: metadata.scorer_set); None for scores sent by the
# customer. Records still waiting for scores have none yet and are skipped.
_SCORER_SET = "m.metadata->>'scorer_set'"


def current_scorer_set(
    session: Session, customer_id: uuid.UUID, model_name: str, model_version: str, now: datetime
) -> tuple[bool, str | None]:
    """(found, scorer set) of the version's newest scored record before `now`; found is False without one."""
    row = session.execute(
        text(
            f"SELECT {_SCORER_SET} FROM quality_metrics AS m WHERE {_KEY} AND m.timestamp < :now "  # noqa: S608
            "AND NOT m.metadata ? 'scores_pending' ORDER BY m.timestamp DESC LIMIT 1"
        ),
        {**_key_params(customer_id, model_name, model_version), "now": now},
    ).first()
    return (False, None) if row is None else (True, row[0])


def first_scored_by(
    session: Session,
    customer_id: uuid.UUID,
    model_name: str,
    model_version: str,
    scorer_set: str | None,
    since: datetime,
    now: datetime,
) -> datetime | None:
    """When the version's records from `since` were first scored by `scorer_set` (None: by the customer)."""
    first: datetime | None = session.scalar(
        text(
            f"SELECT min(m.timestamp) FROM quality_metrics AS m WHERE {_KEY} AND m.timestamp >= :since "  # noqa: S608
            f"AND m.timestamp < :now AND NOT m.metadata ? 'scores_pending' "
            f"AND {_SCORER_SET} IS NOT DISTINCT FROM :scorer_set"
        ),
        {
            **_key_params(customer_id, model_name, model_version),
            "since": since,
            "now": now,
            "scorer_set": scorer_set,
        },
    )
    return first


def reference_from_db(
    session: Session,
    customer_id: uuid.UUID,
    model_name: str,
    model_version: str,
    since: datetime | None,
    until: datetime,
    excluded: Sequence[tuple[datetime, datetime]],
    *,
    low_quantile: float,
    toxic_threshold: float,
    min_records: int,
) -> Reference | None:
    """The reference of the records in [since, until) outside the excluded spans; None below `min_records`."""
    params: dict[str, Any] = {
        **_key_params(customer_id, model_name, model_version),
        "since": since or datetime.fromtimestamp(0).astimezone(),
        "until": until,
        "x_start": [span[0] for span in excluded],
        "x_end": [span[1] for span in excluded],
        "low_quantile": low_quantile,
    }
    where = f"{_KEY} AND m.timestamp >= :since AND m.timestamp < :until AND {_NOT_EXCLUDED}"
    quantiles = session.execute(
        text(
            f"SELECT {_ROUTE} AS route, {_HOUR} AS hour, count(*), "  # noqa: S608 (constant SQL)
            f"percentile_cont(:low_quantile) WITHIN GROUP (ORDER BY {_OVERALL}), "
            "percentile_cont(0.5) WITHIN GROUP (ORDER BY m.latency_ms), "
            "percentile_cont(0.95) WITHIN GROUP (ORDER BY m.latency_ms), "
            "percentile_cont(0.9) WITHIN GROUP (ORDER BY m.latency_ms), "
            f"GROUPING({_HOUR}) AS pooled "
            f"FROM quality_metrics AS m WHERE {where} GROUP BY GROUPING SETS (({_ROUTE}, {_HOUR}), ({_ROUTE}))"
        ),
        params,
    ).all()
    total = sum(int(row[2]) for row in quantiles if row[7] == 1)
    if total < min_records:
        return None

    def quad(row: Any) -> tuple[float, float, float, float]:
        return tuple(math.nan if value is None else float(value) for value in row[3:7])  # type: ignore[return-value]

    thresholds = Thresholds(
        cells={(str(row[0]), int(row[1])): quad(row) for row in quantiles if row[7] == 0 and row[2] >= MIN_CELL},
        routes={str(row[0]): quad(row) for row in quantiles if row[7] == 1},
    )
    rows = session.execute(
        text(
            f"SELECT {_ROUTE} AS route, {_HOUR} AS hour, {_DAY} AS day, "  # noqa: S608 (constant SQL)
            f"{', '.join(_aggregates('true'))} FROM quality_metrics AS m {_THRESHOLDS} "
            f"WHERE {where} GROUP BY 1, 2, 3 ORDER BY 1, 2, 3"
        ),
        {**params, **_threshold_params(thresholds), "toxic_threshold": toxic_threshold},
    ).all()
    block = np.array([row[3:] for row in rows], dtype=float).reshape(len(rows), len(AGG_FIELDS))
    day_cells = Cells(
        route=[str(row[0]) for row in rows],
        hour=np.array([int(row[1]) for row in rows], dtype=np.int64),
        values={name: block[:, j] for j, name in enumerate(AGG_FIELDS)},
        day=np.array([int(row[2]) for row in rows], dtype=np.int64),
    )
    return build_reference(
        day_cells,
        thresholds,
        start=since.isoformat() if since else None,
        end=until.isoformat(),
    )
