"""The attribute table of docs/otlp.md, row by row, on spans built with opentelemetry-proto (no server)."""

from __future__ import annotations

from typing import Any

import pytest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span

from optiinfra.otlp.mapping import (
    MappedSpan,
    NotMapped,
    Unmapped,
    attributes,
    evaluation_of,
    evaluation_problem,
    map_span,
    score_fields,
)
from optiinfra.otlp.settings import OtlpSettings

START = 1_700_000_000_000_000_000


def _value(value: Any) -> AnyValue:
    if isinstance(value, bool):
        return AnyValue(bool_value=value)
    if isinstance(value, int):
        return AnyValue(int_value=value)
    if isinstance(value, float):
        return AnyValue(double_value=value)
    return AnyValue(string_value=value)


def span(name: str = "chat", duration_ms: float = 250.0, **attrs: Any) -> Span:
    return Span(
        trace_id=bytes(range(16)),
        span_id=bytes(range(8)),
        name=name,
        start_time_unix_nano=START,
        end_time_unix_nano=START + int(duration_ms * 1e6),
        attributes=[KeyValue(key=key.replace("__", "."), value=_value(value)) for key, value in attrs.items()],
    )


def mapped(item: Span, resource: dict[str, Any] | None = None, settings: OtlpSettings | None = None) -> Any:
    unmapped = Unmapped()
    result = map_span(item, attributes(item.attributes), resource or {}, settings or OtlpSettings(), unmapped)
    return result, unmapped


CURRENT = {
    "gen_ai.operation.name": "chat",
    "gen_ai.request.model": "gpt-4o",
    "gen_ai.response.model": "gpt-4o-2024-08-06",
    "gen_ai.response.id": "chatcmpl-1",
    "gen_ai.usage.input_tokens": 10,
    "gen_ai.usage.output_tokens": 4,
}
OLDER_GENAI = {  # GenAI semconv before 1.27, still sent by OpenLLMetry
    "gen_ai.system": "openai",
    "gen_ai.request.model": "gpt-4o",
    "gen_ai.response.model": "gpt-4o-2024-08-06",
    "gen_ai.response.id": "chatcmpl-1",
    "gen_ai.usage.prompt_tokens": 10,
    "gen_ai.usage.completion_tokens": 4,
}
OPENLLMETRY = {
    "llm.request.type": "chat",
    "gen_ai.request.model": "gpt-4o",
    "gen_ai.response.model": "gpt-4o-2024-08-06",
    "gen_ai.response.id": "chatcmpl-1",
    "llm.usage.prompt_tokens": 10,
    "llm.usage.completion_tokens": 4,
    "llm.usage.total_tokens": 14,
}
OPENINFERENCE = {
    "openinference.span.kind": "LLM",
    "llm.model_name": "gpt-4o-2024-08-06",
    "llm.token_count.prompt": 10,
    "llm.token_count.completion": 4,
    "llm.token_count.total": 14,
    "input.value": "question",
    "output.value": "answer",
}


@pytest.mark.parametrize("attrs", [CURRENT, OLDER_GENAI, OPENLLMETRY, OPENINFERENCE], ids=lambda a: next(iter(a)))
def test_each_convention_gives_the_same_record(attrs: dict[str, Any]) -> None:
    result, unmapped = mapped(span(**{k.replace(".", "__"): v for k, v in attrs.items()}))
    assert isinstance(result, MappedSpan)
    record = result.record
    assert (record["prompt_tokens"], record["completion_tokens"]) == (10, 4)
    assert record["model_version"] == "gpt-4o-2024-08-06"
    assert record["latency_ms"] == pytest.approx(250.0)
    assert record["metadata"]["trace_id"] == bytes(range(16)).hex()
    expected_id = "chatcmpl-1" if "gen_ai.response.id" in attrs else f"{bytes(range(16)).hex()}-{bytes(range(8)).hex()}"
    assert record["request_id"] == expected_id
    assert not unmapped.items  # every attribute of these conventions is understood or known


