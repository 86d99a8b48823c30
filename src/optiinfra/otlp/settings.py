"""Per-customer OTLP mapping settings: where model name, version and route come from, and evaluation names.

Kept in `customers.metadata["otlp_settings"]`, like the quality settings; anything not set takes the defaults.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

if TYPE_CHECKING:
    from optiinfra.models import Customer


SETTINGS_KEY = "otlp_settings"

Component = Literal["relevance", "coherence", "factuality", "hallucination", "toxicity"]

# Evaluation names understood without configuration (compared case-insensitively).
DEFAULT_EVALUATION_NAMES: dict[str, Component] = {
    "relevance": "relevance",
    "answer_relevance": "relevance",
    "answer_relevancy": "relevance",
    "coherence": "coherence",
    "factuality": "factuality",
    "factual_accuracy": "factuality",
    "faithfulness": "factuality",
    "groundedness": "factuality",
    "hallucination": "hallucination",
    "hallucinations": "hallucination",
    "toxicity": "toxicity",
}

# Sources name an attribute (looked up on the span, then on the resource) or one of these symbols.
SYMBOLS = ("request_model", "response_model", "span_name", "operation")
Source = str


def _check_sources(sources: list[str]) -> list[str]:
    for source in sources:
        if not source or len(source) > 255 or any(not (c.isalnum() or c in "._-") for c in source):
            raise ValueError(f"{source!r} is not an attribute name or one of {', '.join(SYMBOLS)}")
    return sources


class OtlpSettings(BaseModel):
    """How spans become quality records for one customer."""

    model_config = ConfigDict(extra="forbid")

    model_name_from: list[Source] = Field(
        default_factory=lambda: ["optiinfra.model_name", "request_model", "response_model"],
        min_length=1,
        max_length=20,
        description="first source with a value gives model_name",
    )
    model_version_from: list[Source] = Field(
        default_factory=lambda: ["optiinfra.model_version", "response_model", "service.version"],
        min_length=1,
        max_length=20,
        description="first source with a value gives model_version",
    )
    route_from: list[Source] = Field(
        default_factory=lambda: ["optiinfra.route", "gen_ai.prompt.name", "traceloop.prompt.key", "span_name"],
        min_length=1,
        max_length=20,
        description="first source with a value gives metadata.route",
    )
    evaluation_names: dict[str, Component] = Field(
        default_factory=dict,
        max_length=200,
        description="your evaluation names (case-insensitive) mapped to a score; added to the built-in names",
    )

    @field_validator("model_name_from", "model_version_from", "route_from")
    @classmethod
    def _sources(cls, sources: list[str]) -> list[str]:
        return _check_sources(sources)

    @field_validator("evaluation_names")
    @classmethod
    def _names(cls, names: dict[str, Component]) -> dict[str, Component]:
        for name in names:
            if not name or len(name) > 255:
                raise ValueError("evaluation names are 1 to 255 characters")
        return {name.lower(): component for name, component in names.items()}

    def component_of(self, evaluation_name: str) -> Component | None:
        """The score an evaluation name maps to, or None when it is not understood."""
        key = evaluation_name.lower()
        return self.evaluation_names.get(key) or DEFAULT_EVALUATION_NAMES.get(key)


def otlp_settings_of(customer: Customer) -> OtlpSettings:
    stored: dict[str, Any] = (customer.metadata_ or {}).get(SETTINGS_KEY) or {}
    return OtlpSettings.model_validate(stored)


def store_otlp_settings(customer: Customer, settings: OtlpSettings) -> None:
    customer.metadata_ = {**(customer.metadata_ or {}), SETTINGS_KEY: settings.model_dump(mode="json")}
