"""Continuous monitoring (issue 11): hour- and mix-matched references, repeated looks within a false-alarm budget,
severity from harm, and the incident rule. Pure: aggregates in, verdicts out; the worker and the backtest read the
aggregates from PostgreSQL (`monitoring_store`), the benchmarks compute the same aggregates with numpy
(`aggregate_numpy`), and tests check that both agree.

The model, in short (docs/quality.md, "Continuous monitoring", says why):

- **Strata.** Every request belongs to a cell (route, hour of day UTC): `metadata.route` (missing: "") and the hour
  it arrived. The reference holds, per cell and metric, n, the mean (a score's mean, or a share: hallucinations,
  toxic answers, low-score answers, latency above the cell's reference median and p95) and the per-request
  variance.
- **Expected value of the current mix.** A window's expected total is E = sum over cells of n_cell * mu_ref(cell):
  the reference evaluated at the window's own mix of routes and hours (direct standardisation), so a change of
  hour or of mix alone moves E with the observation and is no regression.
- **Variance.** Var(O - E) = sum n_c var_c (the window's sampling) + sum n_c^2 var_c / N_c (the reference's own
  estimation error, which stays the same across every window judged against it) + n^2 tau^2 (the day-to-day
  variation the reference showed between its own days). A cell without enough reference data falls back to its
  route's pooled reference, with the between-hour variance of that route added.
- **Repeated looks.** The worker looks every `interval_seconds` at `len(windows_minutes)` overlapping windows for
  each of the METRICS. The one-sided threshold z* is set so that the union bound over every look in a week is the
  budget: P(any false alarm in a week) <= sum of P(each look) = looks_per_week * metrics * windows * p* =
  `false_alarms_per_week`. The union bound holds under any dependence between overlapping windows.
- **Practical floors.** A significant change must also exceed both of its floors (absolute and relative).
- **Severity from harm**: the share of requests affected times the size of their loss, in per cent of request
  quality (a 10 % lower score on every request is 10; 3 % more hallucinated answers is 3).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
from numpy.typing import NDArray
from scipy import special

from optiinfra.enums import RegressionSeverity, RegressionType
from optiinfra.quality.settings import QualitySettings

# The sufficient statistics of a group of requests (a cell of a window, or of a reference day).
AGG_FIELDS = (
    "n",
    "ov_n",  # records with an overall score (OTLP records whose evaluations have not arrived have none yet)
    "ov_s",
    "ov_q",
    "rel_n",
    "rel_s",
    "rel_q",
    "coh_n",
    "coh_s",
    "coh_q",
    "fac_n",
    "fac_s",
    "fac_q",
    "tox_n",
    "tox_s",
    "tox_q",
    "hal_k",
    "toxic_k",
    "low_k",
    "low_s",
    "lat_n",
    "p50_k",
    "p95_k",
    "p90_k",  # latency above the cell's reference p90 (references made before the tail score have no p90: 0)
)
MIN_CELL = 30  # reference records a (route, hour) cell needs to stand on its own; else its route's pooled values
DEFAULT_TAIL_SLOPE = 0.25  # a log-normal's density at its p95 over its density at the median, about
POISSON_BELOW = 25.0  # expected counts below this are tested with an exact Poisson tail as well


@dataclass(frozen=True)
class Metric:
    name: str
    regression_type: RegressionType
    kind: str  # "mean" or "share"
    n_field: str
    sum_field: str
    sq_field: str | None
    higher_is_worse: bool


METRICS: tuple[Metric, ...] = (
    Metric("overall_quality_score", RegressionType.QUALITY_DROP, "mean", "ov_n", "ov_s", "ov_q", False),
    Metric("relevance_score", RegressionType.QUALITY_DROP, "mean", "rel_n", "rel_s", "rel_q", False),
    Metric("coherence_score", RegressionType.QUALITY_DROP, "mean", "coh_n", "coh_s", "coh_q", False),
    Metric("factuality_score", RegressionType.QUALITY_DROP, "mean", "fac_n", "fac_s", "fac_q", False),
    Metric("low_score_share", RegressionType.QUALITY_DROP, "share", "ov_n", "low_k", None, True),
    Metric("hallucination_rate", RegressionType.HALLUCINATION_SPIKE, "share", "ov_n", "hal_k", None, True),
    Metric("toxic_share", RegressionType.TOXICITY_INCREASE, "share", "tox_n", "toxic_k", None, True),
    Metric("toxicity_mean", RegressionType.TOXICITY_INCREASE, "mean", "tox_n", "tox_s", "tox_q", True),
    Metric("latency_share_above_p50", RegressionType.LATENCY_INCREASE, "share", "lat_n", "p50_k", None, True),
    Metric("latency_share_above_p95", RegressionType.LATENCY_INCREASE, "share", "lat_n", "p95_k", None, True),
)
METRIC_BY_NAME = {metric.name: metric for metric in METRICS}
# Not a metric of its own: the statistic `latency_share_above_p95` is tested with when the reference has the p90
# thresholds (one request's score: TAIL_WEIGHTS over its exceedances of the cell's p90 and p95).
TAIL_SCORE = Metric("latency_tail_score", RegressionType.LATENCY_INCREASE, "mean", "lat_n", "tail_s", "tail_q", True)


def with_tail_score(values: dict[str, NDArray[np.float64]]) -> dict[str, NDArray[np.float64]]:
    """`values` plus the tail score's sums (tail_s, tail_q) from the counts above the p90 and the p95. The p95 is at
    least the p90 in every cell, so a request above the p95 is above the p90 too and S^2 = w90^2 I90 + (w95^2 +
    2 w90 w95) I95."""
    w90, w95 = TAIL_WEIGHTS
    p90, p95 = values["p90_k"], values["p95_k"]
    return {**values, "tail_s": w90 * p90 + w95 * p95, "tail_q": w90 * w90 * p90 + (w95 * w95 + 2 * w90 * w95) * p95}


# Per cell: low-score threshold, latency median, p95 and p90 (the p90 only in references made since the tail score).
THRESHOLD_NAMES = ("low", "p50", "p95", "p90")
# The latency tail score of a request: TAIL_WEIGHTS[0] if above its cell's reference p90, plus TAIL_WEIGHTS[1] if
# above its p95. Its window mean is tested in place of the share above the p95 (see judge_window).
TAIL_WEIGHTS = (0.5, 1.0)
DEFAULT_SCORE_SLOPE = 0.45  # the tail score's DEFAULT_TAIL_SLOPE: 0.5 x (p90's density ratio, about 0.4) + 0.25


def z_threshold(settings: QualitySettings) -> float:
    """The one-sided z every look must exceed so that the union bound over a week's looks is the budget."""
    monitoring = settings.monitoring
    looks = 7 * 86_400 / monitoring.interval_seconds * len(METRICS) * len(monitoring.windows_minutes)
    return float(-special.ndtri(monitoring.false_alarms_per_week / looks))


# --- aggregates --------------------------------------------------------------------------------------------------


