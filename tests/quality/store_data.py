"""Simulated records for the store and rollup tests: fixed seed, several versions, routes and hours, records still
waiting for their scores, missing latencies and scores."""

from __future__ import annotations

import random
import uuid
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from typing import Any

from optiinfra.models.application_schema import LATENCY_BINS, ROLLUP_TOXIC_THRESHOLD
from optiinfra.quality.repository import INGEST_COLUMNS
from optiinfra.quality.store import SUM_FIELDS, latency_bin

START = datetime(2026, 11, 30, 0, 0, tzinfo=UTC)
ROUTES = ("", "search", "support")


def records(
    customer_id: uuid.UUID,
    agent_id: uuid.UUID,
    n: int,
    *,
    seed: int,
    prefix: str = "r",
    start: datetime = START,
    hours: int = 30,
    versions: tuple[tuple[str, str], ...] = (("gpt", "v1"), ("gpt", "v2")),
) -> list[tuple[Any, ...]]:
    """n rows in INGEST_COLUMNS order (metadata a dict)."""
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        model, version = versions[i % len(versions)]
        route = rng.choice(ROUTES)
        metadata: dict[str, Any] = {"route": route} if route else {}
        if rng.random() < 0.1:
            metadata["scores_pending"] = True
        if rng.random() < 0.05:
            metadata["optimization_id"] = "opt-1"
        values = {
            "agent_id": agent_id,
            "customer_id": customer_id,
            "request_id": f"{prefix}-{i:05d}",
            "model_name": model,
            "model_version": version,
            "prompt_tokens": rng.randint(10, 900),
            "completion_tokens": None if rng.random() < 0.05 else rng.randint(1, 400),
            "latency_ms": None if rng.random() < 0.05 else rng.lognormvariate(6.5, 0.6),
            "relevance_score": None if rng.random() < 0.2 else rng.random(),
            "coherence_score": rng.random(),
            "factuality_score": None if rng.random() < 0.3 else rng.random(),
            "hallucination_detected": rng.random() < 0.1,
            "toxicity_score": None if rng.random() < 0.1 else rng.random() ** 3,
            "overall_quality_score": rng.betavariate(8, 2),
            "timestamp": start + timedelta(seconds=rng.uniform(0, hours * 3600)),
            "metadata": metadata,
        }
        rows.append(tuple(values[name] for name in INGEST_COLUMNS))
    return rows


def expected_rollups(rows: list[tuple[Any, ...]]) -> dict[tuple[Any, ...], dict[str, Any]]:
    """The hourly aggregates of rows, computed here from the records themselves: key (customer, model, version,
    route, hour) -> SUM_FIELDS and the latency histogram."""
    column = {name: i for i, name in enumerate(INGEST_COLUMNS)}
    out: dict[tuple[Any, ...], dict[str, Any]] = defaultdict(
        lambda: {**dict.fromkeys(SUM_FIELDS, 0.0), "latency_histogram": [0] * LATENCY_BINS}
    )
    for row in rows:

        def get(name: str, row: tuple[Any, ...] = row) -> Any:
            return row[column[name]]

        metadata = get("metadata")
        hour = get("timestamp").astimezone(UTC).replace(minute=0, second=0, microsecond=0)
        sums = out[(get("customer_id"), get("model_name"), get("model_version"), metadata.get("route", ""), hour)]
        scored = "scores_pending" not in metadata
        sums["record_count"] += 1
        if scored:
            overall = get("overall_quality_score")
            sums["scored_count"] += 1
            sums["overall_sum"] += overall
            sums["overall_sum_squares"] += overall * overall
            sums["hallucination_count"] += get("hallucination_detected")
        toxicity = get("toxicity_score")
        sums["toxic_count"] += toxicity is not None and toxicity >= ROLLUP_TOXIC_THRESHOLD
        for name in ("relevance", "coherence", "factuality", "toxicity"):
            value = get(f"{name}_score")
            if value is not None:
                sums[f"{name}_count"] += 1
                sums[f"{name}_sum"] += value
                sums[f"{name}_sum_squares"] += value * value
        latency = get("latency_ms")
        if latency is not None:
            sums["latency_count"] += 1
            sums["latency_sum"] += latency
            sums["latency_sum_squares"] += latency * latency
            sums["latency_histogram"][latency_bin(latency)] += 1
        sums["prompt_tokens_sum"] += get("prompt_tokens") or 0
        sums["completion_tokens_sum"] += get("completion_tokens") or 0
    return dict(out)


def assert_same_aggregates(actual: dict[str, Any], expected: dict[str, Any]) -> None:
    for name in SUM_FIELDS:
        if name.endswith(("_count", "tokens_sum")):
            assert int(actual[name]) == int(expected[name]), name
        else:
            assert abs(float(actual[name]) - float(expected[name])) <= 1e-6 * max(1.0, abs(expected[name])), name
    assert list(actual["latency_histogram"]) == list(expected["latency_histogram"])
