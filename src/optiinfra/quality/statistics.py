"""The statistics of the quality engine: window summaries and the tests the regression judge and A/B tests use.

Everything here is pure (arrays in, numbers out) so it can be checked on simulated data with fixed seeds.

- Means (overall score, components, toxicity) are compared with Welch's t-test from summary statistics, so a
  baseline keeps n, mean and standard deviation and never needs its raw rows again.
- Latency quantiles are compared by exceedance: if the current p95 were no higher than the baseline's, no larger
  share of current requests would exceed the baseline p95 than the 5 % of baseline requests that did (50 % for the
  median); Fisher's exact test compares the two counts.
- Hallucination rates are compared with Fisher's exact test on the 2x2 table of counts.
- Several tests on one window are corrected with Holm's step-down method, so the chance of any false alarm in a
  window stays at or below alpha.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, cast

import numpy as np
from numpy.typing import NDArray
from pydantic import BaseModel
from scipy import stats

COMPONENTS = ("overall_quality_score", "relevance_score", "coherence_score", "factuality_score")
QUANTILE_POINTS = tuple(round(0.05 * i, 2) for i in range(21))  # 0, 5 %, …, 100 %


class MeanSummary(BaseModel):
    """n, mean, sample standard deviation and the 95 % confidence interval of the mean."""

    n: int
    mean: float | None
    std: float | None
    ci95_low: float | None
    ci95_high: float | None


class LatencySummary(BaseModel):
    n: int
    mean: float | None
    p50: float | None
    p95: float | None
    p99: float | None


class RateSummary(BaseModel):
    n: int
    count: int
    rate: float | None


class WindowSummary(BaseModel):
    """What a window of quality metrics looks like; a baseline stores exactly this in its metadata."""

    sample_size: int
    components: dict[str, MeanSummary]
    latency_ms: LatencySummary
    hallucination: RateSummary
    toxicity: MeanSummary
    overall_quantiles: list[float]


def _finite(values: Sequence[Any] | NDArray[Any]) -> NDArray[np.float64]:
    array = np.asarray([np.nan if v is None else v for v in values], dtype=float)
    return cast(NDArray[np.float64], array[np.isfinite(array)])


def summarize_mean(values: Sequence[Any] | NDArray[Any]) -> MeanSummary:
    data = _finite(values)
    n = int(data.size)
    if n == 0:
        return MeanSummary(n=0, mean=None, std=None, ci95_low=None, ci95_high=None)
    mean = float(data.mean())
    if n < 2:
        return MeanSummary(n=n, mean=mean, std=None, ci95_low=None, ci95_high=None)
    std = float(data.std(ddof=1))
    half = float(stats.t.ppf(0.975, n - 1)) * std / math.sqrt(n)
    return MeanSummary(n=n, mean=mean, std=std, ci95_low=mean - half, ci95_high=mean + half)


Column = Sequence[Any] | NDArray[Any]


def summarize_window(
    *,
    overall: Column,
    relevance: Column,
    coherence: Column,
    factuality: Column,
    latency_ms: Column,
    hallucination: Column,
    toxicity: Column,
) -> WindowSummary:
    """Summarise one window of per-request metrics (the columns of quality_metrics)."""
    latencies = _finite(latency_ms)
    overall_values = _finite(overall)
    flags = np.asarray(hallucination, dtype=bool)
    return WindowSummary(
        sample_size=len(overall),
        components={
            "overall_quality_score": summarize_mean(overall_values),
            "relevance_score": summarize_mean(relevance),
            "coherence_score": summarize_mean(coherence),
            "factuality_score": summarize_mean(factuality),
        },
        latency_ms=LatencySummary(
            n=int(latencies.size),
            mean=float(latencies.mean()) if latencies.size else None,
            p50=float(np.quantile(latencies, 0.50)) if latencies.size else None,
            p95=float(np.quantile(latencies, 0.95)) if latencies.size else None,
            p99=float(np.quantile(latencies, 0.99)) if latencies.size else None,
        ),
        hallucination=RateSummary(
            n=int(flags.size),
            count=int(flags.sum()),
            rate=float(flags.mean()) if flags.size else None,
        ),
        toxicity=summarize_mean(toxicity),
        overall_quantiles=[float(q) for q in np.quantile(overall_values, QUANTILE_POINTS)]
        if overall_values.size
        else [],
    )


# The "test" of a comparison where both sides are constant: no statistical test runs, the difference is exact.
CONSTANT = "none (constant on both sides)"
_NO_SPREAD = 1e-9  # a standard deviation below this share of the values' scale is none


@dataclass(frozen=True)
class TestResult:
    """One statistical comparison of a current window with its reference."""

    test: str
    statistic: float
    p_value: float
    ci95: tuple[float, float] | None  # of the difference current - reference, where defined


def welch_from_summaries(current: MeanSummary, reference: MeanSummary, *, alternative: str) -> TestResult:
    """Welch's t-test of current vs reference means; alternative 'less' asks whether current is lower."""
    assert current.mean is not None
    assert reference.mean is not None
    current_std = current.std or 0.0
    reference_std = reference.std or 0.0
    variance = current_std**2 / current.n + reference_std**2 / reference.n
    diff = current.mean - reference.mean
    # Floating-point sums give a constant column a standard deviation of about 1e-16, not 0.
    scale = max(abs(current.mean), abs(reference.mean), 1.0)
    if current_std <= _NO_SPREAD * scale and reference_std <= _NO_SPREAD * scale:
        # No spread at all: there is nothing to test. Any difference is certain (treated as p = 0), none is no
        # evidence (p = 1); the judge reports that no test ran, and why (CONSTANT).
        p_value = 0.0 if (diff < 0 if alternative == "less" else diff > 0) else 1.0
        return TestResult(CONSTANT, math.copysign(math.inf, diff) if diff else 0.0, p_value, (diff, diff))
    result = stats.ttest_ind_from_stats(
        current.mean,
        current_std,
        current.n,
        reference.mean,
        reference_std,
        reference.n,
        equal_var=False,
        alternative=alternative,
    )
    # Welch-Satterthwaite degrees of freedom for the interval of the difference.
    df = variance**2 / (
        (current_std**2 / current.n) ** 2 / max(current.n - 1, 1)
        + (reference_std**2 / reference.n) ** 2 / max(reference.n - 1, 1)
    )
    half = float(stats.t.ppf(0.975, df)) * math.sqrt(variance)
    return TestResult("welch_t", float(result.statistic), float(result.pvalue), (diff - half, diff + half))