@dataclass
class Cells:
    """Aggregates per group: `route` and `hour` (0-23) per row, plus an optional `day` (days since epoch)."""

    route: list[str]
    hour: NDArray[np.int64]
    values: dict[str, NDArray[np.float64]]
    day: NDArray[np.int64] | None = None
    keys: NDArray[np.int64] | None = None  # the caller's group keys, when it chose them

    @property
    def size(self) -> int:
        return len(self.route)

    @staticmethod
    def empty() -> Cells:
        return Cells([], np.zeros(0, dtype=np.int64), {name: np.zeros(0) for name in AGG_FIELDS})


@dataclass(frozen=True)
class Columns:
    """Per-request columns (what quality_metrics holds), for the numpy path."""

    timestamp: NDArray[np.float64]  # epoch seconds
    route: NDArray[Any]  # str per request
    overall: NDArray[np.float64]
    relevance: NDArray[np.float64]  # NaN where missing
    coherence: NDArray[np.float64]
    factuality: NDArray[np.float64]
    toxicity: NDArray[np.float64]
    latency_ms: NDArray[np.float64]
    hallucination: NDArray[np.bool_]

    def take(self, mask: NDArray[np.bool_]) -> Columns:
        return Columns(**{name: getattr(self, name)[mask] for name in self.__dataclass_fields__})


