"""A realistic simulator of LLM traffic over days, for the monitoring benchmarks and tests (issue 11).

What it reproduces, each with a documented parameter (`TrafficModel`, `Route`):

- several request kinds (`metadata.route`), each with its own score, latency, hallucination and toxicity
  distributions;
- component scores drawn from Beta distributions, so they are bounded in [0, 1] and skewed toward 1; the overall
  score combines them with the default weights (as ingest does);
- hallucinations as rare Bernoulli events per route (2-4 %);
- toxicity exactly 0 for almost every answer: a few percent of answers get a small non-zero score, and a rare
  share (about 0.1 %) is truly toxic (>= 0.5);
- log-normal latency per route with a retry or timeout tail (a small share of requests pays a second attempt);
- a daily cycle: volume changes `peak_to_trough`-fold between night and afternoon, the mix of kinds moves from
  its night shares to its day shares (more code and RAG in working hours), and latency rises with load;
- day-to-day variation: each day's volume, quality and latency get a small random shift;
- effects (`Effect`) that start at a given time and optionally end, on all routes or some.

Our evaluators' traffic differs in its details; `perturbed()` draws a model with every parameter moved, so the
benchmarks check that the monitoring holds across parameter sets, not on one.
"""

from __future__ import annotations

import math
import uuid
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
from numpy.typing import NDArray

from optiinfra.quality.scoring import DEFAULT_WEIGHTS


@dataclass(frozen=True)
class Route:
    """One kind of request."""

    name: str
    night_share: float  # share of requests in the quietest hour
    day_share: float  # share of requests in the busiest hour
    relevance: float = 0.86  # mean of the Beta-distributed component scores
    coherence: float = 0.89
    factuality: float = 0.83
    concentration: float = 12.0  # Beta concentration (a + b): higher is less spread
    hallucination_rate: float = 0.03
    latency_median_ms: float = 900.0
    latency_sigma: float = 0.45  # of log latency


DEFAULT_ROUTES = (
    Route("chat", night_share=0.55, day_share=0.35, latency_median_ms=700, hallucination_rate=0.025),
    Route(
        "code", night_share=0.12, day_share=0.28, relevance=0.84, factuality=0.86, latency_median_ms=1600,
        latency_sigma=0.5, hallucination_rate=0.02,
    ),
    Route(
        "rag", night_share=0.13, day_share=0.25, factuality=0.8, latency_median_ms=2200, latency_sigma=0.4,
        hallucination_rate=0.045,
    ),
    Route("summarize", night_share=0.20, day_share=0.12, relevance=0.9, coherence=0.92, latency_median_ms=1200,
          latency_sigma=0.35, hallucination_rate=0.03),
)  # fmt: skip


@dataclass(frozen=True)
class TrafficModel:
    """The documented parameters of simulated traffic for one model version."""

    requests_per_day: float = 30_000
    peak_to_trough: float = 3.0  # volume in the busiest hour / volume in the quietest
    peak_hour_utc: float = 15.0
    routes: tuple[Route, ...] = DEFAULT_ROUTES
    load_latency: float = 0.30  # latency is multiplied by 1 + load_latency * (load - 1), load = volume / mean
    retry_rate: float = 0.03  # share of requests with a retry or timeout tail
    retry_extra_median_ms: float = 4000.0  # median extra time such a request pays (log-normal, sigma 0.6)
    nonzero_toxicity_rate: float = 0.03  # share of answers with a small non-zero toxicity score
    toxic_rate: float = 0.001  # share of truly toxic answers (toxicity >= 0.5)
    day_volume_sd: float = 0.10  # sd of each day's log volume multiplier
    day_quality_sd: float = 0.004  # sd of each day's shift of every component score
    day_latency_sd: float = 0.03  # sd of each day's log latency multiplier
    hour_quality_sd: float = 0.003  # sd of each (day, hour)'s shift of every component score


