"""The regression judge on simulated traffic with fixed seeds: error rates, per-type detection, floors, severity."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
from scipy import stats

from optiinfra.enums import RegressionSeverity, RegressionType
from optiinfra.quality.judge import judge, overall_verdict
from optiinfra.quality.settings import QualitySettings
from optiinfra.quality.simulation import Traffic, judge_simulated, regression_rate, simulate
from optiinfra.quality.statistics import (
    holm_adjust,
    summarize_mean,
    summarize_window,
    welch_from_summaries,
)

BASE = Traffic()
WINDOWS = 200


def test_false_alarm_rate_on_unchanged_traffic_is_at_most_one_percent() -> None:
    # Spec: with default settings, windows drawn from the baseline's own distribution raise a regression in at
    # most 1 % of windows (here: any of the 8 metrics, 200 windows of 200 vs 200).
    rate = regression_rate(seed=2026, windows=WINDOWS, baseline=BASE, current=BASE)
    assert rate <= 0.01


def test_ten_percent_drop_in_overall_score_is_detected_at_least_95_percent_of_the_time() -> None:
    rate = regression_rate(
        seed=7,
        windows=WINDOWS,
        baseline=BASE,
        current=replace(BASE, overall_factor=0.9),
        metric="overall_quality_score",
    )
    assert rate >= 0.95


@pytest.mark.parametrize(
    ("current", "metric"),
    [
        (replace(BASE, latency_median_ms=1100), "p95_latency_ms"),
        (replace(BASE, latency_median_ms=1100), "p50_latency_ms"),
        (replace(BASE, hallucination_rate=0.20), "hallucination_rate"),
        (replace(BASE, toxicity_mean=0.12), "toxicity_mean"),
        (replace(BASE, factuality=0.70), "factuality_score"),
    ],
)
def test_each_regression_type_is_detected(current: Traffic, metric: str) -> None:
    assert regression_rate(seed=11, windows=50, baseline=BASE, current=current, metric=metric) >= 0.95


def test_significant_but_tiny_shift_is_not_a_regression() -> None:
    # 2 % lower scores on 5,000 vs 5,000 requests: clearly significant, below the practical floors.
    rng = np.random.default_rng(3)
    findings = judge_simulated(rng, BASE, replace(BASE, overall_factor=0.98), baseline_n=5000, current_n=5000)
    overall = next(f for f in findings if f.metric_name == "overall_quality_score")
    assert overall.p_value is not None
    assert overall.p_value < 1e-6
    assert overall.verdict == "pass"


def test_improvements_are_never_regressions() -> None:
    better = replace(BASE, overall_factor=1.1, latency_median_ms=500, hallucination_rate=0.0, toxicity_mean=0.005)
    assert regression_rate(seed=5, windows=50, baseline=BASE, current=better) == 0.0


def test_too_few_samples_is_insufficient_data_never_pass_or_fail() -> None:
    rng = np.random.default_rng(1)
    reference, window = simulate(rng, 200, BASE), simulate(rng, 49, replace(BASE, overall_factor=0.5))
    current = summarize_window(**window)
    findings = judge(summarize_window(**reference), current, list(window["latency_ms"]), QualitySettings())
    assert {f.verdict for f in findings} == {"insufficient_data"}
    assert overall_verdict(current, findings, QualitySettings()) == "insufficient_data"


def test_regression_carries_evidence_and_negative_delta_percent() -> None:
    rng = np.random.default_rng(9)
    findings = judge_simulated(rng, BASE, replace(BASE, overall_factor=0.85, latency_median_ms=1200))
    for metric in ("overall_quality_score", "p95_latency_ms"):
        finding = next(f for f in findings if f.metric_name == metric)
        assert finding.verdict == "regression"
        assert finding.delta_percent is not None
        assert finding.delta_percent < 0
        assert finding.p_value_adjusted is not None
        assert finding.p_value is not None
        assert finding.p_value_adjusted >= finding.p_value
        assert finding.ci95 is not None
        assert finding.floors
        assert finding.severity is not None
    latency = next(f for f in findings if f.metric_name == "p95_latency_ms")
    assert latency.regression_type is RegressionType.LATENCY_INCREASE


def test_severity_grows_with_the_effect() -> None:
    settings = QualitySettings()
    severities = []
    for factor in (0.93, 0.91, 0.88, 0.80):
        findings = judge_simulated(
            np.random.default_rng(4), BASE, replace(BASE, overall_factor=factor), baseline_n=2000, current_n=2000
        )
        overall = next(f for f in findings if f.metric_name == "overall_quality_score")
        severities.append(overall.severity)
    order = list(RegressionSeverity)
    ranks = [order.index(s) for s in severities if s is not None]
    assert len(ranks) == 4
    assert ranks == sorted(ranks)
    assert severities[0] is RegressionSeverity.LOW
    assert severities[-1] is RegressionSeverity.CRITICAL
    assert settings.severity(1.0) is RegressionSeverity.LOW


def test_custom_floors_change_the_verdict() -> None:
    strict = QualitySettings.model_validate({"floors": {"quality_drop_abs": 0.01, "quality_drop_rel": 0.01}})
    rng = np.random.default_rng(21)
    findings = judge_simulated(
        rng, BASE, replace(BASE, overall_factor=0.97), baseline_n=3000, current_n=3000, settings=strict
    )
    assert next(f for f in findings if f.metric_name == "overall_quality_score").verdict == "regression"


def test_welch_from_summaries_matches_scipy_on_raw_data() -> None:
    rng = np.random.default_rng(12)
    a, b = rng.normal(0.8, 0.1, 300), rng.normal(0.82, 0.15, 250)
    ours = welch_from_summaries(summarize_mean(a), summarize_mean(b), alternative="less")
    theirs = stats.ttest_ind(a, b, equal_var=False, alternative="less")
    assert ours.p_value == pytest.approx(theirs.pvalue, rel=1e-9)
    assert ours.ci95 is not None
    assert ours.ci95[0] < a.mean() - b.mean() < ours.ci95[1]


def test_holm_adjustment() -> None:
    assert holm_adjust([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert holm_adjust([]) == []


def test_window_summary_confidence_interval_covers_the_mean_95_percent_of_the_time() -> None:
    rng = np.random.default_rng(17)
    covered = 0
    for _ in range(400):
        summary = summarize_mean(rng.normal(0.7, 0.2, 60))
        assert summary.ci95_low is not None
        assert summary.ci95_high is not None
        covered += summary.ci95_low <= 0.7 <= summary.ci95_high
    assert 0.92 <= covered / 400 <= 0.98


def _constant_window(score: float, n: int = 300) -> object:
    rng = np.random.default_rng(5)
    return summarize_window(
        overall=[score] * n,
        relevance=[score] * n,
        coherence=[score] * n,
        factuality=[score] * n,
        latency_ms=list(rng.lognormal(6.5, 0.3, n)),
        hallucination=[False] * n,
        toxicity=[0.0] * n,
    )


def test_a_metric_constant_on_both_sides_gets_no_test_and_says_why() -> None:
    """The dashboard showed p = 7.4e-62 for a metric that was constant on both sides (issue 17)."""
    settings = QualitySettings()
    baseline, dropped = _constant_window(0.9), _constant_window(0.7)
    findings = {f.metric_name: f for f in judge(baseline, dropped, [], settings)}  # type: ignore[arg-type]
    overall = findings["overall_quality_score"]
    assert overall.test is None
    assert overall.p_value is None
    assert overall.p_value_adjusted is None
    assert overall.note is not None
    assert "constant on both sides" in overall.note
    # The difference is exact and beyond the floors: a regression, said without a made-up p-value.
    assert overall.verdict == "regression"
    assert overall.direction == "worse"
    toxicity = findings["toxicity_mean"]  # 0 on both sides: unchanged, no test, a pass
    assert (toxicity.verdict, toxicity.test, toxicity.direction) == ("pass", None, "unchanged")
    same = {f.metric_name: f for f in judge(baseline, _constant_window(0.9), [], settings)}  # type: ignore[arg-type]
    assert same["overall_quality_score"].verdict == "pass"


def test_direction_words_say_worse_or_better_whatever_the_metric() -> None:
    from optiinfra.quality.schemas import Finding, change_words

    rose = Finding(
        regression_type=RegressionType.HALLUCINATION_SPIKE,
        metric_name="hallucination_rate",
        verdict="regression",
        baseline_value=0.03,
        current_value=0.11,
        delta_percent=-266.7,  # a rate that rose: negative is worse
    )
    assert rose.direction == "worse"
    assert rose.model_dump(mode="json")["direction"] == "worse"
    assert change_words(rose.delta_percent) == "▼ worse by 266.7 %"
    assert change_words(3.0) == "▲ better by 3.0 %"
    assert change_words(0.0) == "unchanged"
    assert change_words(-10_000.0) == "▼ worse by over 10,000 %"
    assert change_words(None) == ""