def hour_of(timestamp: NDArray[np.float64]) -> NDArray[np.int64]:
    return ((np.floor(timestamp) % 86_400) // 3_600).astype(np.int64)


def day_of(timestamp: NDArray[np.float64]) -> NDArray[np.int64]:
    return (np.floor(timestamp) // 86_400).astype(np.int64)


def aggregate_numpy(
    columns: Columns,
    thresholds: Thresholds,
    toxic_threshold: float,
    *,
    by_day: bool = False,
    group_keys: NDArray[np.int64] | None = None,
) -> Cells:
    """The aggregates per (route, hour[, day]) of `columns`, as the SQL of monitoring_store computes them (or per
    the caller's `group_keys`, in `keys`, with route and hour left empty)."""
    if columns.timestamp.size == 0:
        return Cells.empty()
    hours = hour_of(columns.timestamp)
    routes = columns.route.astype(str)
    route_names, route_index = np.unique(routes, return_inverse=True)
    key = route_index.astype(np.int64) * 24 + hours
    if by_day:
        days = day_of(columns.timestamp)
        first_day = int(days.min())
        key = key * 100_000 + (days - first_day)
    if group_keys is not None:
        key = group_keys
    unique_keys, group = np.unique(key, return_inverse=True)
    size = unique_keys.size
    low, p50, p95, p90 = thresholds.per_request(routes, hours)

    def total(weights: NDArray[Any] | None = None) -> NDArray[np.float64]:
        return np.bincount(group, weights=weights, minlength=size).astype(float)

    def moments(values: NDArray[np.float64]) -> tuple[NDArray[np.float64], ...]:
        present = np.isfinite(values)
        clean = np.where(present, values, 0.0)
        return total(present.astype(float)), total(clean), total(clean * clean)

    overall = moments(columns.overall)
    rel = moments(columns.relevance)
    coh = moments(columns.coherence)
    fac = moments(columns.factuality)
    tox = moments(columns.toxicity)
    latency_present = np.isfinite(columns.latency_ms)
    latency = np.where(latency_present, columns.latency_ms, -np.inf)
    is_low = columns.overall < low
    toxicity = np.where(np.isfinite(columns.toxicity), columns.toxicity, -np.inf)
    values = {
        "n": total(),
        "ov_n": overall[0],
        "ov_s": overall[1],
        "ov_q": overall[2],
        "rel_n": rel[0],
        "rel_s": rel[1],
        "rel_q": rel[2],
        "coh_n": coh[0],
        "coh_s": coh[1],
        "coh_q": coh[2],
        "fac_n": fac[0],
        "fac_s": fac[1],
        "fac_q": fac[2],
        "tox_n": tox[0],
        "tox_s": tox[1],
        "tox_q": tox[2],
        "hal_k": total(columns.hallucination.astype(float)),
        "toxic_k": total((toxicity >= toxic_threshold).astype(float)),
        "low_k": total(is_low.astype(float)),
        "low_s": total(np.where(is_low, columns.overall, 0.0)),
        "lat_n": total(latency_present.astype(float)),
        "p50_k": total((latency > p50).astype(float)),
        "p95_k": total((latency > p95).astype(float)),
        "p90_k": total((latency > p90).astype(float)),
    }
    if group_keys is not None:
        return Cells([], np.zeros(0, dtype=np.int64), values, keys=unique_keys)
    if by_day:
        cell_key = unique_keys // 100_000
        day = (unique_keys % 100_000).astype(np.int64)
    else:
        cell_key = unique_keys
        day = None
    return Cells(
        route=[str(route_names[k // 24]) for k in cell_key],
        hour=(cell_key % 24).astype(np.int64),
        values=values,
        day=day,
    )


# --- thresholds and the reference ---------------------------------------------------------------------------------


def _num(value: Any) -> float:
    """A number read back from JSON, where NaN was written as null."""
    return math.nan if value is None else float(value)


def _json_num(value: float) -> float | None:
    """A number for JSON (JSONB has no NaN): NaN is written as null."""
    return None if math.isnan(value) else float(value)


Quad = tuple[float, float, float, float]


def _quad(values: Sequence[float | None]) -> Quad:
    """(low, p50, p95, p90) read back from JSON; a reference made before the tail score has no p90 (NaN)."""
    padded = [_num(v) for v in values] + [math.nan] * (len(THRESHOLD_NAMES) - len(values))
    return (padded[0], padded[1], padded[2], padded[3])


@dataclass
class Thresholds:
    """Per (route, hour): the low-score threshold and the latency median, p95 and p90 (THRESHOLD_NAMES); per route:
    pooled values."""

    cells: dict[tuple[str, int], Quad]
    routes: dict[str, Quad]

    def lookup(self, route: str, hour: int) -> Quad:
        found = self.cells.get((route, hour)) or self.routes.get(route)
        return found if found is not None else (math.nan, math.nan, math.nan, math.nan)

    @property
    def has_p90(self) -> bool:
        """Whether the tail score can be computed (references made before it lack the p90)."""
        return any(math.isfinite(values[3]) for values in self.routes.values())

    def per_request(
        self, routes: NDArray[Any], hours: NDArray[np.int64]
    ) -> tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.float64], NDArray[np.float64]]:
        out = np.full((routes.size, len(THRESHOLD_NAMES)), np.nan)
        names, route_index = np.unique(routes.astype(str), return_inverse=True)
        keys = route_index.astype(np.int64) * 24 + hours
        unique, inverse = np.unique(keys, return_inverse=True)
        for index, key in enumerate(unique):
            out[inverse == index] = self.lookup(str(names[key // 24]), int(key % 24))
        # NaN thresholds: no comparison holds (as NULL in SQL).
        return out[:, 0], out[:, 1], out[:, 2], out[:, 3]

    def table(self) -> list[tuple[str, int, float, float, float, float]]:
        """(route, hour, low, p50, p95, p90) for every hour of every known route (pooled values where no cell)."""
        rows = []
        for route in sorted(self.routes):
            for hour in range(24):
                low, p50, p95, p90 = self.lookup(route, hour)
                rows.append((route, hour, low, p50, p95, p90))
        return rows

    def to_json(self) -> dict[str, Any]:
        return {
            "cells": [[route, hour, *map(_json_num, values)] for (route, hour), values in sorted(self.cells.items())],
            "routes": {route: [_json_num(v) for v in values] for route, values in sorted(self.routes.items())},
        }

    @staticmethod
    def from_json(data: dict[str, Any]) -> Thresholds:
        return Thresholds(
            cells={(row[0], int(row[1])): _quad(row[2:]) for row in data["cells"]},
            routes={route: _quad(values) for route, values in data["routes"].items()},
        )


def thresholds_numpy(columns: Columns, low_quantile: float) -> Thresholds:
    """Quantiles per (route, hour) and per route (linear interpolation, as PostgreSQL's percentile_cont)."""
    routes = columns.route.astype(str)
    hours = hour_of(columns.timestamp)
    cells: dict[tuple[str, int], Quad] = {}
    pooled: dict[str, Quad] = {}

    def quantiles(mask: NDArray[np.bool_]) -> Quad:
        latency = columns.latency_ms[mask]
        latency = latency[np.isfinite(latency)]
        low = float(np.quantile(columns.overall[mask], low_quantile))
        if latency.size == 0:
            return low, math.nan, math.nan, math.nan
        p50, p95, p90 = (float(value) for value in np.quantile(latency, [0.5, 0.95, 0.9]))
        return low, p50, p95, p90

    for route in np.unique(routes):
        in_route = routes == route
        pooled[str(route)] = quantiles(in_route)
        for hour in np.unique(hours[in_route]):
            mask = in_route & (hours == hour)
            if int(mask.sum()) >= MIN_CELL:
                cells[(str(route), int(hour))] = quantiles(mask)
    return Thresholds(cells, pooled)


@dataclass
class Reference:
    """What a baseline knows for monitoring: per cell and metric (n, mean, per-request variance), per-route pooled
    values with their between-hour variance, the between-day variance tau^2 per metric, and the thresholds."""

    cells: dict[tuple[str, int], dict[str, tuple[float, float, float]]]
    routes: dict[str, dict[str, tuple[float, float, float, float]]]  # n, mean, var, between-hour variance
    tau2: dict[str, float]
    thresholds: Thresholds
    days: int
    records: int
    start: str | None = None
    end: str | None = None
    tail_slope: float = DEFAULT_TAIL_SLOPE  # the p95 statistic subtracts this times the median share's excess
    load_slope: float = 0.0  # the median share's expected value moves by this x log(volume / usual volume)
    tail_load_slope: float = 0.0  # the p95 share's, likewise
    hour_volume: list[float] = field(default_factory=lambda: [0.0] * 24)  # usual records per hour of day
    # The tail score's tail_slope and load slope; None: a reference made before the tail score (its p95 share is
    # then tested on its own, as it was).
    score_slope: float | None = None
    score_load_slope: float = 0.0
    # (t_SS, t_SM, t_MM): day-to-day covariances of the tail score's and the median share's load-adjusted
    # residuals; None before 3 days (the prior then stands in, with b = score_slope).
    score_covariance: tuple[float, float, float] | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "cells": [
                [route, hour, {m: list(v) for m, v in metrics.items()}]
                for (route, hour), metrics in sorted(self.cells.items())
            ],
            "routes": {route: {m: list(v) for m, v in metrics.items()} for route, metrics in self.routes.items()},
            "tau2": self.tau2,
            "thresholds": self.thresholds.to_json(),
            "days": self.days,
            "records": self.records,
            "start": self.start,
            "end": self.end,
            "tail_slope": self.tail_slope,
            "load_slope": self.load_slope,
            "tail_load_slope": self.tail_load_slope,
            "hour_volume": self.hour_volume,
            "score_slope": self.score_slope,
            "score_load_slope": self.score_load_slope,
            "score_covariance": list(self.score_covariance) if self.score_covariance is not None else None,
        }

    @staticmethod
    def from_json(data: dict[str, Any]) -> Reference:
        return Reference(
            cells={
                (row[0], int(row[1])): {m: (_num(v[0]), _num(v[1]), _num(v[2])) for m, v in row[2].items()}
                for row in data["cells"]
            },
            routes={
                route: {m: (_num(v[0]), _num(v[1]), _num(v[2]), _num(v[3])) for m, v in metrics.items()}
                for route, metrics in data["routes"].items()
            },
            tau2={name: _num(value) for name, value in data["tau2"].items()},
            thresholds=Thresholds.from_json(data["thresholds"]),
            days=int(data["days"]),
            records=int(data["records"]),
            start=data.get("start"),
            end=data.get("end"),
            tail_slope=float(data.get("tail_slope", DEFAULT_TAIL_SLOPE)),
            load_slope=float(data.get("load_slope", 0.0)),
            tail_load_slope=float(data.get("tail_load_slope", 0.0)),
            hour_volume=[float(v) for v in data.get("hour_volume", [0.0] * 24)],
            score_slope=None if data.get("score_slope") is None else float(data["score_slope"]),
            score_load_slope=float(data.get("score_load_slope", 0.0)),
            score_covariance=_covariance(data.get("score_covariance")),
        )


def _covariance(value: Any) -> tuple[float, float, float] | None:
    if value is None:
        return None
    return (float(value[0]), float(value[1]), float(value[2]))


def _cell_stats(metric: Metric, values: dict[str, NDArray[np.float64]]) -> tuple[NDArray[np.float64], ...]:
    """n, mean and per-request variance of `metric` for each row of aggregated values."""
    n = values[metric.n_field]
    s = values[metric.sum_field]
    with np.errstate(divide="ignore", invalid="ignore"):
        if metric.kind == "share":
            # Jeffreys' estimate: a cell that saw no event still has a small, non-zero rate and variance.
            mean = np.where(n > 0, (s + 0.5) / (n + 1), np.nan)
            var = mean * (1 - mean)
        else:
            assert metric.sq_field is not None
            mean = np.where(n > 0, s / n, np.nan)
            var = np.where(n > 1, (values[metric.sq_field] - s * s / np.maximum(n, 1)) / np.maximum(n - 1, 1), np.nan)
    return n, mean, np.maximum(var, 0.0)


def build_reference(day_cells: Cells, thresholds: Thresholds, *, start: str | None, end: str | None) -> Reference:
    """The reference from aggregates per (route, hour, day) computed with `thresholds`."""
    assert day_cells.day is not None
    cells: dict[tuple[str, int], dict[str, tuple[float, float, float]]] = {}
    routes: dict[str, dict[str, tuple[float, float, float, float]]] = {}
    cell_keys = sorted({(route, int(hour)) for route, hour in zip(day_cells.route, day_cells.hour, strict=True)})
    index_of = {key: i for i, key in enumerate(cell_keys)}
    row_cell = np.array([index_of[(r, int(h))] for r, h in zip(day_cells.route, day_cells.hour, strict=True)])
    summed: dict[str, NDArray[np.float64]] = {
        name: np.bincount(row_cell, weights=values, minlength=len(cell_keys)).astype(float)
        for name, values in day_cells.values.items()
    }
    route_names = sorted({route for route, _ in cell_keys})
    tau2: dict[str, float] = {}
    days = int(np.unique(day_cells.day).size)
    kept: dict[str, tuple[NDArray[np.float64], NDArray[np.float64]]] = {}
    scored = thresholds.has_p90 and "p90_k" in summed
    if scored:
        summed = with_tail_score(summed)
        day_cells = Cells(day_cells.route, day_cells.hour, with_tail_score(day_cells.values), day=day_cells.day)
    for metric in (*METRICS, TAIL_SCORE) if scored else METRICS:
        n, mean, var = _cell_stats(metric, summed)
        var = np.nan_to_num(var, nan=0.0)  # a cell of one record has no variance estimate
        kept[metric.name] = (mean, var)
        for i, key in enumerate(cell_keys):
            if n[i] >= MIN_CELL and np.isfinite(mean[i]):
                cells.setdefault(key, {})[metric.name] = (float(n[i]), float(mean[i]), float(var[i]))
        for route in route_names:
            members = [i for i, key in enumerate(cell_keys) if key[0] == route and n[i] > 0 and np.isfinite(mean[i])]
            if not members:
                continue
            total_n = float(n[members].sum())
            pooled_mean = float((mean[members] * n[members]).sum() / total_n)
            pooled_var = float(((var[members] + (mean[members] - pooled_mean) ** 2) * n[members]).sum() / total_n)
            between = float(((mean[members] - pooled_mean) ** 2 * n[members]).sum() / total_n)
            routes.setdefault(route, {})[metric.name] = (total_n, pooled_mean, pooled_var, between)
        level = float(np.nansum(mean * n) / max(float(n.sum()), 1.0))
        prior = prior_tau(metric, level) ** 2
        # Residuals around a mean of k days shrink a day effect's variance by (k - 1) / k: undone here. Fewer than 3
        # days say little about day-to-day variation: the prior stands in; with more, the estimate rules, never
        # below half the prior's standard deviation.
        if days >= 3:
            estimated = _between_day_variance(metric, day_cells, row_cell, mean, var) * days / (days - 1)
            # The median share moves with load from day to day: its prior is a floor, not a starting point.
            tau2[metric.name] = max(estimated, prior if metric.name == "latency_share_above_p50" else prior / 4)
        else:
            tau2[metric.name] = prior
    median, tail = METRIC_BY_NAME["latency_share_above_p50"], METRIC_BY_NAME["latency_share_above_p95"]
    load_slope, hour_volume, r50, s50, ok50 = _load_adjustment(median, day_cells, row_cell, kept[median.name], days)
    tail_load_slope, _, r95, s95, ok95 = _load_adjustment(tail, day_cells, row_cell, kept[tail.name], days)
    if days >= 3 and ok50.sum() >= 2:
        left = max(0.0, float(np.mean(r50[ok50] ** 2 - s50[ok50]))) * days / (days - 1)
        tau2[median.name] = max(left, prior_tau(median, 0.5) ** 2)
    tail_slope = DEFAULT_TAIL_SLOPE
    median_level = float(np.nansum(kept[median.name][0] * summed["lat_n"]) / max(float(summed["lat_n"].sum()), 1.0))
    if "latency_share_above_p95" in tau2:
        level = float(
            np.nansum(kept["latency_share_above_p95"][0] * summed["lat_n"]) / max(float(summed["lat_n"].sum()), 1.0)
        )
        tail_slope, tail_tau2 = _tail_adjustment(
            (r50, s50, ok50), (r95, s95, ok95), days, cross_ratio=level / max(median_level, 1e-9)
        )
        prior_tail = prior_tau(METRIC_BY_NAME["latency_share_above_p95"], level) ** 2
        tau2["latency_share_above_p95"] = max(tail_tau2, prior_tail / 4) if days >= 3 else prior_tail
    score_slope: float | None = None
    score_load_slope = 0.0
    score_covariance: tuple[float, float, float] | None = None
    if scored:
        score_load_slope, _, r_s, s_s, ok_s = _load_adjustment(
            TAIL_SCORE, day_cells, row_cell, kept[TAIL_SCORE.name], days
        )
        level = float(np.nansum(kept[TAIL_SCORE.name][0] * summed["lat_n"]) / max(float(summed["lat_n"].sum()), 1.0))
        score_slope, _ = _tail_adjustment(
            (r50, s50, ok50),
            (r_s, s_s, ok_s),
            days,
            default=DEFAULT_SCORE_SLOPE,
            cross_ratio=level / max(median_level, 1e-9),
        )
        prior_score = prior_tau(TAIL_SCORE, level) ** 2
        # The judge chooses the score's b per window from the day-to-day covariances; tau2 is the floor of its
        # day-to-day variance (the prior before 3 days, when there are no covariances).
        tau2[TAIL_SCORE.name] = prior_score / 4 if days >= 3 else prior_score
        if days >= 3 and ok50.sum() >= 2:
            score_covariance = _day_covariances(
                (r50, s50, ok50), (r_s, s_s), days, cross_ratio=level / max(median_level, 1e-9)
            )
    return Reference(
        cells=cells,
        routes=routes,
        tau2=tau2,
        thresholds=thresholds,
        days=days,
        records=int(day_cells.values["n"].sum()),
        start=start,
        end=end,
        tail_slope=tail_slope,
        load_slope=load_slope,
        tail_load_slope=tail_load_slope,
        hour_volume=hour_volume,
        score_slope=score_slope,
        score_load_slope=score_load_slope,
        score_covariance=score_covariance,
    )


def prior_tau(metric: Metric, level: float) -> float:
    """The day-to-day variation assumed where the reference cannot measure it (fewer than 3 days), and half of
    which it never goes below: 1 % of a score's level; 10 % of a share's (at least 0.1 points; for the share above
    the p95 latency, of its load-adjusted statistic); 4 points for the share above the median latency (latency
    moves with load from day to day)."""
    if metric.name == "latency_share_above_p50":
        return 0.04
    if metric.kind == "share" or metric is TAIL_SCORE:
        return max(0.1 * level, 0.001)
    return 0.01 * max(level, 0.01)


def _block_residuals(
    metric: Metric,
    day_cells: Cells,
    row_cell: NDArray[np.int64],
    cell_mean: NDArray[np.float64],
    cell_var: NDArray[np.float64],
) -> tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.float64], NDArray[np.bool_], NDArray[np.int64]]:
    """Per (day, hour) block: the mean residual around the reference, its sampling variance, n, usability, and the
    block's key (day * 24 + hour)."""
    assert day_cells.day is not None
    n = day_cells.values[metric.n_field]
    s = day_cells.values[metric.sum_field]
    mu = cell_mean[row_cell]
    ok = (n > 0) & np.isfinite(mu)
    block = day_cells.day * 24 + day_cells.hour
    blocks, block_index = np.unique(block[ok], return_inverse=True)
    block_n = np.bincount(block_index, weights=n[ok]).astype(float)
    residual = np.bincount(block_index, weights=(s - n * mu)[ok]) / np.maximum(block_n, 1)
    sampling = np.bincount(block_index, weights=(n * cell_var[row_cell])[ok]) / np.maximum(block_n, 1) ** 2
    return residual, sampling, block_n, block_n >= MIN_CELL, blocks


def _between_day_variance(
    metric: Metric,
    day_cells: Cells,
    row_cell: NDArray[np.int64],
    cell_mean: NDArray[np.float64],
    cell_var: NDArray[np.float64],
) -> float:
    """tau^2: the variance of (day, hour) means around the reference beyond what sampling explains."""
    residual, sampling, _, usable, _ = _block_residuals(metric, day_cells, row_cell, cell_mean, cell_var)
    if usable.sum() < 2:
        return 0.0
    return max(0.0, float(np.mean(residual[usable] ** 2 - sampling[usable])))


def _load_adjustment(
    metric: Metric,
    day_cells: Cells,
    row_cell: NDArray[np.int64],
    stats: tuple[NDArray[np.float64], NDArray[np.float64]],
    days: int,
) -> tuple[float, list[float], NDArray[np.float64], NDArray[np.float64], NDArray[np.bool_]]:
    """(beta, volume per hour of day, load-adjusted block residuals, their sampling variance, usability) of a
    latency share.

    Latency rises with load: on a busier day than usual every hour is slower. The reference measures its volume per
    hour of day, and beta, the slope of the share's (day, hour) residuals on the log of that block's volume over its
    hour's usual volume; a window's expected share then moves by beta x log(its volume / the usual volume of its
    hours). Before 3 days, beta is 0."""
    residual, sampling, block_n, usable, blocks = _block_residuals(metric, day_cells, row_cell, *stats)
    hours = (blocks % 24).astype(np.int64)
    totals = np.bincount(hours, weights=block_n, minlength=24)
    counts = np.bincount(hours, minlength=24)
    hour_volume = np.where(counts > 0, totals / np.maximum(counts, 1), 0.0)
    volumes = [float(v) for v in hour_volume]
    if days < 3 or usable.sum() < 2:
        return 0.0, volumes, residual, sampling, usable
    x = np.log(np.maximum(block_n, 1.0) / np.maximum(hour_volume[hours], 1.0))
    denominator = float(np.sum(x[usable] ** 2))
    beta = float(np.sum(x[usable] * residual[usable])) / denominator if denominator > 0 else 0.0
    beta = min(max(beta, 0.0), 1.0)
    return beta, volumes, residual - beta * x, sampling, usable


def _tail_adjustment(
    adjusted50: tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.bool_]],
    adjusted95: tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.bool_]],
    days: int,
    default: float = DEFAULT_TAIL_SLOPE,
    cross_ratio: float = 0.0,
) -> tuple[float, float]:
    """(b, tau^2) of the tail statistic: the p95 share's excess minus b times the median share's excess (both net
    of load).

    Day-to-day conditions move the whole latency distribution, so both shares rise together; a change of the tail
    alone moves only the first. b is the slope of the p95 share's day residuals on the median share's
    (`default` before 3 days, at most twice the default), and tau^2 the day-to-day variance left after the
    adjustment. The same for the tail score, whose excess moves with the median share's too.

    A block's two residuals share its requests: every request above the tail's thresholds is above the median, so
    their sampling covariance is mu_tail (1 - mu_median) / n, `cross_ratio` (mu_tail / mu_median) times the median
    residual's sampling variance. Left in, it biases the slope up wherever the days differ little (the slope then
    fits sampling noise, up to twice the default where the days differ little); it is taken out of the slope and
    of tau^2."""
    r50, s50, usable = adjusted50
    r95, s95, _ = adjusted95
    if days < 3 or usable.sum() < 2:
        return default, 0.0
    x, y = r50[usable], r95[usable]
    cross = cross_ratio * s50[usable]
    denominator = float(np.sum(x * x - s50[usable]))
    slope = float(np.sum(x * y - cross)) / denominator if denominator > 0 else default
    slope = min(max(slope, 0.0), 2 * default)
    adjusted = y - slope * x
    sampling = s95[usable] + slope**2 * s50[usable] - 2 * slope * cross
    return slope, max(0.0, float(np.mean(adjusted**2 - sampling))) * days / (days - 1)


