"""The evidence gate of a rollout phase: wait for a bake time and enough traffic, then judge the changed arm against
a concurrent control (the models: Argo Rollouts' analysis with a bake time, Kayenta's canary against a baseline
deployed at the same time).

**Arms.** Within the phase's span (from when it was applied until now), per model version:
- *changed*: records that ran on the change: `metadata.instance_id` is one of the instances changed so far, or
  `metadata.optimization_id` names this optimization;
- *control*: every other record of that model version in the same span (same hours, same traffic, unchanged
  instances). Records that name neither an instance nor the optimization count as control: applications must name
  the serving instance, or tag the changed traffic, for the arms to be right.
When every instance has moved (the last phase, or a fleet of one), there is no concurrent control: the control is the
previous phase's control period, or else the day before the rollout began, restricted to the hours of day the phase
covers (matched to the time of day); the verdict says which.

**When.** A phase is judged once `bake_seconds` have passed since it was applied **and** every model version with
changed traffic has `min_samples` records in both arms. A version that already regresses with enough samples stops
the rollout at once. If the evidence is still short at `deadline_seconds`, the run pauses for a human: never a pass
by default.

**Verdict.** The per-window judge (`quality.judge.judge`: one-sided tests, Holm-adjusted, practical floors) with the
control arm in the baseline's place and the customer's quality settings; recorded with both arms' numbers.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, and_, false, func, not_, or_, select
from sqlalchemy.orm import Session

from optiinfra.models import Customer, QualityMetric
from optiinfra.quality import repository as quality_repository
from optiinfra.quality.judge import judge, overall_verdict
from optiinfra.quality.settings import QualitySettings, settings_of
from optiinfra.quality.statistics import WindowSummary


@dataclass(frozen=True)
class GateConfig:
    bake_seconds: float = 600
    min_samples: int = 200
    deadline_seconds: float = 4 * 3600
    poll_seconds: float = 60

    @classmethod
    def of(cls, raw: dict[str, Any] | None) -> GateConfig:
        return cls(**(raw or {}))


@dataclass(frozen=True)
class ControlPeriod:
    """Where the control arm comes from when there is no concurrent control."""

    start: datetime
    end: datetime
    changed_instances: tuple[str, ...]  # instances changed during that period (excluded from it)
    source: str  # "previous_phase" or "day_before_rollout"


def changed_condition(optimization_id: str, instances: list[str]) -> ColumnElement[bool]:
    on_instance = QualityMetric.metadata_["instance_id"].astext.in_(instances) if instances else false()
    return or_(on_instance, QualityMetric.metadata_["optimization_id"].astext == optimization_id)


def control_condition(optimization_id: str, instances: list[str]) -> ColumnElement[bool]:
    changed = changed_condition(optimization_id, instances)
    # NULL-safe: a record with no instance and no tag is control.
    return not_(func.coalesce(changed, False))


def _key(model_name: str, model_version: str) -> str:
    return f"{model_name}@{model_version}"


def count_arms(
    session: Session,
    customer_id: uuid.UUID,
    start: datetime,
    end: datetime,
    changed: ColumnElement[bool],
    control: ColumnElement[bool] | None,
) -> dict[str, dict[str, int]]:
    """Records per model version and arm in [start, end) (control: same span, unless `control` is None)."""
    rows = session.execute(
        select(
            QualityMetric.model_name,
            QualityMetric.model_version,
            func.count().filter(changed),
            func.count().filter(control if control is not None else false()),
        )
        .where(
            QualityMetric.customer_id == customer_id, QualityMetric.timestamp >= start, QualityMetric.timestamp < end
        )
        .group_by(QualityMetric.model_name, QualityMetric.model_version)
    ).all()
    counts: dict[str, dict[str, int]] = {}
    for name, version, changed_n, control_n in rows:
        if changed_n > 0:
            counts[_key(name, version)] = {"changed": int(changed_n), "control": int(control_n)}
    return counts


def _hours_condition(hours: set[int]) -> ColumnElement[bool]:
    hour = func.extract("hour", func.timezone("UTC", QualityMetric.timestamp))
    return hour.in_(sorted(hours))


def _arm_numbers(summary: WindowSummary) -> dict[str, Any]:
    data = summary.model_dump(mode="json")
    data.pop("overall_quantiles", None)
    return data


@dataclass(frozen=True)
class Evidence:
    ready: bool  # every version with changed traffic has enough in both arms
    samples: dict[str, dict[str, int]]
    verdicts: list[dict[str, Any]]  # judged versions (those with enough samples)

    @property
    def regression(self) -> bool:
        return any(v["verdict"] == "regression" for v in self.verdicts)


def gather(
    session: Session,
    customer_id: uuid.UUID,
    optimization_id: str,
    instances: list[str],
    phase_start: datetime,
    now: datetime,
    config: GateConfig,
    control_period: ControlPeriod | None,
) -> Evidence:
    """Count both arms and judge every model version that has enough samples in both."""
    customer = session.get(Customer, customer_id)
    assert customer is not None
    settings: QualitySettings = settings_of(customer).model_copy(update={"min_samples": config.min_samples})
    changed = changed_condition(optimization_id, instances)
    end = now + timedelta(microseconds=1)
    if control_period is None:
        control = control_condition(optimization_id, instances)
        samples = count_arms(session, customer_id, phase_start, end, changed, control)
    else:
        samples = count_arms(session, customer_id, phase_start, end, changed, None)
        matched = _past_control(session, customer_id, optimization_id, control_period, _span_hours(phase_start, now))
        unmatched = _past_control(session, customer_id, optimization_id, control_period, None)
        for key in samples:
            samples[key]["control"] = matched.get(key, 0)
            if matched.get(key, 0) < config.min_samples <= unmatched.get(key, 0):
                # Too little of the control period at the same hours of day: all of it, and the verdict says so.
                samples[key]["control"] = unmatched[key]
                samples[key]["control_hours_matched"] = 0
    verdicts: list[dict[str, Any]] = []
    for key, counts in sorted(samples.items()):
        if counts["changed"] < config.min_samples or counts["control"] < config.min_samples:
            continue
        model_name, model_version = key.split("@", 1)
        treated = quality_repository.read_window(
            session, customer_id, model_name, model_version=model_version, start=phase_start, end=end,
            extra_condition=changed,
        )  # fmt: skip
        if control_period is None:
            reference = quality_repository.read_window(
                session, customer_id, model_name, model_version=model_version, start=phase_start, end=end,
                extra_condition=control_condition(optimization_id, instances),
            )  # fmt: skip
        else:
            condition = control_condition(optimization_id, list(control_period.changed_instances))
            if counts.get("control_hours_matched", 1):
                condition = and_(condition, _hours_condition(_span_hours(phase_start, now)))
            reference = quality_repository.read_window(
                session, customer_id, model_name, model_version=model_version, start=control_period.start,
                end=control_period.end, extra_condition=condition,
            )  # fmt: skip
        control_summary, treated_summary = reference.summarize(), treated.summarize()
        findings = judge(control_summary, treated_summary, treated.latency_ms, settings)
        verdicts.append(
            {
                "model_name": model_name,
                "model_version": model_version,
                "verdict": overall_verdict(treated_summary, findings, settings),
                "control_source": "concurrent"
                if control_period is None
                else control_period.source + ("" if counts.get("control_hours_matched", 1) else " (all hours)"),
                "changed": _arm_numbers(treated_summary),
                "control": _arm_numbers(control_summary),
                "findings": [f.model_dump(mode="json") for f in findings],
                "regressions": [f.model_dump(mode="json") for f in findings if f.verdict == "regression"],
            }
        )
    ready = bool(samples) and all(
        c["changed"] >= config.min_samples and c["control"] >= config.min_samples for c in samples.values()
    )
    return Evidence(ready=ready, samples=samples, verdicts=verdicts)


def _past_control(
    session: Session,
    customer_id: uuid.UUID,
    optimization_id: str,
    period: ControlPeriod,
    hours: set[int] | None,
) -> dict[str, int]:
    condition = control_condition(optimization_id, list(period.changed_instances))
    if hours is not None:
        condition = and_(condition, _hours_condition(hours))
    rows = session.execute(
        select(QualityMetric.model_name, QualityMetric.model_version, func.count())
        .where(
            QualityMetric.customer_id == customer_id,
            QualityMetric.timestamp >= period.start,
            QualityMetric.timestamp < period.end,
            condition,
        )
        .group_by(QualityMetric.model_name, QualityMetric.model_version)
    ).all()
    return {_key(name, version): int(n) for name, version, n in rows}


def _span_hours(start: datetime, end: datetime) -> set[int]:
    """The UTC hours of day a span covers."""
    hours: set[int] = set()
    moment = start.replace(minute=0, second=0, microsecond=0)
    while moment <= end and len(hours) < 24:
        hours.add(moment.hour)
        moment += timedelta(hours=1)
    return hours
