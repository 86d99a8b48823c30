"""Plain-text helpers of the heuristic scorers: sentences, words, content words and their stems."""

from __future__ import annotations

import re

_SENTENCE_END = re.compile(r"(?<=[.!?])[\"')\]]*\s+|\n+")
_WORD = re.compile(r"[^\W_]+(?:[.,'][^\W_]+)*", re.UNICODE)
_TERMINAL = re.compile(r"[.!?…:;)\]}\"'`*>|]\s*$|```\s*$")

# Function words: they carry no claim, so they neither support nor contradict a context.
STOPWORDS = frozenset(
    """a about above after again against all also am an and any are as at be because been before being below
    between both but by can could did do does doing down during each either else ever few for from further had
    has have having he her here hers herself him himself his how however i if in into is it its itself just
    least less like may me might more most much must my myself neither no nor not now of off often on once one
    only or other our ours ourselves out over own per perhaps quite rather really same shall she should so some
    such than that the their theirs them themselves then there these they this those though through thus to too
    under until up upon us very via was we were what whatever when where whether which while who whom whose why
    will with within without would yes yet you your yours yourself yourselves s t d ll m re ve""".split()  # noqa: SIM905
)


def sentences(text: str) -> list[str]:
    """The text's sentences (split after . ! ? and at line breaks), without empty ones."""
    return [part.strip() for part in _SENTENCE_END.split(text) if part and part.strip()]


def words(text: str) -> list[str]:
    """Lower-case words; numbers keep their inner separators (3.14, 1,000)."""
    return [word.lower() for word in _WORD.findall(text)]


def stem(word: str) -> str:
    """A light suffix stripping so inflections match (supported/supports/supporting)."""
    if any(character.isdigit() for character in word):
        return word.replace(",", "")
    word = word.replace("'", "")
    for suffix in ("ingly", "edly", "ings", "ing", "ies", "ied", "es", "ed", "ly", "s"):
        if word.endswith(suffix) and len(word) - len(suffix) >= 3:
            return word[: -len(suffix)]
    return word


def content_stems(text: str) -> list[str]:
    """The stems of the text's content words (not function words), in order."""
    return [stem(word) for word in words(text) if word not in STOPWORDS]


def looks_truncated(text: str) -> bool:
    """The answer stops mid-sentence: it ends on neither closing punctuation nor a closing code fence."""
    stripped = text.rstrip()
    return bool(stripped) and _TERMINAL.search(stripped) is None