def _day_covariances(
    adjusted50: tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.bool_]],
    adjusted_score: tuple[NDArray[np.float64], NDArray[np.float64]],
    days: int,
    cross_ratio: float,
) -> tuple[float, float, float]:
    """(t_SS, t_SM, t_MM): the day-to-day variances and covariance of the tail score's and the median share's
    load-adjusted (day, hour) residuals beyond their sampling (co)variances, corrected for the k days' mean as
    tau^2 is. t_MM is at least 0; t_SS may come out below 0 (the judge's floor then rules)."""
    r50, s50, usable = adjusted50
    r_s, s_s = adjusted_score
    x, y = r50[usable], r_s[usable]
    scale = days / (days - 1)
    t_mm = max(0.0, float(np.mean(x * x - s50[usable]))) * scale
    t_sm = float(np.mean(x * y - cross_ratio * s50[usable])) * scale
    t_ss = float(np.mean(y * y - s_s[usable])) * scale
    return t_ss, t_sm, t_mm


# --- judging a pass -----------------------------------------------------------------------------------------------


@dataclass
class MetricVerdict:
    """One metric's verdict in one pass: the window with the strongest evidence, its figures, and the decision."""

    metric: str
    regression_type: RegressionType
    verdict: str  # "regression", "pass" or "insufficient_data"
    window_minutes: int | None = None
    n: int = 0
    observed: float | None = None  # the window's mean or share
    expected: float | None = None  # the reference's value for the window's mix of routes and hours
    effect: float | None = None  # observed - expected, signed so that positive is worse
    z: float | None = None
    z_threshold: float | None = None
    ci95: tuple[float, float] | None = None  # of the effect
    floors: dict[str, float] = field(default_factory=dict)
    exceeds_floors: bool = False
    harm: float | None = None
    severity: RegressionSeverity | None = None
    window_start: datetime | None = None
    window_end: datetime | None = None
    test: str | None = None  # the statistic z comes from, when not the metric's own (the latency tail score)

    def evidence(self) -> dict[str, Any]:
        return {
            "method": "stratified hour-matched reference; union-bound z threshold over a week's looks",
            "window_minutes": self.window_minutes,
            "window_start": self.window_start.isoformat() if self.window_start else None,
            "window_end": self.window_end.isoformat() if self.window_end else None,
            "n": self.n,
            "observed": self.observed,
            "expected": self.expected,
            "effect": self.effect,
            "z": self.z,
            "z_threshold": self.z_threshold,
            "ci95": list(self.ci95) if self.ci95 else None,
            "floors": self.floors,
            "harm": self.harm,
            **({"test": self.test} if self.test else {}),
        }


