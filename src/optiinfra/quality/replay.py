"""The worker's monitoring, replayed in memory on simulated columns (the benchmarks' fast path).

It follows the worker's procedure step for step with the same pure functions of `monitoring` (baseline policy,
reference, judge, incident rule); only the aggregates come from numpy instead of SQL. A test replays the same
traffic through the database backtest and checks that both open and resolve the same incidents.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import numpy as np
from numpy.typing import NDArray

from optiinfra.enums import RegressionAction, RegressionSeverity, RegressionType
from optiinfra.quality.monitoring import (
    AGG_FIELDS,
    Cells,
    Columns,
    Reference,
    aggregate_numpy,
    baseline_due,
    build_reference,
    excluded_spans,
    incident_transition,
    judge_pass,
    reopens,
    thresholds_numpy,
)
from optiinfra.quality.settings import QualitySettings
from optiinfra.quality.traffic import Traffic

SEVERITY_ORDER = [
    RegressionSeverity.LOW,
    RegressionSeverity.MEDIUM,
    RegressionSeverity.HIGH,
    RegressionSeverity.CRITICAL,
]


@dataclass
class Incident:
    metric: str
    regression_type: RegressionType
    detected_at: datetime
    severity: RegressionSeverity
    action: RegressionAction
    last_flagged_at: datetime
    resolved_at: datetime | None = None
    harm: float = 0.0
    detections: int = 1
    reopened_at: list[datetime] = field(default_factory=list)


def columns_of(traffic: Traffic) -> Columns:
    """Simulated traffic as the monitoring's columns (values rounded as `Traffic.records` writes them)."""
    return Columns(
        timestamp=np.floor(traffic.timestamp * 1e6) / 1e6,
        route=np.array(traffic.route_names, dtype=object)[traffic.route].astype(str),
        overall=np.round(traffic.overall, 6),
        relevance=np.round(traffic.relevance, 6),
        coherence=np.round(traffic.coherence, 6),
        factuality=np.round(traffic.factuality, 6),
        toxicity=np.round(traffic.toxicity, 6),
        latency_ms=np.round(traffic.latency_ms, 3),
        hallucination=traffic.hallucination.copy(),
    )


def worse(a: RegressionSeverity, b: RegressionSeverity) -> RegressionSeverity:
    return a if SEVERITY_ORDER.index(a) >= SEVERITY_ORDER.index(b) else b


def action_for(severity: RegressionSeverity, settings: QualitySettings, attributable: bool) -> RegressionAction:
    """The policy's action; a rollback needs an attributable change, else a person reviews."""
    action = settings.policy[severity]
    if action is RegressionAction.ROLLBACK_TRIGGERED and not attributable:
        return RegressionAction.MANUAL_REVIEW
    return action