@dataclass(frozen=True)
class Effect:
    """A change that starts at `start` (and ends at `end`, if given), on `routes` (all if empty).

    kinds: `overall_factor` multiplies the overall score; `garbage_share` turns that share of answers into garbage
    (scores near 0.2); `hallucination_factor` multiplies hallucination rates; `toxic_share` makes that share of
    answers toxic; `latency_tail` multiplies p95 latency by `value` with the median unchanged (the upper half of the
    log-normal stretched); `latency_factor` multiplies every latency.
    """

    kind: str
    value: float
    start: datetime
    end: datetime | None = None
    routes: tuple[str, ...] = ()
    optimization_id: str | None = None  # tag affected records with metadata.optimization_id
    instance_id: str | None = None  # tag affected records with metadata.instance_id

    def __post_init__(self) -> None:
        kinds = {"overall_factor", "garbage_share", "hallucination_factor", "toxic_share", "latency_tail",
                 "latency_factor"}  # fmt: skip
        if self.kind not in kinds:
            raise ValueError(f"unknown effect kind {self.kind!r}")


@dataclass
class Traffic:
    """Columns of simulated requests, sorted by time (epoch seconds)."""

    timestamp: NDArray[np.float64]
    route: NDArray[np.int64]
    route_names: tuple[str, ...]
    overall: NDArray[np.float64]
    relevance: NDArray[np.float64]
    coherence: NDArray[np.float64]
    factuality: NDArray[np.float64]
    latency_ms: NDArray[np.float64]
    hallucination: NDArray[np.bool_]
    toxicity: NDArray[np.float64]
    optimization_id: list[str | None] = field(default_factory=list)
    instance_id: list[str | None] = field(default_factory=list)

    @property
    def size(self) -> int:
        return int(self.timestamp.size)

    def records(self, model_name: str, model_version: str, prefix: str = "") -> list[dict[str, Any]]:
        """The requests as `quality import` / ingest records (metadata.route, and the effect tags if any)."""
        out = []
        for i in range(self.size):
            metadata: dict[str, Any] = {"route": self.route_names[int(self.route[i])]}
            if self.optimization_id and self.optimization_id[i]:
                metadata["optimization_id"] = self.optimization_id[i]
            if self.instance_id and self.instance_id[i]:
                metadata["instance_id"] = self.instance_id[i]
            out.append(
                {
                    "request_id": f"{prefix}{i:08d}",
                    "model_name": model_name,
                    "model_version": model_version,
                    "timestamp": datetime.fromtimestamp(float(self.timestamp[i]), UTC).isoformat(),
                    "latency_ms": round(float(self.latency_ms[i]), 3),
                    "relevance_score": round(float(self.relevance[i]), 6),
                    "coherence_score": round(float(self.coherence[i]), 6),
                    "factuality_score": round(float(self.factuality[i]), 6),
                    "toxicity_score": round(float(self.toxicity[i]), 6),
                    "hallucination_detected": bool(self.hallucination[i]),
                    "overall_quality_score": round(float(self.overall[i]), 6),
                    "metadata": metadata,
                }
            )
        return out


def _cycle(hours: NDArray[np.float64], model: TrafficModel) -> NDArray[np.float64]:
    """Relative volume (mean 1) at each hour of day."""
    amplitude = (model.peak_to_trough - 1) / (model.peak_to_trough + 1)
    return 1 + amplitude * np.cos(2 * np.pi * (hours - model.peak_hour_utc) / 24)


def _beta(rng: np.random.Generator, mean: NDArray[np.float64], concentration: float) -> NDArray[np.float64]:
    mean = np.clip(mean, 0.01, 0.99)
    return rng.beta(mean * concentration, (1 - mean) * concentration)


