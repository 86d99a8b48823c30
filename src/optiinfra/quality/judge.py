"""The regression judge: compare a current window with a baseline, metric by metric.

A metric regresses when both hold:
1. the change is statistically significant: its one-sided test's p-value, adjusted with Holm's method over all
   the metrics tested in the window, is below `alpha` (default 0.01);
2. the change is practically significant: it exceeds both of its floors (absolute and relative).
Severity comes from how many times the change exceeds its floors (the smaller of the two ratios).
A window with fewer than `min_samples` records gets `insufficient_data`, never a pass or a fail.

`delta_percent` is signed so that negative is worse: a score that fell by 10 % is -10; a latency that rose by
10 % is -10 too.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from optiinfra.enums import RegressionType
from optiinfra.quality.schemas import Finding
from optiinfra.quality.settings import QualitySettings
from optiinfra.quality.statistics import (
    COMPONENTS,
    CONSTANT,
    TestResult,
    WindowSummary,
    fisher_rate_increase,
    holm_adjust,
    quantile_exceedance_test,
    welch_from_summaries,
)

# Against a baseline value of 0 any change is infinitely many percent; it is reported as this, signed.
PERCENT_CAP = 10_000.0


def _percent(current: float, reference: float, *, higher_is_worse: bool) -> float:
    if reference == 0:
        if current == 0:
            return 0.0
        change = math.copysign(PERCENT_CAP, current)
        return -change if higher_is_worse else change
    change = 100.0 * (current - reference) / abs(reference)
    return -change if higher_is_worse else change


def _ratio(effect: float, floor: float) -> float:
    return math.inf if floor == 0 else effect / floor


def judge(
    baseline: WindowSummary,
    current: WindowSummary,
    current_latencies: Sequence[float | None],
    settings: QualitySettings,
) -> list[Finding]:
    """Findings for every metric, regressions marked; nothing is stored."""
    floors = settings.floors
    pending: list[tuple[Finding, TestResult, bool]] = []  # finding, its test, exceeds both floors
    insufficient: list[Finding] = []

    def too_few(regression_type: RegressionType, metric: str, n: int) -> None:
        insufficient.append(
            Finding(regression_type=regression_type, metric_name=metric, verdict="insufficient_data", sample_size=n)
        )

    for metric in COMPONENTS:
        base, cur = baseline.components[metric], current.components[metric]
        if cur.n < settings.min_samples or base.n < 2 or base.mean is None or cur.mean is None:
            too_few(RegressionType.QUALITY_DROP, metric, cur.n)
            continue
        test = welch_from_summaries(cur, base, alternative="less")
        delta = cur.mean - base.mean
        relative = delta / base.mean if base.mean else 0.0
        exceeds = -delta >= floors.quality_drop_abs and -relative >= floors.quality_drop_rel
        finding = Finding(
            regression_type=RegressionType.QUALITY_DROP,
            metric_name=metric,
            verdict="pass",
            baseline_value=base.mean,
            current_value=cur.mean,
            delta=delta,
            delta_percent=_percent(cur.mean, base.mean, higher_is_worse=False),
            floors={"absolute": -floors.quality_drop_abs, "relative": -floors.quality_drop_rel},
            floor_ratio=min(_ratio(-delta, floors.quality_drop_abs), _ratio(-relative, floors.quality_drop_rel)),
            sample_size=cur.n,
        )
        pending.append((finding, test, exceeds))

    latencies = [value for value in current_latencies if value is not None and math.isfinite(value)]
    for quantile, metric, reference in (
        (0.95, "p95_latency_ms", baseline.latency_ms.p95),
        (0.50, "p50_latency_ms", baseline.latency_ms.p50),
    ):
        current_value = current.latency_ms.p95 if quantile == 0.95 else current.latency_ms.p50
        if len(latencies) < settings.min_samples or reference is None or current_value is None:
            too_few(RegressionType.LATENCY_INCREASE, metric, len(latencies))
            continue
        exceeding = sum(1 for value in latencies if value > reference)
        test = quantile_exceedance_test(exceeding, len(latencies), quantile, baseline.latency_ms.n)
        delta = current_value - reference
        relative = delta / reference if reference else math.inf
        exceeds = delta >= floors.latency_increase_ms and relative >= floors.latency_increase_rel
        finding = Finding(
            regression_type=RegressionType.LATENCY_INCREASE,
            metric_name=metric,
            verdict="pass",
            baseline_value=reference,
            current_value=current_value,
            delta=delta,
            delta_percent=_percent(current_value, reference, higher_is_worse=True),
            floors={"milliseconds": floors.latency_increase_ms, "relative": floors.latency_increase_rel},
            floor_ratio=min(_ratio(delta, floors.latency_increase_ms), _ratio(relative, floors.latency_increase_rel)),
            sample_size=len(latencies),
        )
        pending.append((finding, test, exceeds))

    base_rate, cur_rate = baseline.hallucination, current.hallucination
    if cur_rate.n < settings.min_samples or base_rate.n == 0 or base_rate.rate is None or cur_rate.rate is None:
        too_few(RegressionType.HALLUCINATION_SPIKE, "hallucination_rate", cur_rate.n)
    else:
        test = fisher_rate_increase(cur_rate, base_rate)
        delta = cur_rate.rate - base_rate.rate
        multiple = cur_rate.rate / base_rate.rate if base_rate.rate else (math.inf if cur_rate.rate else 1.0)
        exceeds = delta >= floors.hallucination_increase_points and multiple >= floors.hallucination_ratio
        finding = Finding(
            regression_type=RegressionType.HALLUCINATION_SPIKE,
            metric_name="hallucination_rate",
            verdict="pass",
            baseline_value=base_rate.rate,
            current_value=cur_rate.rate,
            delta=delta,
            delta_percent=_percent(cur_rate.rate, base_rate.rate, higher_is_worse=True),
            floors={"points": floors.hallucination_increase_points, "ratio": floors.hallucination_ratio},
            floor_ratio=min(
                _ratio(delta, floors.hallucination_increase_points), _ratio(multiple, floors.hallucination_ratio)
            ),
            sample_size=cur_rate.n,
        )
        pending.append((finding, test, exceeds))

    base_tox, cur_tox = baseline.toxicity, current.toxicity
    if cur_tox.n < settings.min_samples or base_tox.n < 2 or base_tox.mean is None or cur_tox.mean is None:
        too_few(RegressionType.TOXICITY_INCREASE, "toxicity_mean", cur_tox.n)
    else:
        test = welch_from_summaries(cur_tox, base_tox, alternative="greater")
        delta = cur_tox.mean - base_tox.mean
        multiple = cur_tox.mean / base_tox.mean if base_tox.mean else (math.inf if cur_tox.mean else 1.0)
        exceeds = delta >= floors.toxicity_increase_abs and multiple >= floors.toxicity_ratio
        finding = Finding(
            regression_type=RegressionType.TOXICITY_INCREASE,
            metric_name="toxicity_mean",
            verdict="pass",
            baseline_value=base_tox.mean,
            current_value=cur_tox.mean,
            delta=delta,
            delta_percent=_percent(cur_tox.mean, base_tox.mean, higher_is_worse=True),
            floors={"absolute": floors.toxicity_increase_abs, "ratio": floors.toxicity_ratio},
            floor_ratio=min(_ratio(delta, floors.toxicity_increase_abs), _ratio(multiple, floors.toxicity_ratio)),
            sample_size=cur_tox.n,
        )
        pending.append((finding, test, exceeds))

    adjusted = holm_adjust([test.p_value for _, test, _ in pending])
    findings: list[Finding] = []
    for (finding, test, exceeds), p_adjusted in zip(pending, adjusted, strict=True):
        regression = exceeds and p_adjusted < settings.alpha
        constant = test.test == CONSTANT
        findings.append(
            finding.model_copy(
                update={
                    "verdict": "regression" if regression else "pass",
                    "test": None if constant else test.test,
                    "statistic": test.statistic if math.isfinite(test.statistic) else None,
                    # A metric constant on both sides has no p-value to show: the difference is exact.
                    "p_value": None if constant else test.p_value,
                    "p_value_adjusted": None if constant else p_adjusted,
                    "ci95": test.ci95,
                    "note": "constant on both sides: no statistical test, the difference is exact"
                    if constant
                    else None,
                    "severity": settings.severity(finding.floor_ratio or 0.0) if regression else None,
                }
            )
        )
    return findings + insufficient


def overall_verdict(current: WindowSummary, findings: Sequence[Finding], settings: QualitySettings) -> str:
    if current.sample_size < settings.min_samples:
        return "insufficient_data"
    if any(finding.verdict == "regression" for finding in findings):
        return "regression"
    return "pass"
