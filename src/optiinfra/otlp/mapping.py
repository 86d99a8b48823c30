"""From OTLP spans and log records to quality records and evaluations: pure functions, no database.

The attribute table in docs/otlp.md is this module in prose; keep the two in step.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cached_property
from typing import Any

from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span

from optiinfra.otlp.settings import Component, OtlpSettings
from optiinfra.scoring.messages import texts_of

EVALUATION_EVENT = "gen_ai.evaluation.result"
CUSTOMER_ATTRIBUTE = "optiinfra.customer_id"
PENDING_KEY = "scores_pending"  # metadata key of a record whose evaluations have not arrived yet

# Operations that generate an answer whose quality can be judged; other GenAI operations (embeddings, tools,
# agents) are skipped and counted.
GENERATION_OPERATIONS = frozenset({"chat", "text_completion", "completion", "generate_content", "responses"})
OPENINFERENCE_LLM_KIND = "LLM"

# Each quality field, and the attributes it is read from, first present wins: current GenAI semantic conventions,
# older GenAI names (still sent by OpenLLMetry), OpenLLMetry's own, then OpenInference.
ATTRIBUTE_SOURCES: dict[str, tuple[str, ...]] = {
    "response_id": ("gen_ai.response.id",),
    "request_model": ("gen_ai.request.model", "llm.request.model"),
    "response_model": ("gen_ai.response.model", "llm.response.model", "llm.model_name"),
    "input_tokens": (
        "gen_ai.usage.input_tokens",
        "gen_ai.usage.prompt_tokens",
        "llm.usage.prompt_tokens",
        "llm.token_count.prompt",
    ),
    "output_tokens": (
        "gen_ai.usage.output_tokens",
        "gen_ai.usage.completion_tokens",
        "llm.usage.completion_tokens",
        "llm.token_count.completion",
    ),
    "operation": ("gen_ai.operation.name", "llm.request.type"),
}
INSTANCE_SOURCES = ("server.address", "host.name", "k8s.pod.name")
MAPPED_ATTRIBUTES = frozenset(name for names in ATTRIBUTE_SOURCES.values() for name in names) | frozenset(
    {
        "openinference.span.kind",
        "traceloop.span.kind",
        "server.port",
        "gen_ai.evaluation.name",
        "gen_ai.evaluation.score.value",
        "gen_ai.evaluation.score.label",
        "gen_ai.evaluation.explanation",
    }
)
# Namespaces whose attributes should all be understood; one that is neither mapped nor known to carry nothing a
# quality record holds is reported as not understood (with a count and an example), never dropped silently.
WATCHED_PREFIXES = ("gen_ai.", "llm.", "openinference.", "traceloop.")
# Known, and deliberately not stored: request parameters, message contents (read for the offline scorers, then
# dropped: optiinfra.scoring.messages), provider names, tool definitions.
KNOWN_UNUSED_PREFIXES = (
    "gen_ai.request.",
    "gen_ai.prompt",
    "gen_ai.completion",
    "gen_ai.input.",
    "gen_ai.output.",
    "gen_ai.system",
    "gen_ai.provider.",
    "gen_ai.openai.",
    "gen_ai.tool.",
    "gen_ai.agent.",
    "gen_ai.conversation.",
    "gen_ai.response.finish_reasons",
    "gen_ai.data_source.",
    "gen_ai.embeddings.",
    "gen_ai.choice",
    "llm.input_messages",
    "llm.output_messages",
    "llm.invocation_parameters",
    "llm.tools",
    "llm.provider",
    "llm.system",
    "llm.prompts",
    "llm.prompt_template.",
    "llm.is_streaming",
    "llm.headers",
    "llm.user",
    "llm.request.functions",
    "llm.request.max_tokens",
    "llm.request.temperature",
    "llm.request.top_p",
    "llm.frequency_penalty",
    "llm.presence_penalty",
    "llm.top_k",
    "llm.chat.stop_sequences",
    "llm.request.repetition_penalty",
    "llm.response.finish_reason",
    "llm.response.stop_reason",
    "llm.usage.total_tokens",
    "llm.token_count.total",
    "llm.token_count.prompt_details.",
    "llm.token_count.completion_details.",
    "gen_ai.usage.total_tokens",
    "traceloop.entity.",
    "traceloop.workflow.",
    "traceloop.association.",
    "traceloop.prompt.",
    "traceloop.correlation.",
)

MAX_REPORTED_VALUE = 200  # characters of an example value kept in the report
MAX_REPORTED_NAMES = 500  # distinct names one request adds to the report; the rest are counted together
MAX_NAME_CHARS = 255  # of an attribute or evaluation name kept in the report or on a record


def _clean(text: str) -> str:
    """PostgreSQL text and JSONB refuse NUL; nothing else in a protobuf string needs care."""
    return text.replace("\x00", "") if "\x00" in text else text


def any_value(value: AnyValue) -> Any:
    """An OTLP AnyValue as a plain Python value (bytes as hex)."""
    kind = value.WhichOneof("value")
    if kind == "string_value":
        return _clean(value.string_value)
    if kind == "bool_value":
        return value.bool_value
    if kind == "int_value":
        return value.int_value
    if kind == "double_value":
        return value.double_value
    if kind == "array_value":
        return [any_value(item) for item in value.array_value.values]
    if kind == "kvlist_value":
        return attributes(value.kvlist_value.values)
    if kind == "bytes_value":
        return value.bytes_value.hex()
    return None


def attributes(pairs: Iterable[KeyValue]) -> dict[str, Any]:
    converted: dict[str, Any] = {}
    for pair in pairs:
        value = pair.value
        # Strings are nearly every value: read them without the general dispatch.
        if value.WhichOneof("value") == "string_value":
            text = value.string_value
            converted[_clean(pair.key)] = text.replace("\x00", "") if "\x00" in text else text
        else:
            converted[_clean(pair.key)] = any_value(value)
    return converted


def nanos_to_datetime(nanos: int) -> datetime:
    return datetime.fromtimestamp(nanos / 1e9, tz=UTC)


def span_key(trace_id: str, span_id: str) -> str:
    """The request id of a span without gen_ai.response.id, and the key evaluations find it by."""
    return f"{trace_id}-{span_id}"


@dataclass
class Unmapped:
    """What was not understood, per (kind, name): a count and one example."""

    items: dict[tuple[str, str], list[Any]] = field(default_factory=dict)

    def add(self, kind: str, name: str, example: Any, count: int = 1) -> None:
        name = name[:MAX_NAME_CHARS]
        entry = self.items.get((kind, name))
        if entry is None and len(self.items) >= MAX_REPORTED_NAMES:
            name = "(further names, not listed)"
            entry = self.items.get((kind, name))
        if entry is None:
            text = example if isinstance(example, str) else repr(example)
            self.items[(kind, name)] = [count, text[:MAX_REPORTED_VALUE]]
        else:
            entry[0] += count

    def merge(self, other: Unmapped) -> None:
        for (kind, name), (count, example) in other.items.items():
            self.add(kind, name, example, count)

    def as_json(self) -> dict[str, dict[str, dict[str, Any]]]:
        grouped: dict[str, dict[str, dict[str, Any]]] = {}
        for (kind, name), (count, example) in self.items.items():
            grouped.setdefault(kind, {})[name] = {"count": count, "example": example}
        return grouped


@dataclass(frozen=True)
class Evaluation:
    """One gen_ai.evaluation.result, as a span event or a log record."""

    name: str
    component: Component | None
    score: float | None
    label: str | None
    response_id: str | None
    trace_id: str | None
    span_id: str | None

    @cached_property
    def match_keys(self) -> tuple[str, ...]:
        keys = []
        if self.response_id:
            keys.append(self.response_id)
        if self.trace_id and self.span_id:
            keys.append(span_key(self.trace_id, self.span_id))
        return tuple(keys)

    def as_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "component": self.component,
            "score": self.score,
            "label": self.label,
            "response_id": self.response_id,
            "trace_id": self.trace_id,
            "span_id": self.span_id,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Evaluation:
        return cls(
            name=data["name"],
            component=data.get("component"),
            score=data.get("score"),
            label=data.get("label"),
            response_id=data.get("response_id"),
            trace_id=data.get("trace_id"),
            span_id=data.get("span_id"),
        )


HALLUCINATED_LABELS = frozenset({"hallucinated", "hallucination", "yes", "true", "fail", "failed", "unfaithful"})
NOT_HALLUCINATED_LABELS = frozenset({"factual", "not_hallucinated", "no", "false", "pass", "passed", "faithful"})


def score_fields(evaluation: Evaluation) -> dict[str, Any]:
    """The quality-record fields an understood evaluation sets (empty when its value cannot be used)."""
    if evaluation.component == "hallucination":
        label = (evaluation.label or "").strip().lower()
        if label in HALLUCINATED_LABELS:
            return {"hallucination_detected": True}
        if label in NOT_HALLUCINATED_LABELS:
            return {"hallucination_detected": False}
        if evaluation.score is not None:
            return {"hallucination_detected": evaluation.score >= 0.5}
        return {}
    if evaluation.component is None or evaluation.score is None:
        return {}
    return {f"{evaluation.component}_score": evaluation.score}


def evaluation_problem(evaluation: Evaluation) -> str | None:
    """Why an evaluation cannot be used, or None."""
    if evaluation.component is None:
        return f"evaluation name {evaluation.name!r} is not mapped to a score (map it in the OTLP settings)"
    if not evaluation.match_keys:
        return "the evaluation names no gen_ai.response.id and carries no span context"
    if evaluation.score is not None and not 0.0 <= evaluation.score <= 1.0:
        return f"gen_ai.evaluation.score.value {evaluation.score} is outside [0, 1]"
    if not score_fields(evaluation):
        return "the evaluation has no usable gen_ai.evaluation.score.value or score.label"
    return None


def evaluation_of(
    attrs: Mapping[str, Any], settings: OtlpSettings, *, trace_id: str | None, span_id: str | None
) -> Evaluation:
    name = str(attrs.get("gen_ai.evaluation.name") or "")[:MAX_NAME_CHARS]
    raw_score = attrs.get("gen_ai.evaluation.score.value")
    score = float(raw_score) if isinstance(raw_score, int | float) and not isinstance(raw_score, bool) else None
    label = attrs.get("gen_ai.evaluation.score.label")
    response_id = attrs.get("gen_ai.response.id")
    return Evaluation(
        name=name,
        component=settings.component_of(name) if name else None,
        score=score,
        label=str(label)[:MAX_NAME_CHARS] if label is not None else None,
        response_id=str(response_id)[:MAX_NAME_CHARS] if response_id else None,
        trace_id=trace_id or None,
        span_id=span_id or None,
    )


@dataclass
class MappedSpan:
    """A span that becomes a quality record (raw: still to be validated as a QualityRecord)."""

    record: dict[str, Any]
    match_keys: tuple[str, ...]


@dataclass(frozen=True)
class NotMapped:
    """A span that is not turned into a record: skipped (not an LLM span) or rejected (an LLM span, unusable)."""

    rejected: bool
    reason: str


def _first(attrs: Mapping[str, Any], names: Sequence[str]) -> Any:
    for name in names:
        value = attrs.get(name)
        if value is not None and value != "":
            return value
    return None


def _tokens(value: Any) -> Any:
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str) and value.isdigit():
        return int(value)
    return value


def llm_span_problem(span_attrs: Mapping[str, Any]) -> str | None:
    """None for a span that records an LLM generation; else why it is skipped."""
    operation = _first(span_attrs, ATTRIBUTE_SOURCES["operation"])
    if operation is not None:
        if str(operation) in GENERATION_OPERATIONS:
            return None
        return f"operation {operation} is not an LLM generation"
    kind = span_attrs.get("openinference.span.kind")
    if kind is not None:
        return None if str(kind).upper() == OPENINFERENCE_LLM_KIND else f"OpenInference span kind {kind} is not LLM"
    kind = span_attrs.get("traceloop.span.kind")
    if kind is not None:
        return f"OpenLLMetry span kind {kind} is not an LLM call"
    if (
        _first(span_attrs, ATTRIBUTE_SOURCES["request_model"]) is not None
        or _first(span_attrs, ATTRIBUTE_SOURCES["response_model"]) is not None
    ):
        return None
    return "not a GenAI span (no gen_ai.operation.name, model or LLM span kind)"


def _source(
    source: str,
    *,
    span: Span,
    span_attrs: Mapping[str, Any],
    resource_attrs: Mapping[str, Any],
    request_model: Any,
    response_model: Any,
    operation: Any,
) -> Any:
    if source == "request_model":
        return request_model
    if source == "response_model":
        return response_model
    if source == "span_name":
        return _clean(span.name) or None
    if source == "operation":
        return operation
    value = span_attrs.get(source)
    if value is None or value == "":
        value = resource_attrs.get(source)
    return None if value == "" else value


def report_unmapped(attrs: Mapping[str, Any], unmapped: Unmapped, kind: str = "attribute") -> None:
    """Count every watched attribute that is neither mapped nor known to carry nothing a record needs."""
    for name, value in attrs.items():
        if not name.startswith(WATCHED_PREFIXES) or name in MAPPED_ATTRIBUTES:
            continue
        if name.startswith(KNOWN_UNUSED_PREFIXES):
            continue
        unmapped.add(kind, name, value)


def map_span(
    span: Span,
    span_attrs: Mapping[str, Any],
    resource_attrs: Mapping[str, Any],
    settings: OtlpSettings,
    unmapped: Unmapped,
) -> MappedSpan | NotMapped:
    """One LLM span as a raw quality record (with the evaluations among its events), or why it is not one."""
    skipped = llm_span_problem(span_attrs)
    if skipped is not None:
        return NotMapped(rejected=False, reason=skipped)
    report_unmapped(span_attrs, unmapped)
    trace_id = span.trace_id.hex()
    span_id = span.span_id.hex()
    if not span.end_time_unix_nano:
        return NotMapped(rejected=True, reason="the span has no end time")
    if span.end_time_unix_nano < span.start_time_unix_nano:
        return NotMapped(rejected=True, reason="the span ends before it starts")
    request_model = _first(span_attrs, ATTRIBUTE_SOURCES["request_model"])
    response_model = _first(span_attrs, ATTRIBUTE_SOURCES["response_model"])
    operation = _first(span_attrs, ATTRIBUTE_SOURCES["operation"])

    def pick(sources: Sequence[str]) -> Any:
        for source in sources:
            value = _source(
                source,
                span=span,
                span_attrs=span_attrs,
                resource_attrs=resource_attrs,
                request_model=request_model,
                response_model=response_model,
                operation=operation,
            )
            if value is not None:
                return value
        return None

    model_name = pick(settings.model_name_from)
    if model_name is None:
        return NotMapped(rejected=True, reason="no model name (gen_ai.request.model, gen_ai.response.model)")
    model_version = pick(settings.model_version_from)
    if model_version is None:
        return NotMapped(
            rejected=True,
            reason="no model version from " + ", ".join(settings.model_version_from) + " (set optiinfra.model_version)",
        )
    response_id = _first(span_attrs, ATTRIBUTE_SOURCES["response_id"])
    key = span_key(trace_id, span_id)
    request_id = str(response_id) if response_id else key
    metadata: dict[str, Any] = {"trace_id": trace_id, "span_id": span_id, "source": "otlp"}
    service_name = resource_attrs.get("service.name")
    if service_name:
        metadata["service_name"] = service_name
    if operation is not None:
        metadata["operation"] = operation
    route = pick(settings.route_from)
    if route is not None:
        metadata["route"] = route
    instance = _first(span_attrs, INSTANCE_SOURCES) or _first(resource_attrs, INSTANCE_SOURCES)
    if instance is not None:
        port = span_attrs.get("server.port") if instance == span_attrs.get("server.address") else None
        metadata["instance"] = f"{instance}:{port}" if port else instance
    if response_model is not None and response_model != model_name:
        metadata["response_model"] = response_model
    # optiinfra.* attributes (resource first, the span's win) carry rollout labels such as optimization_id, phase.
    for attrs in (resource_attrs, span_attrs):
        for name, value in attrs.items():
            if name.startswith("optiinfra.") and name != CUSTOMER_ATTRIBUTE and value is not None:
                metadata[name.removeprefix("optiinfra.")] = value
    record: dict[str, Any] = {
        "request_id": request_id,
        "model_name": str(model_name),
        "model_version": str(model_version),
        "timestamp": nanos_to_datetime(span.end_time_unix_nano),
        "latency_ms": (span.end_time_unix_nano - span.start_time_unix_nano) / 1e6,
        "metadata": metadata,
    }
    input_tokens = _first(span_attrs, ATTRIBUTE_SOURCES["input_tokens"])
    if input_tokens is not None:
        record["prompt_tokens"] = _tokens(input_tokens)
    output_tokens = _first(span_attrs, ATTRIBUTE_SOURCES["output_tokens"])
    if output_tokens is not None:
        record["completion_tokens"] = _tokens(output_tokens)
    # Message content, when the application captures it, feeds the offline scorers (docs/scorers.md); the text is
    # kept only until the record is scored.
    texts = texts_of(span_attrs)
    if texts is not None:
        record["prompt"], record["response"] = texts
    keys = (request_id, key) if request_id != key else (key,)
    return MappedSpan(record=record, match_keys=keys)


def span_evaluations(span: Span, settings: OtlpSettings) -> list[Evaluation]:
    """The gen_ai.evaluation.result events of a span (any span: an evaluator may report on another one)."""
    trace_id = span.trace_id.hex()
    span_id = span.span_id.hex()
    return [
        evaluation_of(attributes(event.attributes), settings, trace_id=trace_id, span_id=span_id)
        for event in span.events
        if event.name == EVALUATION_EVENT
    ]