def generate(
    model: TrafficModel,
    start: datetime,
    days: float,
    seed: int,
    effects: tuple[Effect, ...] = (),
) -> Traffic:
    """Simulate `days` of traffic from `start` (a non-homogeneous Poisson process, minute by minute)."""
    rng = np.random.default_rng(seed)
    minutes = round(days * 1440)
    t0 = start.timestamp()
    minute_start = t0 + 60.0 * np.arange(minutes)
    hour_of_day = ((minute_start % 86400) / 3600.0).astype(float)
    day_index = ((minute_start - t0) // 86400).astype(int)
    n_days = int(day_index.max()) + 1 if minutes else 0
    day_volume = np.exp(rng.normal(0, model.day_volume_sd, n_days))
    day_quality = rng.normal(0, model.day_quality_sd, n_days)
    day_latency = np.exp(rng.normal(0, model.day_latency_sd, n_days))
    hour_quality = rng.normal(0, model.hour_quality_sd, (n_days, 24))
    cycle = _cycle(hour_of_day, model)
    rate = model.requests_per_day / 1440 * cycle * day_volume[day_index]
    counts = rng.poisson(rate)
    n = int(counts.sum())
    minute_of = np.repeat(np.arange(minutes), counts)
    timestamp = minute_start[minute_of] + rng.random(n) * 60.0
    # Mix: night shares at the quietest hour, day shares at the busiest, linear in between.
    busy = (cycle - cycle.min()) / max(float(np.ptp(cycle)), 1e-12) if minutes else cycle
    night = np.array([r.night_share for r in model.routes])
    day = np.array([r.day_share for r in model.routes])
    shares = night[None, :] + (day - night)[None, :] * busy[:, None]
    shares /= shares.sum(axis=1, keepdims=True)
    cumulative = np.cumsum(shares[minute_of], axis=1)
    route = (rng.random(n)[:, None] > cumulative).sum(axis=1).astype(np.int64)
    route = np.minimum(route, len(model.routes) - 1)

    def per_route(attribute: str) -> NDArray[np.float64]:
        values: NDArray[np.float64] = np.array([getattr(r, attribute) for r in model.routes], dtype=float)[route]
        return values

    day_of = day_index[minute_of]
    hour_of = hour_of_day[minute_of].astype(int)
    shift = day_quality[day_of] + hour_quality[day_of, hour_of]
    relevance = np.empty(n)
    coherence = np.empty(n)
    factuality = np.empty(n)
    for index, r in enumerate(model.routes):
        mask = route == index
        relevance[mask] = _beta(rng, r.relevance + shift[mask], r.concentration)
        coherence[mask] = _beta(rng, r.coherence + shift[mask], r.concentration * 1.3)
        factuality[mask] = _beta(rng, r.factuality + shift[mask], r.concentration * 0.9)
    hallucination_rate = per_route("hallucination_rate")
    toxic_rate = np.full(n, model.toxic_rate)
    garbage_share = np.zeros(n)
    overall_factor = np.ones(n)
    tail_factor = np.ones(n)
    latency_factor = np.ones(n)
    optimization_ids: list[str | None] = [None] * n
    instance_ids: list[str | None] = [None] * n
    route_index = {r.name: i for i, r in enumerate(model.routes)}
    for effect in effects:
        mask = timestamp >= effect.start.timestamp()
        if effect.end is not None:
            mask &= timestamp < effect.end.timestamp()
        if effect.routes:
            mask &= np.isin(route, [route_index[name] for name in effect.routes])
        if effect.kind == "overall_factor":
            overall_factor[mask] *= effect.value
        elif effect.kind == "garbage_share":
            garbage_share[mask] = effect.value
        elif effect.kind == "hallucination_factor":
            hallucination_rate = np.where(mask, hallucination_rate * effect.value, hallucination_rate)
        elif effect.kind == "toxic_share":
            toxic_rate[mask] = effect.value
        elif effect.kind == "latency_tail":
            tail_factor[mask] *= effect.value
        elif effect.kind == "latency_factor":
            latency_factor[mask] *= effect.value
        for index in np.flatnonzero(mask).tolist():
            if effect.optimization_id:
                optimization_ids[index] = effect.optimization_id
            if effect.instance_id:
                instance_ids[index] = effect.instance_id
    hallucination = rng.random(n) < hallucination_rate
    factuality = np.where(hallucination, factuality * 0.6, factuality)
    toxicity = np.zeros(n)
    nonzero = rng.random(n) < model.nonzero_toxicity_rate
    toxicity[nonzero] = rng.beta(1.0, 15.0, int(nonzero.sum()))
    toxic = rng.random(n) < toxic_rate
    toxicity[toxic] = rng.beta(6.0, 3.0, int(toxic.sum()))
    garbage = rng.random(n) < garbage_share
    g = int(garbage.sum())
    relevance[garbage] = rng.beta(2.0, 8.0, g)
    coherence[garbage] = rng.beta(2.0, 8.0, g)
    factuality[garbage] = rng.beta(2.0, 8.0, g)
    w = DEFAULT_WEIGHTS
    overall = (
        w["relevance"] * relevance
        + w["coherence"] * coherence
        + w["factuality"] * factuality
        + w["non_toxicity"] * (1 - toxicity)
        + w["no_hallucination"] * (~hallucination)
    )
    overall = np.clip(overall * overall_factor, 0, 1)
    # Latency: log-normal per route; the upper half stretched by a tail effect; load and day multipliers; retries.
    z = rng.standard_normal(n)
    sigma = per_route("latency_sigma")
    z_stretched = z + np.maximum(z, 0) * np.log(tail_factor) / (1.6449 * sigma)
    load = cycle[minute_of] * day_volume[day_of]
    latency = (
        per_route("latency_median_ms")
        * np.exp(sigma * z_stretched)
        * (1 + model.load_latency * (load - 1))
        * day_latency[day_of]
        * latency_factor
    )
    retried = rng.random(n) < model.retry_rate
    latency[retried] += rng.lognormal(math.log(model.retry_extra_median_ms), 0.6, int(retried.sum()))
    latency = np.minimum(latency, 60_000.0)  # client timeout
    order = np.argsort(timestamp, kind="stable")
    return Traffic(
        timestamp=timestamp[order],
        route=route[order],
        route_names=tuple(r.name for r in model.routes),
        overall=overall[order],
        relevance=relevance[order],
        coherence=coherence[order],
        factuality=factuality[order],
        latency_ms=latency[order],
        hallucination=hallucination[order],
        toxicity=toxicity[order],
        optimization_id=[optimization_ids[i] for i in order] if any(optimization_ids) else [],
        instance_id=[instance_ids[i] for i in order] if any(instance_ids) else [],
    )


def perturbed(model: TrafficModel, seed: int, strength: float = 1.0) -> TrafficModel:
    """A model with every parameter moved at random (for checking the monitoring across parameter sets)."""
    rng = np.random.default_rng(seed)

    def jitter(value: float, relative: float) -> float:
        return float(value * math.exp(rng.normal(0, relative * strength)))

    routes = tuple(
        replace(
            r,
            night_share=jitter(r.night_share, 0.3),
            day_share=jitter(r.day_share, 0.3),
            relevance=min(0.97, jitter(r.relevance, 0.05)),
            coherence=min(0.97, jitter(r.coherence, 0.05)),
            factuality=min(0.97, jitter(r.factuality, 0.05)),
            concentration=jitter(r.concentration, 0.3),
            hallucination_rate=jitter(r.hallucination_rate, 0.3),
            latency_median_ms=jitter(r.latency_median_ms, 0.4),
            latency_sigma=jitter(r.latency_sigma, 0.25),
        )
        for r in model.routes
    )
    return replace(
        model,
        routes=routes,
        peak_to_trough=1 + jitter(model.peak_to_trough - 1, 0.4),
        peak_hour_utc=float((model.peak_hour_utc + rng.normal(0, 3 * strength)) % 24),
        load_latency=jitter(model.load_latency, 0.5),
        retry_rate=jitter(model.retry_rate, 0.5),
        retry_extra_median_ms=jitter(model.retry_extra_median_ms, 0.5),
        nonzero_toxicity_rate=jitter(model.nonzero_toxicity_rate, 0.5),
        toxic_rate=jitter(model.toxic_rate, 0.5),
        day_volume_sd=jitter(model.day_volume_sd, 0.5),
        day_quality_sd=jitter(model.day_quality_sd, 0.5),
        day_latency_sd=jitter(model.day_latency_sd, 0.5),
        hour_quality_sd=jitter(model.hour_quality_sd, 0.5),
    )


def start_of_day(days_ago: int = 14) -> datetime:
    """A fixed-looking UTC midnight some days in the past (simulated traffic must not lie in the future)."""
    today = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    return today - timedelta(days=days_ago)


def new_optimization_tag() -> str:
    return str(uuid.uuid4())