def _floors(metric: Metric, settings: QualitySettings) -> tuple[float, float]:
    """(absolute floor on the effect, relative floor: effect / expected, or a ratio - 1)."""
    floors = settings.floors
    if metric.kind == "mean" and not metric.higher_is_worse:
        return floors.quality_drop_abs, floors.quality_drop_rel
    return {
        "toxicity_mean": (floors.toxicity_increase_abs, floors.toxicity_ratio - 1),
        "hallucination_rate": (floors.hallucination_increase_points, floors.hallucination_ratio - 1),
        "toxic_share": (floors.toxic_share_points, floors.toxic_share_ratio - 1),
        "low_score_share": (floors.low_score_share_points, floors.low_score_share_ratio - 1),
        "latency_share_above_p50": (floors.latency_p50_share_points, 0.0),
        "latency_share_above_p95": (floors.latency_p95_share_points, floors.latency_p95_share_ratio - 1),
    }[metric.name]


@dataclass
class _Compiled:
    """A reference as dense arrays over (row: the METRICS in order, then the tail score; route; hour 0-23 or 24 =
    the route's pooled values)."""

    route_index: dict[str, int]
    mean: NDArray[np.float64]
    var: NDArray[np.float64]
    big_n: NDArray[np.float64]
    extra: NDArray[np.float64]
    tau2: NDArray[np.float64]


