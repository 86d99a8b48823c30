"""The text of an LLM call from its telemetry, for the scorers: the conversation as the prompt, the first output
message as the response (OTLP spans, when the application captures message content).

Read, in this order of preference:
- the GenAI semantic conventions: `gen_ai.input.messages` / `gen_ai.output.messages` (JSON, messages with `parts`);
- OpenLLMetry: `gen_ai.prompt.{i}.role|content` / `gen_ai.completion.{i}.content`;
- OpenInference: `llm.input_messages.{i}.message.role|content` / `llm.output_messages.{i}.message.content`.

The conversation's last turns are kept within the ingest's limit (the question is at its end); the text is used for
scoring only and dropped after it (docs/scorers.md).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

from optiinfra.quality.schemas import MAX_PROMPT_CHARS, MAX_RESPONSE_CHARS

_INDEXED = {
    "openllmetry_in": re.compile(r"^gen_ai\.prompt\.(\d+)\.(role|content)$"),
    "openllmetry_out": re.compile(r"^gen_ai\.completion\.(\d+)\.(role|content)$"),
    "openinference_in": re.compile(r"^llm\.input_messages\.(\d+)\.message\.(role|content)$"),
    "openinference_out": re.compile(r"^llm\.output_messages\.(\d+)\.message\.(role|content)$"),
}


def _parts_text(message: Any) -> str | None:
    if not isinstance(message, dict):
        return None
    if isinstance(message.get("content"), str):
        return str(message["content"])
    texts = [
        str(part.get("content"))
        for part in message.get("parts") or []
        if isinstance(part, dict) and part.get("type") == "text" and part.get("content") is not None
    ]
    return "\n".join(texts) if texts else None


def _semconv(value: Any) -> list[tuple[str, str]]:
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            return []
    if not isinstance(value, list):
        return []
    out = []
    for message in value:
        text = _parts_text(message)
        if text:
            out.append((str(message.get("role") or "user"), text))
    return out


def _indexed(attrs: Mapping[str, Any], pattern: re.Pattern[str]) -> list[tuple[str, str]]:
    turns: dict[int, dict[str, str]] = {}
    for name, value in attrs.items():
        match = pattern.match(name)
        if match and value is not None:
            turns.setdefault(int(match.group(1)), {})[match.group(2)] = str(value)
    return [(turn.get("role", "user"), turn["content"]) for _, turn in sorted(turns.items()) if turn.get("content")]


def _conversation(turns: list[tuple[str, str]]) -> str:
    text = "\n".join(f"{role}: {content}" for role, content in turns if role != "system")
    return text[-MAX_PROMPT_CHARS:]


def texts_of(attrs: Mapping[str, Any]) -> tuple[str, str] | None:
    """(prompt, response) of an LLM span, or None if it carries no message content."""
    candidates = (
        (_semconv(attrs.get("gen_ai.input.messages")), _semconv(attrs.get("gen_ai.output.messages"))),
        (_indexed(attrs, _INDEXED["openllmetry_in"]), _indexed(attrs, _INDEXED["openllmetry_out"])),
        (_indexed(attrs, _INDEXED["openinference_in"]), _indexed(attrs, _INDEXED["openinference_out"])),
    )
    for inputs, outputs in candidates:
        prompt = _conversation(inputs)
        if prompt and outputs:
            return prompt, outputs[0][1][:MAX_RESPONSE_CHARS]
    return None
