"""The optional LLM judge: a sample of answers checked for factuality by a model that reasons, per customer.

The offline groundedness check sees only whether an answer's words are in its context; it cannot see a wrong
inference drawn from right facts. A customer who wants that checked points the judge at an OpenAI-compatible chat
completions endpoint (a local vLLM or Ollama, or a provider) in its scoring settings. The worker then asks it about
`sample_rate` of the scored records, at most `max_calls_per_day` calls and `max_tokens_per_day` tokens per UTC day
(the calls are reserved before they are made, so the cap holds with several workers).

The prompt is ours and versioned (`PROMPT_VERSION`, recorded on every judged record and in the scorer fingerprint);
the answer is parsed by us: the first JSON object in the reply, with a verdict of `supported`, `unsupported` or
`contradicted` and a score in [0, 1]. A reply that does not parse is recorded as an error on the record, never as a
verdict. The endpoint is checked by `optiinfra.net.endpoints` when the settings are stored and again at each call.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import httpcore

from optiinfra.net import endpoints
from optiinfra.scoring.base import ScoreInput
from optiinfra.scoring.settings import JudgeSettings

PROMPT_VERSION = "1.0"
NAME = "llm_judge"
MAX_COMPLETION_TOKENS = 200
MAX_TEXT_CHARS = 6000  # of each of context, question and answer sent to the judge
VERDICTS = ("supported", "unsupported", "contradicted")

SYSTEM_PROMPT = (
    "You check answers for factual accuracy. You are given a context (possibly empty), a question and an answer. "
    "Decide whether every claim of the answer is supported by the context (or, when the context is empty, by "
    "well-established facts), and whether its reasoning from those facts is correct. Reply with one JSON object "
    'and nothing else: {"verdict": "supported" | "unsupported" | "contradicted", "score": <number from 0 to 1, '
    'the probability the answer is factually correct>, "reason": "<one short sentence>"}.'
)


def user_prompt(item: ScoreInput) -> str:
    def cut(value: str | None) -> str:
        return (value or "")[:MAX_TEXT_CHARS]

    return f"Context:\n{cut(item.context)}\n\nQuestion:\n{cut(item.prompt)}\n\nAnswer:\n{cut(item.answer)}"


def sampled(record_id: uuid.UUID, rate: float) -> bool:
    """Whether a record is in the judge's sample: a fixed function of its id, so a retried batch picks the same."""
    if rate <= 0:
        return False
    draw = int.from_bytes(hashlib.sha256(b"judge" + record_id.bytes).digest()[:8]) / 2**64
    return draw < rate


def fingerprint(settings: JudgeSettings) -> str | None:
    """What joins the scorer fingerprint when the judge is on: prompt version, model and rate (all change scores)."""
    if not settings.enabled or not settings.base_url:
        return None
    return f"{NAME}@{PROMPT_VERSION}:{settings.model}:{settings.sample_rate:g}"


@dataclass(frozen=True)
class Verdict:
    verdict: str | None
    score: float | None
    reason: str | None
    tokens: int
    error: str | None = None

    def as_metadata(self, settings: JudgeSettings) -> dict[str, Any]:
        return {
            "verdict": self.verdict,
            "score": self.score,
            "reason": self.reason,
            "error": self.error,
            "prompt_version": PROMPT_VERSION,
            "model": settings.model,
            "tokens": self.tokens,
        }


_JSON_OBJECT = re.compile(r"\{.*?\}", re.DOTALL)


def parse_reply(content: str) -> tuple[str, float, str | None]:
    """(verdict, score, reason) from the judge's reply; ValueError if it holds no usable verdict."""
    for candidate in _JSON_OBJECT.findall(content):
        try:
            data = json.loads(candidate)
        except json.JSONDecodeError:
            continue
        if not isinstance(data, dict):
            continue
        verdict = str(data.get("verdict", "")).strip().lower()
        if verdict not in VERDICTS:
            continue
        score = data.get("score")
        if isinstance(score, bool) or not isinstance(score, int | float) or not 0 <= float(score) <= 1:
            score = 1.0 if verdict == "supported" else 0.0
        reason = data.get("reason")
        return verdict, float(score), str(reason)[:500] if reason is not None else None
    raise ValueError("the reply holds no JSON object with a verdict of supported, unsupported or contradicted")


def judge_one(settings: JudgeSettings, item: ScoreInput) -> Verdict:
    """Ask the judge about one answer (outside any transaction); errors come back as a Verdict with `error`."""
    assert settings.base_url is not None
    body = json.dumps(
        {
            "model": settings.model,
            "messages": [
                {"role": "system", "content": SYSTEM_PROMPT},
                {"role": "user", "content": user_prompt(item)},
            ],
            "temperature": 0,
            "max_tokens": MAX_COMPLETION_TOKENS,
        }
    ).encode()
    headers = {"Content-Type": "application/json", "Accept": "application/json"}
    if settings.api_key_env:
        key = os.environ.get(settings.api_key_env)
        if not key:
            return Verdict(None, None, None, 0, f"{settings.api_key_env} is not set in the worker's environment")
        headers["Authorization"] = f"Bearer {key}"
    try:
        response = endpoints.post(
            f"{settings.base_url}/chat/completions", body, headers=headers, timeout=settings.timeout_seconds
        )
    except endpoints.UnsafeEndpointError as error:
        return Verdict(None, None, None, 0, str(error))
    except (httpcore.TimeoutException, httpcore.NetworkError, endpoints.ResponseTooLargeError) as error:
        return Verdict(None, None, None, 0, f"the call failed: {error}")
    if response.status_code != 200:
        return Verdict(None, None, None, 0, f"the endpoint answered {response.status_code}")
    try:
        reply = json.loads(response.body)
        content = reply["choices"][0]["message"]["content"]
        usage = reply.get("usage") or {}
        tokens = int(usage.get("total_tokens") or 0)
    except (ValueError, KeyError, IndexError, TypeError):
        return Verdict(None, None, None, 0, "the endpoint's answer is not a chat completion")
    if not tokens:  # no usage reported: count what was sent and received, about 4 characters a token
        tokens = (len(body) + len(str(content))) // 4
    try:
        verdict, score, reason = parse_reply(str(content))
    except ValueError as error:
        return Verdict(None, None, None, tokens, str(error))
    return Verdict(verdict, score, reason, tokens)


def today() -> str:
    return datetime.now(UTC).date().isoformat()


def judge_batch(settings: JudgeSettings, items: Sequence[ScoreInput]) -> list[Verdict]:
    return [judge_one(settings, item) for item in items]