@pytest.mark.parametrize(
    ("attrs", "reason"),
    [
        ({"gen_ai.operation.name": "embeddings", "gen_ai.request.model": "e"}, "operation embeddings"),
        ({"openinference.span.kind": "RETRIEVER"}, "OpenInference span kind RETRIEVER"),
        ({"traceloop.span.kind": "workflow", "gen_ai.request.model": "m"}, "OpenLLMetry span kind workflow"),
        ({"http.route": "/answer"}, "not a GenAI span"),
    ],
)
def test_spans_that_are_not_llm_calls_are_skipped_with_a_reason(attrs: dict[str, Any], reason: str) -> None:
    result, _ = mapped(span(**{k.replace(".", "__"): v for k, v in attrs.items()}))
    assert isinstance(result, NotMapped)
    assert not result.rejected
    assert reason in result.reason


def test_model_version_and_route_follow_the_settings_and_the_resource() -> None:
    item = span(name="chat gpt-4o", **{k.replace(".", "__"): v for k, v in CURRENT.items()})
    resource = {"service.version": "2.3.0", "optiinfra.model_version": "canary-7", "host.name": "node-4"}
    result, _ = mapped(item, resource)
    assert result.record["model_version"] == "canary-7"
    assert result.record["metadata"]["route"] == "chat gpt-4o"
    assert result.record["metadata"]["instance"] == "node-4"
    assert result.record["metadata"]["model_version"] == "canary-7"  # optiinfra.* attributes are kept
    settings = OtlpSettings(model_version_from=["service.version"], route_from=["operation"])
    result, _ = mapped(item, resource, settings)
    assert result.record["model_version"] == "2.3.0"
    assert result.record["metadata"]["route"] == "chat"
    result, _ = mapped(item, {}, OtlpSettings(model_version_from=["service.version"]))
    assert isinstance(result, NotMapped)
    assert result.rejected


def test_unknown_genai_attributes_are_reported_with_an_example() -> None:
    item = span(**{k.replace(".", "__"): v for k, v in CURRENT.items()}, gen_ai__usage__reasoning_tokens=7)
    _, unmapped = mapped(item)
    assert unmapped.as_json() == {"attribute": {"gen_ai.usage.reasoning_tokens": {"count": 1, "example": "7"}}}


@pytest.mark.parametrize(
    ("name", "score", "label", "fields"),
    [
        ("Relevance", 0.8, None, {"relevance_score": 0.8}),
        ("faithfulness", 0.6, None, {"factuality_score": 0.6}),
        ("toxicity", 0.1, None, {"toxicity_score": 0.1}),
        ("hallucination", None, "hallucinated", {"hallucination_detected": True}),
        ("hallucination", 0.2, None, {"hallucination_detected": False}),
        ("hallucination", 0.9, "factual", {"hallucination_detected": False}),
    ],
)
def test_evaluation_names_and_labels_map_to_scores(
    name: str, score: float | None, label: str | None, fields: dict[str, Any]
) -> None:
    attrs: dict[str, Any] = {"gen_ai.evaluation.name": name, "gen_ai.response.id": "r"}
    if score is not None:
        attrs["gen_ai.evaluation.score.value"] = score
    if label is not None:
        attrs["gen_ai.evaluation.score.label"] = label
    evaluation = evaluation_of(attrs, OtlpSettings(), trace_id=None, span_id=None)
    assert evaluation_problem(evaluation) is None
    assert score_fields(evaluation) == fields


def test_unusable_evaluations_say_why() -> None:
    settings = OtlpSettings(evaluation_names={"Answer_Quality": "relevance"})

    def problem(**attrs: Any) -> str | None:
        return evaluation_problem(evaluation_of(attrs, settings, trace_id=None, span_id=None))

    assert "not mapped" in (problem(**{"gen_ai.evaluation.name": "vibes", "gen_ai.response.id": "r"}) or "")
    assert "outside [0, 1]" in (
        problem(
            **{
                "gen_ai.evaluation.name": "answer_quality",
                "gen_ai.evaluation.score.value": 4.0,
                "gen_ai.response.id": "r",
            }
        )
        or ""
    )
    assert "no gen_ai.response.id" in (
        problem(**{"gen_ai.evaluation.name": "relevance", "gen_ai.evaluation.score.value": 0.5}) or ""
    )
    assert (
        problem(
            **{
                "gen_ai.evaluation.name": "answer_quality",
                "gen_ai.evaluation.score.value": 0.5,
                "gen_ai.response.id": "r",
            }
        )
        is None
    )
