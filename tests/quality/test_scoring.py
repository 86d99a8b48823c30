"""The overall quality score formula."""

from __future__ import annotations

import pytest

from optiinfra.quality.scoring import DEFAULT_WEIGHTS, overall_quality_score


def test_default_weights_sum_to_one() -> None:
    assert sum(DEFAULT_WEIGHTS.values()) == pytest.approx(1.0)


def test_perfect_answer_scores_one_and_hallucination_costs_its_weight() -> None:
    perfect = {"relevance": 1.0, "coherence": 1.0, "factuality": 1.0, "toxicity": 0.0}
    assert overall_quality_score(**perfect, hallucination_detected=False) == pytest.approx(1.0)
    assert overall_quality_score(**perfect, hallucination_detected=True) == pytest.approx(
        1.0 - DEFAULT_WEIGHTS["no_hallucination"]
    )


def test_missing_components_are_left_out_not_counted_as_zero() -> None:
    score = overall_quality_score(
        relevance=0.8, coherence=None, factuality=None, toxicity=None, hallucination_detected=False
    )
    expected = (0.3 * 0.8 + 0.1 * 1.0) / (0.3 + 0.1)
    assert score == pytest.approx(expected)


def test_custom_weights_are_applied() -> None:
    weights = {"relevance": 1.0, "coherence": 0.0, "factuality": 0.0, "non_toxicity": 0.0, "no_hallucination": 0.0}
    score = overall_quality_score(
        relevance=0.42, coherence=0.9, factuality=0.9, toxicity=0.5, hallucination_detected=True, weights=weights
    )
    assert score == pytest.approx(0.42)


def test_all_zero_weights_are_refused() -> None:
    with pytest.raises(ValueError, match="sum to zero"):
        overall_quality_score(
            relevance=0.5,
            coherence=None,
            factuality=None,
            toxicity=None,
            hallucination_detected=False,
            weights=dict.fromkeys(DEFAULT_WEIGHTS, 0.0),
        )
