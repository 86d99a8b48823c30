"""Per-customer scoring settings, part of the quality settings (`PUT /api/v1/quality/settings`, key `scoring`)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, field_validator

from optiinfra.net.endpoints import UnsafeEndpointError, check_url

# The judge's API key is read from the worker's environment, never stored; only variables with this prefix may be
# named, so a customer cannot have another secret of the worker sent to its endpoint.
JUDGE_KEY_ENV_PATTERN = r"^OPTIINFRA_JUDGE_KEY_[A-Z0-9_]{1,64}$"


class JudgeSettings(BaseModel):
    """The optional LLM judge: an OpenAI-compatible chat completions endpoint that checks a sample of answers for
    factuality against their context (docs/scorers.md, "The LLM judge")."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = False
    base_url: str | None = Field(
        default=None,
        max_length=2048,
        description="the endpoint's base URL, e.g. http://vllm.internal:8000/v1 (/chat/completions is appended)",
    )
    model: str = Field(default="gpt-4o-mini", min_length=1, max_length=200)
    api_key_env: str | None = Field(
        default=None,
        pattern=JUDGE_KEY_ENV_PATTERN,
        description="environment variable of the worker holding the API key (OPTIINFRA_JUDGE_KEY_...)",
    )
    sample_rate: float = Field(default=0.05, ge=0, le=1, description="share of scored records the judge checks")
    max_calls_per_day: int = Field(default=1000, ge=0, le=1_000_000, description="cost cap: calls per UTC day")
    max_tokens_per_day: int = Field(
        default=500_000, ge=0, le=1_000_000_000, description="cost cap: tokens (prompt + completion) per UTC day"
    )
    timeout_seconds: float = Field(default=30, gt=0, le=300)

    @field_validator("base_url")
    @classmethod
    def _safe_endpoint(cls, url: str | None) -> str | None:
        if url is None:
            return None
        try:
            check_url(url)
        except UnsafeEndpointError as error:
            raise ValueError(str(error)) from error
        return url.rstrip("/")


class ScoringSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    enabled: bool = Field(default=True, description="score records sent with text and without scores")
    keep_text: bool = Field(default=False, description="keep the text after scoring, for drill-down")
    text_retention_days: int = Field(
        default=7, ge=1, le=90, description="days text is kept (after scoring when keep_text; else unscored text)"
    )
    judge: JudgeSettings = Field(default_factory=lambda: JudgeSettings())