_ROWS = (*METRICS, TAIL_SCORE)


def _compile(reference: Reference) -> _Compiled:
    cached: _Compiled | None = getattr(reference, "_compiled", None)
    if cached is not None:
        return cached
    names = sorted({route for route, _ in reference.cells} | set(reference.routes))
    route_index = {name: i for i, name in enumerate(names)}
    shape = (len(_ROWS), len(names), 25)
    mean, var, big_n, extra = (np.full(shape, np.nan), np.zeros(shape), np.zeros(shape), np.zeros(shape))
    for m, metric in enumerate(_ROWS):
        for route, pooled in reference.routes.items():
            values = pooled.get(metric.name)
            if values is not None:
                r = route_index[route]
                big_n[m, r, :], mean[m, r, :], var[m, r, :], extra[m, r, :] = values
        for (route, hour), metrics in reference.cells.items():
            values3 = metrics.get(metric.name)
            if values3 is not None:
                r = route_index[route]
                big_n[m, r, hour], mean[m, r, hour], var[m, r, hour] = values3
                extra[m, r, hour] = 0.0
    tau2 = np.array([reference.tau2.get(metric.name, 0.0) for metric in _ROWS])
    compiled = _Compiled(route_index, mean, var, big_n, extra, tau2)
    reference._compiled = compiled  # type: ignore[attr-defined]
    return compiled


def _poisson_z(observed: float, mean: float) -> float:
    """z of the exact one-sided Poisson tail P(X >= observed | mean)."""
    k = round(observed)
    if k <= 0:
        return -math.inf
    p = float(special.pdtrc(k - 1, max(mean, 1e-12)))  # P(X > k - 1)
    return math.inf if p <= 0 else float(-special.ndtri(p))


_N_FIELDS = [metric.n_field for metric in _ROWS]
_SUM_FIELDS = [metric.sum_field for metric in _ROWS]
_MEDIAN = next(i for i, metric in enumerate(METRICS) if metric.name == "latency_share_above_p50")
_TAIL = next(i for i, metric in enumerate(METRICS) if metric.name == "latency_share_above_p95")
_SCORE = len(METRICS)
TAIL_TEST = "tail score: 0.5 x (share above the cell's p90) + (share above its p95), net of the median share"


