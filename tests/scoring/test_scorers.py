"""The shipped scorers on small hand-made cases: each would fail if its scorer lost what it is for."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import replace

import pytest

from optiinfra.scoring import models
from optiinfra.scoring.base import ScoreInput, ScorerUnavailableError
from optiinfra.scoring.scorers import (
    CoherenceScorer,
    GroundednessScorer,
    HallucinationScorer,
    RelevanceScorer,
    ToxicityScorer,
)
from optiinfra.scoring.suite import default_scorers, score_batch, scorer_set

QUESTION = "How do I reset my password if I forgot it?"
ON_TOPIC = "Open the sign-in page, choose 'Forgot password', and follow the link we email you to set a new password."
OFF_TOPIC = "The Eiffel Tower was completed in 1889 and is about 330 metres tall, in the centre of Paris."
CONTEXT = (
    "Mercury is the smallest planet and the closest to the Sun. It has no moons. Venus is the hottest planet, "
    "with surface temperatures around 465 degrees Celsius."
)


def test_relevance_scores_an_answer_to_the_question_above_an_answer_to_another_question() -> None:
    relevant, unrelated = RelevanceScorer().score([ScoreInput(QUESTION, ON_TOPIC), ScoreInput(QUESTION, OFF_TOPIC)])
    assert relevant is not None
    assert unrelated is not None
    assert relevant > 0.4 > unrelated
    assert RelevanceScorer().score([ScoreInput(QUESTION, "   ")]) == [0.0]


def test_embeddings_do_not_depend_on_the_shipped_fixed_padding_or_on_batch_neighbours() -> None:
    embedder = models.Embedder()
    alone = embedder.embed([ON_TOPIC])[0]
    fresh = models.Embedder()
    batched = fresh.embed([ON_TOPIC, OFF_TOPIC * 6, "ok"])[0]
    assert float(alone @ batched) > 0.9999
    # A text longer than the shipped 128-token truncation still counts its tail.
    long_text = OFF_TOPIC * 8
    assert float(embedder.embed([long_text])[0] @ embedder.embed([long_text + " Bananas are yellow fruit."])[0]) < 1


def test_coherence_penalises_empty_looping_truncated_and_disconnected_answers() -> None:
    fluent = (
        "Photosynthesis turns light into chemical energy. Plants capture sunlight with chlorophyll in their leaves. "
        "That energy splits water and fixes carbon dioxide into sugar. The sugar then feeds the plant's growth."
    )
    looping = "I can help with that. " * 12
    truncated = fluent.rsplit(".", 2)[0] + " and then the plant uses the"
    disconnected = (
        "Photosynthesis turns light into chemical energy. The stock market closed lower on Friday. "
        "My cat prefers tuna. Quantum chromodynamics describes the strong force."
    )
    scores = CoherenceScorer().score(
        [ScoreInput("q", answer) for answer in (fluent, "", looping, truncated, disconnected)]
    )
    fluent_score, empty, looping_score, truncated_score, disconnected_score = scores
    assert empty == 0.0
    assert fluent_score is not None
    assert fluent_score > 0.6
    for worse in (looping_score, truncated_score, disconnected_score):
        assert worse is not None
        assert worse < fluent_score - 0.2


def test_groundedness_is_the_share_of_content_words_the_context_supports() -> None:
    supported = ScoreInput("Which planet is the hottest?", "Venus, at about 465 degrees Celsius.", CONTEXT)
    unsupported = ScoreInput("Which planet is the hottest?", "Jupiter, at about 900 degrees Kelvin.", CONTEXT)
    no_context = ScoreInput("Which planet is the hottest?", "Venus.", None)
    grounded, ungrounded, unknown = GroundednessScorer().score([supported, unsupported, no_context])
    assert grounded == 1.0
    assert ungrounded is not None
    assert ungrounded < 0.5
    assert unknown is None  # nothing to check against is not a pass
    flags = HallucinationScorer()
    hallucination = flags.score([supported, unsupported])
    assert hallucination[0] is not None
    assert hallucination[0] < flags.threshold
    assert hallucination[1] is not None
    assert hallucination[1] >= flags.threshold


def test_toxicity_separates_abuse_from_a_polite_answer() -> None:
    polite, abusive = ToxicityScorer().score(
        [ScoreInput("q", "Thanks for asking, here is how it works."), ScoreInput("q", "Shut up, you stupid idiot.")]
    )
    assert polite is not None
    assert polite < 0.2
    assert abusive is not None
    assert abusive > 0.8


def test_the_suite_records_each_scorer_version_and_the_set_fingerprint() -> None:
    scorers = default_scorers()
    (scores,) = score_batch(scorers, [ScoreInput("Which planet is the hottest?", "Jupiter is.", CONTEXT)])
    assert scores.metadata["scorers"] == {scorer.name: scorer.version for scorer in scorers}
    assert scores.metadata["scorer_set"] == scorer_set(scorers)
    assert set(scores.metadata["scores"]) == {"relevance", "coherence", "groundedness", "hallucination", "toxicity"}
    assert scores.hallucination_detected


def test_a_model_file_whose_digest_differs_from_the_pinned_one_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    tampered = replace(models.TOXICITY_MODEL, sha256="0" * 64)
    monkeypatch.setattr(models, "TOXICITY_MODEL", tampered)
    with pytest.raises(ScorerUnavailableError, match="not the file this version of OptiInfra pins"):
        models.ToxicityModel().probabilities(["hello"])


def test_a_missing_model_package_is_a_clear_error() -> None:
    with pytest.raises(ScorerUnavailableError, match="not installed"):
        models.locate(models.ModelFile("no_such_package_here", "no-such-package==1", "model.onnx", "0" * 64))


def test_the_command_line_and_the_server_start_without_loading_the_model_runtimes() -> None:
    code = (
        "import sys, optiinfra.cli, optiinfra.api.app, optiinfra.workflows.queue, optiinfra.scoring.service;"
        "print(sorted(m for m in ('onnxruntime', 'tokenizers', 'sklearn', 'joblib') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