class _MinuteAggregates:
    """Per (minute, route) aggregates with cumulative sums, for whole-minute windows."""

    def __init__(self, columns: Columns, reference: Reference, origin: float, settings: QualitySettings) -> None:
        self.origin = origin
        self.routes = sorted(set(columns.route.tolist()))
        route_index = {name: i for i, name in enumerate(self.routes)}
        minute = np.floor((columns.timestamp - origin) / 60).astype(np.int64)
        self.minutes = int(minute.max()) + 1 if minute.size else 0
        per_request = aggregate_numpy(
            columns,
            reference.thresholds,
            settings.monitoring.toxic_threshold,
            by_day=False,
            group_keys=minute * len(self.routes) + np.array([route_index[r] for r in columns.route.tolist()]),
        )
        flat = np.zeros((self.minutes * len(self.routes), len(AGG_FIELDS)))
        assert per_request.keys is not None
        for j, name in enumerate(AGG_FIELDS):
            flat[per_request.keys, j] = per_request.values[name]
        dense = flat.reshape(self.minutes, len(self.routes), len(AGG_FIELDS))
        self.cumulative = np.concatenate([np.zeros((1, len(self.routes), len(AGG_FIELDS))), np.cumsum(dense, axis=0)])

    def window(self, start_minute: int, end_minute: int) -> Cells:
        start_minute = max(0, start_minute)
        end_minute = min(self.minutes, end_minute)
        routes: list[str] = []
        hours: list[int] = []
        blocks: list[NDArray[np.float64]] = []
        minute = start_minute
        while minute < end_minute:
            absolute = self.origin / 60 + minute
            hour = int((absolute % 1440) // 60)
            next_hour = minute + int(60 - absolute % 60)
            stop = min(end_minute, next_hour)
            block = self.cumulative[stop] - self.cumulative[minute]
            for r, name in enumerate(self.routes):
                if block[r, 0] > 0:
                    routes.append(name)
                    hours.append(hour)
                    blocks.append(block[r])
            minute = stop
        if not blocks:
            return Cells.empty()
        stacked = np.vstack(blocks)
        return Cells(routes, np.array(hours, dtype=np.int64), {n: stacked[:, j] for j, n in enumerate(AGG_FIELDS)})


def replay(
    columns: Columns,
    settings: QualitySettings,
    *,
    start: datetime | None = None,
    end: datetime | None = None,
) -> tuple[list[Incident], list[datetime]]:
    """Run the worker's passes every `interval_seconds` from `start` (default: the first record's minute) to `end`
    (default: one interval after the last record); returns the incidents and the times baselines were set."""
    monitoring = settings.monitoring
    timestamps = columns.timestamp
    if timestamps.size == 0:
        return [], []
    first = float(timestamps[0])
    origin = float(np.floor(first / 60) * 60)
    moment = start or datetime.fromtimestamp(origin, UTC) + timedelta(seconds=monitoring.interval_seconds)
    stop = end or datetime.fromtimestamp(float(timestamps[-1]), UTC) + timedelta(seconds=monitoring.interval_seconds)
    step = timedelta(seconds=monitoring.interval_seconds)
    reference: Reference | None = None
    established_at: datetime | None = None
    aggregates: _MinuteAggregates | None = None
    incidents: list[Incident] = []
    open_by_metric: dict[str, Incident] = {}
    last_by_metric: dict[str, Incident] = {}  # each metric's latest incident (reopened if it recurs soon)
    baselines: list[datetime] = []
    while moment <= stop:
        now_ts = moment.timestamp()
        count = int(np.searchsorted(timestamps, now_ts, side="left"))
        due = baseline_due(
            established_at=established_at,
            automatic=True,
            open_incidents=len(open_by_metric),
            first_record_at=datetime.fromtimestamp(first, UTC) if count else None,
            records=count,
            now=moment,
            settings=settings,
        )
        if due is not None:
            built = reference_at(columns, moment, [(i.detected_at, i.resolved_at) for i in incidents], settings)
            if built is not None:
                reference, established_at = built, moment
                baselines.append(moment)
                aggregates = _MinuteAggregates(columns, reference, origin, settings)
        if reference is not None and aggregates is not None:
            end_minute = round((now_ts - origin) / 60)
            windows = {
                minutes: aggregates.window(end_minute - minutes, end_minute) for minutes in monitoring.windows_minutes
            }
            for verdict in judge_pass(reference, windows, settings, moment):
                if verdict.verdict == "insufficient_data":
                    continue
                existing = open_by_metric.get(verdict.metric)
                flagged = verdict.verdict == "regression"
                transition = incident_transition(
                    existing is not None, existing.last_flagged_at if existing else None, flagged, moment, settings
                )
                previous = last_by_metric.get(verdict.metric)
                if transition == "open" and previous is not None and reopens(previous.resolved_at, moment, settings):
                    transition, existing = "reopen", previous
                if transition == "reopen" and existing is not None:
                    assert verdict.severity is not None
                    existing.resolved_at = None
                    existing.reopened_at.append(moment)
                    open_by_metric[verdict.metric] = existing
                    transition = "update"
                if transition == "open":
                    assert verdict.severity is not None
                    incident = Incident(
                        verdict.metric,
                        verdict.regression_type,
                        moment,
                        verdict.severity,
                        action_for(verdict.severity, settings, attributable=False),
                        moment,
                        harm=verdict.harm or 0.0,
                    )
                    incidents.append(incident)
                    open_by_metric[verdict.metric] = incident
                    last_by_metric[verdict.metric] = incident
                elif transition == "update" and existing is not None:
                    assert verdict.severity is not None
                    existing.severity = worse(existing.severity, verdict.severity)
                    existing.action = action_for(existing.severity, settings, attributable=False)
                    existing.last_flagged_at = moment
                    existing.harm = max(existing.harm, verdict.harm or 0.0)
                    existing.detections += 1
                elif transition == "resolve" and existing is not None:
                    existing.resolved_at = moment
                    del open_by_metric[verdict.metric]
        moment += step
    return incidents, baselines


def reference_at(
    columns: Columns,
    now: datetime,
    incidents: list[tuple[datetime, datetime | None]],
    settings: QualitySettings,
) -> Reference | None:
    """The reference the baseline policy builds at `now`: the last `reference_days` of records before now, minus
    the incidents' spans; None if that leaves fewer than `baseline_min_records`."""
    monitoring = settings.monitoring
    since = now - timedelta(days=monitoring.reference_days)
    mask = (columns.timestamp >= since.timestamp()) & (columns.timestamp < now.timestamp())
    for span_start, span_end in excluded_spans(incidents, now, settings):
        mask &= ~((columns.timestamp >= span_start.timestamp()) & (columns.timestamp < span_end.timestamp()))
    if int(mask.sum()) < monitoring.baseline_min_records:
        return None
    chosen = columns.take(mask)
    thresholds = thresholds_numpy(chosen, monitoring.low_score_quantile)
    day_cells = aggregate_numpy(chosen, thresholds, monitoring.toxic_threshold, by_day=True)
    return build_reference(day_cells, thresholds, start=since.isoformat(), end=now.isoformat())