def judge_window(
    reference: Reference,
    cells: Cells,
    settings: QualitySettings,
    window_minutes: int,
    z_star: float,
    now: datetime | None = None,
) -> list[MetricVerdict]:
    """Every metric's verdict on one window's cells (the window [now - window_minutes, now)).

    Per metric: O = the window's total, E = sum over cells of n_c x mu_ref(cell) (plus the load adjustment of the
    latency shares), Var = sum n_c var_c + sum over estimates of (its n)^2 var / N + (its n)^2 between-hour
    variance + n^2 tau^2; all metrics at once as arrays (row x cell), the tail score as one more row.

    `latency_share_above_p95` reports the share above the p95 (observed, expected, its excess net of the median
    share's for the floors and the harm), but with a reference that has the p90 thresholds its z is the tail score's:
    a tail stretched above the median moves the share above the p90 as well as the one above the p95, and both
    together are evidence a single quantile's share does not have (docs/quality.md)."""
    compiled = _compile(reference)
    route_ids = np.array([compiled.route_index.get(route, -1) for route in cells.route], dtype=np.int64)
    known = route_ids >= 0
    rows = route_ids[known]
    hours = cells.hour[known]
    values = with_tail_score(cells.values)
    n_c = np.array([values[name][known] for name in _N_FIELDS]).reshape(len(_ROWS), rows.size)
    s_c = np.array([values[name][known] for name in _SUM_FIELDS]).reshape(len(_ROWS), rows.size)
    mu = compiled.mean[:, rows, hours]
    var = compiled.var[:, rows, hours]
    big_n = compiled.big_n[:, rows, hours]
    extra = compiled.extra[:, rows, hours]
    usable = (n_c > 0) & np.isfinite(mu)
    # The tail statistics: the p95 share's (or tail score's) excess minus b times the median share's excess (see
    # _tail_adjustment), so that load moving the whole distribution is not a tail regression. Every request above
    # the p90 or the p95 is above the median, so Cov(tail, above median) = mu_tail (1 - mu_median) per request.
    tail_usable = usable[_TAIL] & np.isfinite(mu[_MEDIAN])
    raw_o = float(s_c[_TAIL][tail_usable].sum())
    raw_e = float((n_c[_TAIL] * mu[_TAIL])[tail_usable].sum())
    b = reference.tail_slope
    usable[_TAIL] &= np.isfinite(mu[_MEDIAN])
    var[_TAIL] = var[_TAIL] + b * b * var[_MEDIAN] - 2 * b * mu[_TAIL] * (1 - mu[_MEDIAN])
    extra[_TAIL] = extra[_TAIL] + b * b * extra[_MEDIAN]
    s_c[_TAIL] = s_c[_TAIL] - b * s_c[_MEDIAN]
    mu[_TAIL] = mu[_TAIL] - b * mu[_MEDIAN]
    # The tail score stays raw (b = 0) in its row; one more row holds its per-request covariance with the share
    # above the median, and its b is chosen per window below.
    scored = reference.score_slope is not None
    usable[_SCORE] &= np.isfinite(mu[_MEDIAN]) & scored
    pooled = np.vstack([extra > 0, (extra > 0)[_SCORE][None, :]])
    n_c = np.vstack([n_c, n_c[_SCORE][None, :]])
    s_c = np.vstack([s_c, np.zeros((1, rows.size))])
    var = np.vstack([var, (mu[_SCORE] * (1 - mu[_MEDIAN]))[None, :]])
    mu = np.vstack([mu, mu[_SCORE][None, :]])
    big_n = np.vstack([big_n, big_n[_SCORE][None, :]])
    extra = np.vstack([extra, np.zeros((1, rows.size))])
    usable = np.vstack([usable, usable[_SCORE][None, :]])
    count_rows = len(_ROWS) + 1
    n_u = np.where(usable, n_c, 0.0)
    n = n_u.sum(axis=1)
    o_all = np.where(usable, s_c, 0.0).sum(axis=1)
    e_all = np.where(usable, n_c * mu, 0.0).sum(axis=1)
    v_cur_all = np.where(usable, n_c * var, 0.0).sum(axis=1)
    # Cells judged against the same estimate (a route's pooled values) share its error: group them.
    metric_of = np.broadcast_to(np.arange(count_rows)[:, None], usable.shape)
    estimate = (metric_of * max(len(compiled.route_index), 1) + rows[None, :]) * 25 + np.where(
        pooled, 24, hours[None, :]
    )
    keys, group = np.unique(estimate[usable], return_inverse=True)
    group_n = np.bincount(group, weights=n_c[usable], minlength=keys.size)
    member = np.zeros(keys.size, dtype=np.int64)
    member[group] = np.arange(group.size)
    group_metric = metric_of[usable][member]
    v_ref_all = np.bincount(
        group_metric,
        weights=group_n**2 * var[usable][member] / np.maximum(big_n[usable][member], 1.0),
        minlength=count_rows,
    )
    v_hour_all = np.bincount(group_metric, weights=group_n**2 * extra[usable][member], minlength=count_rows)
    v_between_all = v_hour_all[: len(_ROWS)] + n[: len(_ROWS)] ** 2 * compiled.tau2
    log_load = _log_load(reference, cells, window_minutes, now)
    load_terms = {
        _MEDIAN: reference.load_slope,
        _TAIL: reference.tail_load_slope - reference.tail_slope * reference.load_slope,
    }

    def z_of(row: int) -> tuple[float, float, float]:
        """(excess, variance, z) of a row: positive excess is worse."""
        count = float(n[row])
        e = float(e_all[row]) + count * load_terms.get(row, 0.0) * log_load
        variance = float(v_cur_all[row] + v_ref_all[row] + v_between_all[row])
        sign = 1.0 if _ROWS[row].higher_is_worse else -1.0
        excess = sign * (float(o_all[row]) - e)
        z = excess / math.sqrt(variance) if variance > 0 else (math.inf if excess > 0 else 0.0)
        return excess, variance, z

    verdicts = []
    for m, metric in enumerate(METRICS):
        count = float(n[m])
        if count < settings.min_samples:
            verdicts.append(
                MetricVerdict(metric.name, metric.regression_type, "insufficient_data", window_minutes, int(count))
            )
            continue
        tail = m == _TAIL
        excess, variance, z = z_of(m)
        o = float(o_all[m])
        e = o - excess if metric.higher_is_worse else o + excess
        expected = e / count
        if metric.kind == "share" and e < POISSON_BELOW and not tail:
            # Rare events: an exact Poisson tail at the expected count raised by 3 standard errors of the
            # reference's own estimate and of its day-to-day variation.
            z = min(z, _poisson_z(o, e + 3 * math.sqrt(float(v_ref_all[m] + v_between_all[m]))))
        test = None
        if tail:
            expected = raw_e / count
            o = raw_o
            if scored and float(n[_SCORE]) >= settings.min_samples:
                z = _score_z(reference, n, o_all, e_all, v_cur_all + v_ref_all + v_hour_all, log_load)
                test = TAIL_TEST
        effect = excess / count
        absolute, relative = _floors(metric, settings)
        relative_effect = effect / abs(expected) if expected else math.inf
        exceeds = effect >= absolute and relative_effect >= relative
        half = 1.96 * math.sqrt(variance) / count
        verdict = MetricVerdict(
            metric=metric.name,
            regression_type=metric.regression_type,
            verdict="regression" if (z >= z_star and exceeds) else "pass",
            window_minutes=window_minutes,
            n=int(count),
            observed=o / count,
            expected=expected,
            effect=effect,
            z=max(-1e9, min(1e9, z)),
            z_threshold=z_star,
            ci95=(effect - half, effect + half),
            floors={"absolute": absolute, "relative": relative},
            exceeds_floors=exceeds,
            test=test,
        )
        if verdict.verdict == "regression":
            verdict.harm = float(harm(metric, verdict, cells, settings))
            verdict.severity = severity_of(verdict.harm, settings)
        verdicts.append(verdict)
    return verdicts


def _score_z(
    reference: Reference,
    n: NDArray[np.float64],
    o_all: NDArray[np.float64],
    e_all: NDArray[np.float64],
    v_within: NDArray[np.float64],
    log_load: float,
) -> float:
    """z of the tail score's excess minus b times the median share's, with b chosen for this window.

    The variance of S - b M (S: the tail score's excess, M: the median share's, both net of load) is a quadratic in
    b: the window's sampling and the reference's estimate, V_S - 2 b C + b^2 V_M (C from the extra covariance row),
    plus the day-to-day part n^2 (t_SS - 2 b t_SM + b^2 t_MM), the covariances the reference measured between its
    own days. The b that minimises it is (C + n^2 t_SM) / (V_M + n^2 t_MM): the reference's day-to-day slope in
    long or busy windows, where days differ more than samples do, and about mu_S / mu_50 (0.2: the sampling
    covariance over the median share's variance) in short quiet ones, where subtracting the median share's noise
    would cost more than it saves. b depends only on
    the window's size and the reference, never on its outcome, so the variance stays that of the statistic tested.
    The day-to-day part never goes below tau2[latency_tail_score] (a quarter of the prior)."""
    count = float(n[_SCORE])
    cross = len(_ROWS)
    x_s = float(o_all[_SCORE] - e_all[_SCORE]) - count * reference.score_load_slope * log_load
    x_m = float(o_all[_MEDIAN] - e_all[_MEDIAN]) - float(n[_MEDIAN]) * reference.load_slope * log_load
    floor = reference.tau2.get(TAIL_SCORE.name, 0.0)
    cap = 2 * DEFAULT_SCORE_SLOPE
    if reference.score_covariance is None:
        b = float(reference.score_slope or DEFAULT_SCORE_SLOPE)
        t_ss, t_sm, t_mm = floor, 0.0, 0.0
    else:
        t_ss, t_sm, t_mm = reference.score_covariance
        big = count * count
        denominator = float(v_within[_MEDIAN]) + big * t_mm
        b = (float(v_within[cross]) + big * t_sm) / denominator if denominator > 0 else DEFAULT_SCORE_SLOPE
        b = min(max(b, 0.0), cap)
    day = max(t_ss - 2 * b * t_sm + b * b * t_mm, floor)
    variance = float(v_within[_SCORE] - 2 * b * v_within[cross] + b * b * v_within[_MEDIAN]) + count * count * day
    excess = x_s - b * x_m
    if variance <= 0:
        return math.inf if excess > 0 else 0.0
    return excess / math.sqrt(variance)


