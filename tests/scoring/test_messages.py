"""Message content of LLM spans in the three conventions the OTLP ingest reads, as the scorers' prompt and answer."""

from __future__ import annotations

import json

from optiinfra.scoring.messages import texts_of


def test_genai_semantic_convention_messages_with_parts() -> None:
    attrs = {
        "gen_ai.input.messages": json.dumps(
            [
                {"role": "system", "parts": [{"type": "text", "content": "Be brief."}]},
                {"role": "user", "parts": [{"type": "text", "content": "Which planet is the hottest?"}]},
            ]
        ),
        "gen_ai.output.messages": json.dumps(
            [{"role": "assistant", "parts": [{"type": "text", "content": "Venus."}], "finish_reason": "stop"}]
        ),
    }
    assert texts_of(attrs) == ("user: Which planet is the hottest?", "Venus.")


def test_openllmetry_and_openinference_indexed_attributes() -> None:
    openllmetry = {
        "gen_ai.prompt.0.role": "user",
        "gen_ai.prompt.0.content": "Hi",
        "gen_ai.prompt.1.role": "assistant",
        "gen_ai.prompt.1.content": "Hello!",
        "gen_ai.prompt.2.role": "user",
        "gen_ai.prompt.2.content": "Which planet is the hottest?",
        "gen_ai.completion.0.role": "assistant",
        "gen_ai.completion.0.content": "Venus.",
    }
    assert texts_of(openllmetry) == ("user: Hi\nassistant: Hello!\nuser: Which planet is the hottest?", "Venus.")
    openinference = {
        "llm.input_messages.0.message.role": "user",
        "llm.input_messages.0.message.content": "Which planet is the hottest?",
        "llm.output_messages.0.message.role": "assistant",
        "llm.output_messages.0.message.content": "Venus.",
    }
    assert texts_of(openinference) == ("user: Which planet is the hottest?", "Venus.")


def test_a_span_without_content_or_without_an_answer_gives_nothing() -> None:
    assert texts_of({"gen_ai.request.model": "gpt-4o"}) is None
    assert texts_of({"gen_ai.prompt.0.content": "Hi"}) is None
    assert texts_of({"gen_ai.input.messages": "not json", "gen_ai.output.messages": "[]"}) is None
