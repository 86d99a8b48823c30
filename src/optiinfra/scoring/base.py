"""The scorer interface: a name, a version, and a batch of (prompt, answer, context) in, one score per item out."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal, Protocol

from optiinfra.errors import ConfigurationError


@dataclass(frozen=True)
class ScoreInput:
    """One request to score: what was asked, what the model answered, and the context it was given (if any)."""

    prompt: str
    answer: str
    context: str | None = None


class Scorer(Protocol):
    """A scorer. `score` returns a value in [0, 1] per item, or None where the item gives it nothing to judge
    (groundedness without a context). `flags` says which end is bad: an answer is flagged at
    `score >= threshold` (flags high) or `score <= threshold` (flags low)."""

    @property
    def name(self) -> str: ...

    @property
    def version(self) -> str: ...

    @property
    def flags(self) -> Literal["high", "low"]: ...

    @property
    def threshold(self) -> float: ...

    def score(self, batch: Sequence[ScoreInput]) -> list[float | None]: ...


class ScorerUnavailableError(ConfigurationError):
    """The scorers cannot run here: the `scorers` extra is missing, or a model file is not the one pinned."""

    def __init__(self, message: str) -> None:
        super().__init__(message, fix="Install the scorers: pip install 'optiinfra[scorers]'")