def _log_load(reference: Reference, cells: Cells, window_minutes: int, now: datetime | None) -> float:
    """log(the window's volume / the usual volume of its hours), 0 when unknown."""
    if now is None or (reference.load_slope == 0.0 and reference.tail_load_slope == 0.0):
        return 0.0
    expected = 0.0
    moment = now - timedelta(minutes=window_minutes)
    while moment < now:
        hour_end = moment.replace(minute=0, second=0, microsecond=0) + timedelta(hours=1)
        segment_end = min(hour_end, now)
        expected += reference.hour_volume[moment.astimezone(UTC).hour] * (segment_end - moment).total_seconds() / 3600
        moment = segment_end
    observed = float(cells.values["lat_n"].sum())
    if expected <= 0 or observed <= 0:
        return 0.0
    return math.log(observed / expected)


def harm(metric: Metric, verdict: MetricVerdict, cells: Cells, settings: QualitySettings) -> float:
    """Share of requests affected x size of their loss, in per cent of request quality."""
    assert verdict.effect is not None
    assert verdict.expected is not None
    effect = verdict.effect
    if metric.kind == "mean" and not metric.higher_is_worse:
        return 100.0 * effect / max(verdict.expected, 1e-9)  # every request, by the relative loss
    if metric.name == "toxicity_mean":
        return 100.0 * effect
    if metric.name == "low_score_share":
        low_k, low_s = float(cells.values["low_k"].sum()), float(cells.values["low_s"].sum())
        n, total = float(cells.values["ov_n"].sum()), float(cells.values["ov_s"].sum())
        mean_all = total / n if n else 1.0
        low_mean = low_s / low_k if low_k else 0.0
        loss = max(0.0, (mean_all - low_mean) / max(mean_all, 1e-9))
        return 100.0 * effect * loss
    if metric.regression_type is RegressionType.LATENCY_INCREASE:
        return 100.0 * effect * settings.monitoring.latency_harm_weight
    return 100.0 * effect  # hallucinated or toxic answers: each one lost


def severity_of(harm_value: float, settings: QualitySettings) -> RegressionSeverity:
    medium, high, critical = settings.monitoring.harm_steps
    if harm_value >= critical:
        return RegressionSeverity.CRITICAL
    if harm_value >= high:
        return RegressionSeverity.HIGH
    if harm_value >= medium:
        return RegressionSeverity.MEDIUM
    return RegressionSeverity.LOW


def judge_pass(
    reference: Reference,
    windows: dict[int, Cells],
    settings: QualitySettings,
    now: datetime,
) -> list[MetricVerdict]:
    """Per metric, the verdict over all windows: a regression if any window flags it (the strongest is reported);
    insufficient_data if no window has enough records; else a pass (the longest window's figures)."""
    z_star = z_threshold(settings)
    per_metric: dict[str, list[MetricVerdict]] = {}
    for minutes, cells in sorted(windows.items()):
        for verdict in judge_window(reference, cells, settings, minutes, z_star, now):
            verdict.window_start = now - timedelta(minutes=minutes)
            verdict.window_end = now
            per_metric.setdefault(verdict.metric, []).append(verdict)
    out = []
    for metric in METRICS:
        candidates = per_metric.get(metric.name, [])
        flagged = [v for v in candidates if v.verdict == "regression"]
        if flagged:
            out.append(max(flagged, key=lambda v: v.z or 0.0))
            continue
        judged = [v for v in candidates if v.verdict == "pass"]
        if judged:
            out.append(judged[-1])
        else:
            out.append(MetricVerdict(metric.name, metric.regression_type, "insufficient_data"))
    return out


def overall(verdicts: Iterable[MetricVerdict]) -> str:
    found = list(verdicts)
    if any(v.verdict == "regression" for v in found):
        return "regression"
    if all(v.verdict == "insufficient_data" for v in found):
        return "insufficient_data"
    return "pass"


# --- incidents and the baseline policy ----------------------------------------------------------------------------


def incident_transition(
    is_open: bool, last_flagged_at: datetime | None, flagged: bool, now: datetime, settings: QualitySettings
) -> str:
    """The incident rule: open on the first flag; update while flagged; resolve once no window has flagged the
    metric for `recovery_minutes`; otherwise nothing. Returns "open", "update", "resolve" or "none"."""
    if flagged:
        return "update" if is_open else "open"
    recovery = timedelta(minutes=settings.monitoring.recovery_minutes)
    if is_open and last_flagged_at is not None and now - last_flagged_at >= recovery:
        return "resolve"
    return "none"


def reopens(resolved_at: datetime | None, now: datetime, settings: QualitySettings) -> bool:
    """The recurrence rule: a metric flagged again within `reopen_minutes` of its incident's automatic resolution
    reopens that incident (the same episode, counted once) instead of opening a new one."""
    horizon = timedelta(minutes=settings.monitoring.reopen_minutes)
    return resolved_at is not None and horizon > timedelta(0) and now - resolved_at <= horizon


def baseline_due(
    *,
    established_at: datetime | None,
    automatic: bool,
    open_incidents: int,
    first_record_at: datetime | None,
    records: int,
    now: datetime,
    settings: QualitySettings,
) -> str | None:
    """The baseline policy: "initial" once a version without a baseline has `baseline_min_hours` of traffic and
    `baseline_min_records` records; "refresh" once the active baseline is `refresh_hours` old and no incident of the
    version is open (the reference moves forward only over healthy periods); else None."""
    monitoring = settings.monitoring
    if not monitoring.auto_baseline:
        return None
    if established_at is None:
        if first_record_at is None or records < monitoring.baseline_min_records:
            return None
        if now - first_record_at < timedelta(hours=monitoring.baseline_min_hours):
            return None
        return "initial"
    if open_incidents or not automatic:
        return None
    if now - established_at >= timedelta(hours=monitoring.refresh_hours):
        return "refresh"
    return None


def excluded_spans(
    incidents: Sequence[tuple[datetime, datetime | None]], now: datetime, settings: QualitySettings
) -> list[tuple[datetime, datetime]]:
    """The periods a refreshed reference leaves out: every incident from its longest window before detection to
    its resolution (or now)."""
    lead = timedelta(minutes=max(settings.monitoring.windows_minutes))
    return [(detected - lead, resolved or now) for detected, resolved in incidents]
