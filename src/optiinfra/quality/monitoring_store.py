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
from datetime import datetime, timedelta
from typing import Any

import numpy as np
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
    "CAST(:t_p50 AS double precision[]), CAST(:t_p95 AS double precision[])) AS t(route, hour, low, p50, p95) "
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
    }


def _key_params(customer_id: uuid.UUID, model_name: str, model_version: str) -> dict[str, Any]:
    return {"customer_id": customer_id, "model_name": model_name, "model_version": model_version}


def window_cells(
    session: Session,
    customer_id: uuid.UUID,
    model_name: str,
    model_version: str,
    now: datetime,
    windows_minutes: Sequence[int],
    thresholds: Thresholds,
    toxic_threshold: float,
) -> dict[int, Cells]:
    """Per window [now - minutes, now): the aggregates per (route, hour) cell; one query for all windows."""
    longest = max(windows_minutes)
    selects: list[str] = []
    params: dict[str, Any] = {
        **_key_params(customer_id, model_name, model_version),
        **_threshold_params(thresholds),
        "toxic_threshold": toxic_threshold,
        "since": now - timedelta(minutes=longest),
        "now": now,
    }
    for index, minutes in enumerate(windows_minutes):
        params[f"w{index}"] = now - timedelta(minutes=minutes)
        selects.extend(_aggregates(f"m.timestamp >= :w{index}"))
    statement = text(
        f"SELECT {_ROUTE} AS route, {_HOUR} AS hour, {', '.join(selects)} "  # noqa: S608 (constant SQL)
        f"FROM quality_metrics AS m {_THRESHOLDS} "
        f"WHERE {_KEY} AND m.timestamp >= :since AND m.timestamp < :now GROUP BY 1, 2 ORDER BY 1, 2"
    )
    rows = session.execute(statement, params).all()
    width = len(AGG_FIELDS)
    out: dict[int, Cells] = {}
    for index, minutes in enumerate(windows_minutes):
        block = np.array([row[2 + index * width : 2 + (index + 1) * width] for row in rows], dtype=float).reshape(
            len(rows), width
        )
        present = block[:, 0] > 0
        out[minutes] = Cells(
            route=[str(row[0]) for row, keep in zip(rows, present, strict=True) if keep],
            hour=np.array([int(row[1]) for row, keep in zip(rows, present, strict=True) if keep], dtype=np.int64),
            values={name: block[present, j] for j, name in enumerate(AGG_FIELDS)},
        )
    return out


def traffic_stats(
    session: Session, customer_id: uuid.UUID, model_name: str, model_version: str, now: datetime
) -> tuple[datetime | None, int]:
    """The first record's time and the number of records of the version before `now`."""
    row = session.execute(
        text(f"SELECT min(m.timestamp), count(*) FROM quality_metrics AS m WHERE {_KEY} AND m.timestamp < :now"),  # noqa: S608
        {**_key_params(customer_id, model_name, model_version), "now": now},
    ).one()
    return row[0], int(row[1])


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
            f"GROUPING({_HOUR}) AS pooled "
            f"FROM quality_metrics AS m WHERE {where} GROUP BY GROUPING SETS (({_ROUTE}, {_HOUR}), ({_ROUTE}))"
        ),
        params,
    ).all()
    total = sum(int(row[2]) for row in quantiles if row[6] == 1)
    if total < min_records:
        return None

    def triple(row: Any) -> tuple[float, float, float]:
        return tuple(math.nan if value is None else float(value) for value in row[3:6])  # type: ignore[return-value]

    thresholds = Thresholds(
        cells={(str(row[0]), int(row[1])): triple(row) for row in quantiles if row[6] == 0 and row[2] >= MIN_CELL},
        routes={str(row[0]): triple(row) for row in quantiles if row[6] == 1},
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