def quantile_exceedance_test(exceeding: int, n: int, quantile: float, reference_n: int) -> TestResult:
    """Whether more current values exceed the reference quantile than the reference window's own share did.

    The reference quantile was estimated from `reference_n` values, of which (1 - quantile) exceeded it; comparing
    the two exceedance counts with Fisher's exact test accounts for the uncertainty of that estimate (a one-sample
    binomial test against exactly 1 - quantile would not, and raises false alarms on small baselines).
    """
    reference_exceeding = math.floor((1.0 - quantile) * reference_n)
    result = stats.fisher_exact(
        [[exceeding, n - exceeding], [reference_exceeding, reference_n - reference_exceeding]], alternative="greater"
    )
    current_share, reference_share = exceeding / n, reference_exceeding / reference_n
    diff = current_share - reference_share
    se = math.sqrt(current_share * (1 - current_share) / n + reference_share * (1 - reference_share) / reference_n)
    return TestResult(
        f"fisher_exceedance_p{round(quantile * 100)}",
        current_share,
        float(result.pvalue),
        (diff - 1.96 * se, diff + 1.96 * se),
    )


def fisher_rate_increase(current: RateSummary, reference: RateSummary) -> TestResult:
    """Fisher's exact test that the current rate is higher than the reference rate (exact for small counts)."""
    table = [[current.count, current.n - current.count], [reference.count, reference.n - reference.count]]
    result = stats.fisher_exact(table, alternative="greater")
    current_rate = current.count / current.n
    reference_rate = reference.count / reference.n
    diff = current_rate - reference_rate
    se = math.sqrt(current_rate * (1 - current_rate) / current.n + reference_rate * (1 - reference_rate) / reference.n)
    return TestResult(
        "fisher_exact", float(result.statistic), float(result.pvalue), (diff - 1.96 * se, diff + 1.96 * se)
    )


def mann_whitney(current: Sequence[float], reference: Sequence[float], *, alternative: str) -> TestResult:
    """Mann-Whitney U of two raw samples (used by A/B tests, where both arms' rows are at hand)."""
    result = stats.mannwhitneyu(_finite(current), _finite(reference), alternative=alternative)
    return TestResult("mann_whitney_u", float(result.statistic), float(result.pvalue), None)


def holm_adjust(p_values: Sequence[float]) -> list[float]:
    """Holm's step-down adjusted p-values (family-wise error control, valid under any dependence)."""
    m = len(p_values)
    order = sorted(range(m), key=lambda index: p_values[index])
    adjusted = [0.0] * m
    running = 0.0
    for rank, index in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p_values[index]))
        adjusted[index] = running
    return adjusted


def samples_needed(std: float, min_effect: float, *, alpha: float = 0.05, power: float = 0.8) -> int:
    """Per-arm sample size for a two-sided two-sample test to detect `min_effect` with the given power."""
    if min_effect <= 0 or std <= 0:
        return 0
    z = float(stats.norm.ppf(1 - alpha / 2) + stats.norm.ppf(power))
    return math.ceil(2 * (z * std / min_effect) ** 2)
