"""Simulated LLM traffic for checking the judge's error rates (tests and benchmarks/judge_error_rates.py)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from optiinfra.quality.judge import judge
from optiinfra.quality.schemas import Finding
from optiinfra.quality.scoring import DEFAULT_WEIGHTS
from optiinfra.quality.settings import QualitySettings
from optiinfra.quality.statistics import summarize_window


@dataclass(frozen=True)
class Traffic:
    """How one window of simulated requests behaves."""

    relevance: float = 0.85
    coherence: float = 0.88
    factuality: float = 0.82
    spread: float = 0.10
    hallucination_rate: float = 0.04
    toxicity_mean: float = 0.02
    latency_median_ms: float = 800.0
    latency_sigma: float = 0.3
    overall_factor: float = 1.0  # multiplies the overall score (a 10 % drop is 0.9)


def simulate(rng: np.random.Generator, n: int, traffic: Traffic) -> dict[str, NDArray[Any]]:
    """Columns of n simulated requests, as summarize_window takes them."""
    relevance = np.clip(rng.normal(traffic.relevance, traffic.spread, n), 0, 1)
    coherence = np.clip(rng.normal(traffic.coherence, traffic.spread * 0.8, n), 0, 1)
    factuality = np.clip(rng.normal(traffic.factuality, traffic.spread * 1.2, n), 0, 1)
    hallucination = rng.random(n) < traffic.hallucination_rate
    toxicity = np.clip(rng.exponential(traffic.toxicity_mean, n), 0, 1)
    w = DEFAULT_WEIGHTS
    overall = (
        w["relevance"] * relevance
        + w["coherence"] * coherence
        + w["factuality"] * factuality
        + w["non_toxicity"] * (1 - toxicity)
        + w["no_hallucination"] * (~hallucination)
    )
    return {
        "overall": np.clip(overall * traffic.overall_factor, 0, 1),
        "relevance": relevance,
        "coherence": coherence,
        "factuality": factuality,
        "latency_ms": rng.lognormal(np.log(traffic.latency_median_ms), traffic.latency_sigma, n),
        "hallucination": hallucination,
        "toxicity": toxicity,
    }


def judge_simulated(
    rng: np.random.Generator,
    baseline: Traffic,
    current: Traffic,
    *,
    baseline_n: int = 200,
    current_n: int = 200,
    settings: QualitySettings | None = None,
) -> list[Finding]:
    """Draw a baseline window and a current window and judge them."""
    reference = simulate(rng, baseline_n, baseline)
    window = simulate(rng, current_n, current)
    return judge(
        summarize_window(**reference),
        summarize_window(**window),
        list(window["latency_ms"]),
        settings or QualitySettings(),
    )


def regression_rate(
    seed: int,
    windows: int,
    baseline: Traffic,
    current: Traffic,
    *,
    metric: str | None = None,
    baseline_n: int = 200,
    current_n: int = 200,
) -> float:
    """Share of simulated windows in which the judge reports a regression (on `metric`, or on any metric)."""
    rng = np.random.default_rng(seed)
    hits = 0
    for _ in range(windows):
        findings = judge_simulated(rng, baseline, current, baseline_n=baseline_n, current_n=current_n)
        hits += any(f.verdict == "regression" and (metric is None or f.metric_name == metric) for f in findings)
    return hits / windows
