"""How one request's component scores combine into `overall_quality_score`.

The default weights favour what users notice most: factual answers that stay on topic. A hallucination or a
toxic answer pulls the score down through the penalty terms. The weights sum to 1, so the score stays in [0, 1].
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

DEFAULT_WEIGHTS: Mapping[str, float] = MappingProxyType(
    {
        "relevance": 0.30,
        "coherence": 0.20,
        "factuality": 0.30,
        "non_toxicity": 0.10,  # weight on (1 - toxicity_score)
        "no_hallucination": 0.10,  # weight on 0 when a hallucination was detected, else 1
    }
)


def overall_quality_score(
    *,
    relevance: float | None,
    coherence: float | None,
    factuality: float | None,
    toxicity: float | None,
    hallucination_detected: bool,
    weights: Mapping[str, float] = DEFAULT_WEIGHTS,
) -> float:
    """Weighted mean of the components present; a missing component's weight is left out, not counted as 0."""
    components = {
        "relevance": relevance,
        "coherence": coherence,
        "factuality": factuality,
        "non_toxicity": None if toxicity is None else 1.0 - toxicity,
        "no_hallucination": 0.0 if hallucination_detected else 1.0,
    }
    weighted = [(weights[name], value) for name, value in components.items() if value is not None]
    total_weight = sum(weight for weight, _ in weighted)
    if total_weight <= 0:
        raise ValueError("the weights of the components present sum to zero")
    return min(1.0, max(0.0, sum(weight * value for weight, value in weighted) / total_weight))
