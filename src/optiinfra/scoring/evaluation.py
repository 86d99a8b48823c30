"""Calibration of the scorers on labeled data: AUC, and TPR/FPR at each scorer's threshold, beside answer length.

A labeled file is JSON Lines, one object per line: `prompt`, `answer` (strings), `context` (string or null) and
`label`: 1 (or true) when the answer is bad (hallucinated, unsupported, off-topic, toxic, incoherent: whatever the
set labels), 0 (or false) when it is good. Every scorer is evaluated on every file; which scorer a file is meant
for is the reader's call (docs/scorers.md lists the sets and what each measures).

AUC is the probability that a bad answer is flagged more strongly than a good one (0.5 is chance), computed from
ranks (ties count half). Scores where a scorer is silent (groundedness without context) are left out of its AUC and
counted. Answer length in characters is evaluated the same way as a baseline: a scorer that does no better than
length, on a set where length alone separates the labels, has learnt nothing the set can show.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt, ValidationError

from optiinfra.errors import InvalidInputError
from optiinfra.scoring.base import ScoreInput, Scorer

MAX_LINE_BYTES = 1_000_000
MAX_ITEMS = 200_000


class LabeledItem(BaseModel):
    model_config = ConfigDict(extra="ignore")

    prompt: str = Field(max_length=100_000)
    answer: str = Field(max_length=100_000)
    context: str | None = Field(default=None, max_length=400_000)
    label: StrictBool | StrictInt = Field()

    @property
    def is_bad(self) -> bool:
        return bool(self.label)


def read_labeled(path: Path) -> list[LabeledItem]:
    """Read and validate a labeled JSON Lines file; any bad line refuses the file, naming the first few."""
    problems: list[str] = []
    items: list[LabeledItem] = []
    try:
        handle = path.open("rb")
    except OSError as error:
        raise InvalidInputError(f"Cannot read {path}: {error.strerror or error}.") from error
    with handle:
        for number, raw in enumerate(handle, start=1):
            if not raw.strip():
                continue
            if len(raw) > MAX_LINE_BYTES:
                problems.append(f"line {number}: longer than {MAX_LINE_BYTES} bytes")
                continue
            try:
                item = LabeledItem.model_validate(json.loads(raw))
            except (json.JSONDecodeError, UnicodeDecodeError):
                problems.append(f"line {number}: not a JSON object")
                continue
            except ValidationError as error:
                first = error.errors()[0]
                where = ".".join(str(part) for part in first["loc"]) or "line"
                problems.append(f"line {number}: {where} {first['msg'].lower()}")
                continue
            if item.label not in (0, 1):
                problems.append(f"line {number}: label must be 0, 1, true or false")
                continue
            items.append(item)
            if len(items) > MAX_ITEMS:
                raise InvalidInputError(f"{path} has more than {MAX_ITEMS} items; evaluate a sample.")
    if problems:
        shown = "; ".join(problems[:5]) + (f"; and {len(problems) - 5} more" if len(problems) > 5 else "")
        raise InvalidInputError(f"{path} has {len(problems)} invalid line(s): {shown}.", details={"lines": problems})
    if not items:
        raise InvalidInputError(f"{path} holds no labeled items.")
    return items


def auc(scores: Sequence[float], bad: Sequence[bool]) -> float | None:
    """P(score of a bad item > score of a good one), ties counting half; None without both kinds."""
    values = np.asarray(scores, dtype=float)
    labels = np.asarray(bad, dtype=bool)
    positives, negatives = int(labels.sum()), int((~labels).sum())
    if positives == 0 or negatives == 0:
        return None
    from scipy.stats import rankdata

    ranks = rankdata(values)
    return float((ranks[labels].sum() - positives * (positives + 1) / 2) / (positives * negatives))


class ScorerResult(BaseModel):
    scorer: str
    version: str
    scored: int
    silent: int  # items the scorer gave no score (nothing to judge)
    auc: float | None
    threshold: float | None
    flags: str
    tpr: float | None
    fpr: float | None


class Evaluation(BaseModel):
    items: int
    bad: int
    good: int
    results: list[ScorerResult]
    length_baseline: ScorerResult


def _rates(flagged: np.ndarray, bad: np.ndarray) -> tuple[float | None, float | None]:
    positives, negatives = int(bad.sum()), int((~bad).sum())
    tpr = float((flagged & bad).sum() / positives) if positives else None
    fpr = float((flagged & ~bad).sum() / negatives) if negatives else None
    return tpr, fpr


def _result(name: str, version: str, flags: str, threshold: float | None, raw: Sequence[float | None],
            bad: Sequence[bool]) -> ScorerResult:  # fmt: skip
    kept = [(value, label) for value, label in zip(raw, bad, strict=True) if value is not None and math.isfinite(value)]
    values = np.array([value for value, _ in kept], dtype=float)
    labels = np.array([label for _, label in kept], dtype=bool)
    oriented = values if flags == "high" else -values
    tpr = fpr = None
    if threshold is not None and len(values):
        flagged = values >= threshold if flags == "high" else values <= threshold
        tpr, fpr = _rates(flagged, labels)
    return ScorerResult(
        scorer=name,
        version=version,
        scored=len(kept),
        silent=len(raw) - len(kept),
        auc=None if not len(values) else auc(oriented.tolist(), labels.tolist()),
        threshold=threshold,
        flags=flags,
        tpr=tpr,
        fpr=fpr,
    )


def score_items(
    scorers: Sequence[Scorer],
    items: Sequence[LabeledItem],
    *,
    batch_size: int = 64,
    progress: Callable[[int], Any] | None = None,
) -> dict[str, list[float | None]]:
    """Every scorer's score of every item (in batches), by scorer name."""
    raw: dict[str, list[float | None]] = {scorer.name: [] for scorer in scorers}
    for start in range(0, len(items), batch_size):
        chunk = items[start : start + batch_size]
        batch = [ScoreInput(item.prompt, item.answer, item.context) for item in chunk]
        for scorer in scorers:
            raw[scorer.name].extend(scorer.score(batch))
        if progress is not None:
            progress(len(chunk))
    return raw


def summarize(
    scorers: Sequence[Scorer], raw: dict[str, list[float | None]], items: Sequence[LabeledItem]
) -> Evaluation:
    """Each scorer's scores measured against the labels, and answer length alone as the baseline."""
    bad = [item.is_bad for item in items]
    results = [
        _result(scorer.name, scorer.version, scorer.flags, scorer.threshold, raw[scorer.name], bad)
        for scorer in scorers
    ]
    lengths: list[float | None] = [float(len(item.answer)) for item in items]
    return Evaluation(
        items=len(items),
        bad=sum(bad),
        good=len(items) - sum(bad),
        results=results,
        length_baseline=_result("answer length", "-", "high", None, lengths, bad),
    )


def evaluate(
    scorers: Sequence[Scorer],
    items: Sequence[LabeledItem],
    *,
    batch_size: int = 64,
    progress: Callable[[int], Any] | None = None,
) -> Evaluation:
    """Score every item with every scorer and measure each against the labels."""
    return summarize(scorers, score_items(scorers, items, batch_size=batch_size, progress=progress), items)
