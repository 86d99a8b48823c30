"""The scorers run together on a batch, and what their scores become on a quality record.

| scorer | record field | stored also in `metadata.scores` |
|---|---|---|
| relevance | `relevance_score` | yes |
| coherence | `coherence_score` | yes |
| groundedness | `factuality_score` (None without a context) | yes |
| hallucination | `hallucination_detected` (score at or above its threshold) | yes, the score |
| toxicity | `toxicity_score` | yes |

`metadata.scorers` names each scorer's version and `metadata.scorer_set` is their fingerprint: the monitor takes a
new fingerprint on a model version's records as a baseline boundary (docs/scorers.md).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from optiinfra.scoring.base import ScoreInput, Scorer

SCORES_KEY = "scores"
SCORERS_KEY = "scorers"
SCORER_SET_KEY = "scorer_set"


def default_scorers() -> list[Scorer]:
    """The shipped scorers, sharing one embedding model."""
    from optiinfra.scoring.scorers import (
        CoherenceScorer,
        GroundednessScorer,
        HallucinationScorer,
        RelevanceScorer,
        ToxicityScorer,
    )

    groundedness = GroundednessScorer()
    return [RelevanceScorer(), CoherenceScorer(), groundedness, HallucinationScorer(groundedness), ToxicityScorer()]


def scorer_set(scorers: Sequence[Scorer]) -> str:
    """The fingerprint of a set of scorers and their versions, e.g. `coherence@1.0,groundedness@1.0,...`."""
    return ",".join(sorted(f"{scorer.name}@{scorer.version}" for scorer in scorers))


@dataclass(frozen=True)
class RecordScores:
    """What the scorers give one record: its score columns and what is added to its metadata."""

    relevance_score: float | None
    coherence_score: float | None
    factuality_score: float | None
    toxicity_score: float | None
    hallucination_detected: bool
    metadata: dict[str, Any]


def score_batch(scorers: Sequence[Scorer], batch: Sequence[ScoreInput]) -> list[RecordScores]:
    """Run every scorer on the batch; one RecordScores per item, in order."""
    results = {scorer.name: scorer.score(batch) for scorer in scorers}
    versions = {scorer.name: scorer.version for scorer in scorers}
    thresholds = {scorer.name: scorer.threshold for scorer in scorers}
    fingerprint = scorer_set(scorers)
    out = []
    for index in range(len(batch)):
        values = {name: scores[index] for name, scores in results.items()}
        hallucination = values.get("hallucination")
        out.append(
            RecordScores(
                relevance_score=_unit(values.get("relevance")),
                coherence_score=_unit(values.get("coherence")),
                factuality_score=_unit(values.get("groundedness")),
                toxicity_score=_unit(values.get("toxicity")),
                hallucination_detected=hallucination is not None
                and hallucination >= thresholds.get("hallucination", 1.0),
                metadata={
                    SCORES_KEY: {name: None if value is None else round(value, 4) for name, value in values.items()},
                    SCORERS_KEY: dict(versions),
                    SCORER_SET_KEY: fingerprint,
                },
            )
        )
    return out


def _unit(value: float | None) -> float | None:
    return None if value is None else min(1.0, max(0.0, float(value)))
