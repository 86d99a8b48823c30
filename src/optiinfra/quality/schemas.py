"""Quality metrics, baselines, verdicts, regressions and A/B tests on the wire."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, computed_field, model_validator

from optiinfra.enums import BaselineType, RegressionAction, RegressionSeverity, RegressionType
from optiinfra.listing import ListQuery, Where
from optiinfra.validation import BatchItem, BoundedJson, SaneInstant

MAX_BATCH = 10_000
# metadata key of a record stored before its scores (OTLP evaluations, or the scorers' worker) arrived
SCORES_PENDING_KEY = "scores_pending"
MAX_PROMPT_CHARS = 16_000
MAX_RESPONSE_CHARS = 16_000
MAX_CONTEXT_CHARS = 32_000

Score = Annotated[float, Field(ge=0.0, le=1.0, allow_inf_nan=False)]
Count = Annotated[int, Field(ge=0, le=2_147_483_647)]


class QualityRecord(BaseModel):
    """One LLM request's quality metrics."""

    model_config = ConfigDict(extra="forbid")

    request_id: str = Field(min_length=1, max_length=255)
    model_name: str = Field(min_length=1, max_length=100)
    model_version: str = Field(min_length=1, max_length=50)
    timestamp: SaneInstant
    prompt_tokens: Count | None = None
    completion_tokens: Count | None = None
    latency_ms: Annotated[float, Field(ge=0.0, le=86_400_000, allow_inf_nan=False)] | None = None
    relevance_score: Score | None = None
    coherence_score: Score | None = None
    factuality_score: Score | None = None
    hallucination_detected: bool = False
    toxicity_score: Score | None = None
    overall_quality_score: Score | None = None
    metadata: BoundedJson = Field(default_factory=dict)
    # Text for the application agent's scorers (docs/scorers.md): a record with a prompt and a response and no
    # scores is stored waiting for them, scored by a worker, and its text dropped after (unless kept by setting).
    prompt: str | None = Field(default=None, max_length=MAX_PROMPT_CHARS)
    response: str | None = Field(default=None, max_length=MAX_RESPONSE_CHARS)
    context: str | None = Field(default=None, max_length=MAX_CONTEXT_CHARS)

    @property
    def has_scores(self) -> bool:
        """Whether the record brings a score of its own. A record marked `metadata.scores_pending` (OTLP: stored
        before its evaluations) carries a placeholder overall score, which does not count."""
        overall = None if self.metadata.get(SCORES_PENDING_KEY) else self.overall_quality_score
        components = (self.relevance_score, self.coherence_score, self.factuality_score, self.toxicity_score, overall)
        return any(value is not None for value in components) or self.hallucination_detected

    @property
    def wants_scoring(self) -> bool:
        """Sent with text to score and without scores of its own."""
        return self.prompt is not None and self.response is not None and not self.has_scores


class IngestRequest(BaseModel):
    """A batch of records for one customer. An agent names the customer; a customer's key implies it."""

    model_config = ConfigDict(extra="forbid")

    customer_id: uuid.UUID | None = None
    agent_id: uuid.UUID | None = None
    records: list[BatchItem] = Field(min_length=1, max_length=MAX_BATCH)


class RecordText(BaseModel):
    """A record's text, while it waits for scoring or is kept for drill-down (`scoring.keep_text`)."""

    prompt: str
    response: str
    context: str | None
    scored_at: datetime | None
    expires_at: datetime


class RecordDetail(BaseModel):
    """One stored record with its scores, metadata (scorer versions, raw scores, judge verdict) and kept text."""

    request_id: str
    model_name: str
    model_version: str
    timestamp: datetime
    latency_ms: float | None
    relevance_score: float | None
    coherence_score: float | None
    factuality_score: float | None
    toxicity_score: float | None
    hallucination_detected: bool
    overall_quality_score: float | None
    scores_pending: bool
    metadata: dict[str, Any]
    text: RecordText | None


class QualityIngestResult(BaseModel):
    received: int
    inserted: int
    duplicates: int


IngestResult = QualityIngestResult  # the name inside the package; the API schema's name is unique across modules


class BaselineWindow(BaseModel):
    """Which rows a baseline (or a judged window) is made of: a time range, or the last N records."""

    model_config = ConfigDict(extra="forbid")

    start: SaneInstant | None = None
    end: SaneInstant | None = None
    last_n: int | None = Field(default=None, ge=1, le=1_000_000)

    @model_validator(mode="after")
    def _one_kind(self) -> BaselineWindow:
        if self.last_n is not None and (self.start is not None or self.end is not None):
            raise ValueError("give either a time range (start, end) or last_n, not both")
        if self.start is not None and self.end is not None and self.start >= self.end:
            raise ValueError("start must be before end")
        return self


class BaselineCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    customer_id: uuid.UUID | None = None
    model_name: str = Field(min_length=1, max_length=100)
    model_version: str = Field(min_length=1, max_length=50)
    window: BaselineWindow = Field(default_factory=lambda: BaselineWindow(last_n=1000))
    valid_until: SaneInstant | None = None


class Baseline(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    customer_id: uuid.UUID
    agent_id: uuid.UUID
    model_name: str
    model_version: str
    baseline_type: BaselineType
    sample_size: int
    avg_relevance_score: float | None
    avg_coherence_score: float | None
    avg_factuality_score: float | None
    avg_overall_score: float
    p95_latency_ms: float | None
    established_at: datetime
    valid_until: datetime | None
    metadata: dict[str, Any] = Field(validation_alias=AliasChoices("metadata_", "metadata"))


class DetectRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    customer_id: uuid.UUID | None = None
    model_name: str = Field(min_length=1, max_length=100)
    model_version: str = Field(min_length=1, max_length=50)
    window: BaselineWindow = Field(default_factory=lambda: BaselineWindow(last_n=500))
    dry_run: bool = Field(default=False, description="judge only: record nothing and act on nothing")


Direction = Literal["worse", "better", "unchanged"]


def direction_of(delta_percent: float | None) -> Direction | None:
    """`delta_percent` is signed so that negative is worse whatever the metric (a score that fell, a latency or a
    hallucination rate that rose); `direction` says it in a word."""
    if delta_percent is None:
        return None
    return "worse" if delta_percent < 0 else "better" if delta_percent > 0 else "unchanged"


def change_words(delta_percent: float | None) -> str:
    """The change as people read it, for the dashboard and the CLI: "▼ worse by 12.0 %", "▲ better by 3.0 %"."""
    direction = direction_of(delta_percent)
    if direction is None:
        return ""
    if direction == "unchanged":
        return "unchanged"
    size = abs(delta_percent or 0.0)
    amount = f"over {size:,.0f} %" if size >= 10_000 else f"{size:,.1f} %"
    return f"▼ worse by {amount}" if direction == "worse" else f"▲ better by {amount}"


class Finding(BaseModel):
    """The judge's verdict on one metric."""

    regression_type: RegressionType
    metric_name: str
    verdict: Literal["pass", "regression", "insufficient_data"]
    baseline_value: float | None = None
    current_value: float | None = None
    delta: float | None = None
    delta_percent: float | None = None
    test: str | None = None
    statistic: float | None = None
    p_value: float | None = None
    p_value_adjusted: float | None = None
    ci95: tuple[float, float] | None = None
    floors: dict[str, float] = Field(default_factory=dict)
    floor_ratio: float | None = None
    severity: RegressionSeverity | None = None
    sample_size: int = 0
    note: str | None = Field(default=None, description="why no statistical test ran, when none did")

    @computed_field(description="the change in a word: worse, better or unchanged (delta_percent < 0 is worse)")
    def direction(self) -> Direction | None:
        return direction_of(self.delta_percent)


class Regression(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    customer_id: uuid.UUID
    agent_id: uuid.UUID
    baseline_id: uuid.UUID
    workflow_execution_id: uuid.UUID | None
    model_name: str | None
    model_version: str | None
    regression_type: RegressionType
    severity: RegressionSeverity
    detected_at: datetime
    metric_name: str
    baseline_value: float
    current_value: float
    delta_percent: float
    sample_size: int
    action_taken: RegressionAction
    resolved_at: datetime | None
    resolution_notes: str | None
    metadata: dict[str, Any] = Field(validation_alias=AliasChoices("metadata_", "metadata"))

    @computed_field(description="the change in a word: worse, better or unchanged (delta_percent < 0 is worse)")
    def direction(self) -> Direction | None:
        return direction_of(self.delta_percent)

    created_at: datetime
    updated_at: datetime


class Incident(BaseModel):
    """One incident: the regressions of one model version whose open periods overlap (as the monitoring and its
    alerts group them: the first open regression of a version opens it, others join while it is open)."""

    id: uuid.UUID = Field(description="the id of its first regression")
    customer_id: uuid.UUID
    model_name: str | None
    model_version: str | None
    severity: RegressionSeverity = Field(description="the worst of its regressions'")
    started_at: datetime = Field(description="when its first regression was detected")
    ended_at: datetime | None = Field(description="when its last regression was resolved; None while open")
    window_start: datetime = Field(description="where the records behind it begin (the earliest window read)")
    action_taken: RegressionAction = Field(description="the strongest action taken for any of its regressions")
    rolled_back_optimization_ids: list[str]
    regressions: list[Regression]

    @property
    def is_open(self) -> bool:
        return self.ended_at is None


class IncidentRecord(BaseModel):
    """A record of an incident's window, for the drill-down."""

    model_config = ConfigDict(from_attributes=True)

    request_id: str
    timestamp: datetime
    latency_ms: float | None
    overall_quality_score: float | None
    hallucination_detected: bool | None
    toxicity_score: float | None
    metadata: dict[str, Any] = Field(validation_alias=AliasChoices("metadata_", "metadata"))


class IncidentRecords(BaseModel):
    """One page of an incident window's records, filterable by route and instance."""

    incident: Incident
    start: datetime
    end: datetime
    routes: list[tuple[str, int]]
    instances: list[tuple[str, int]]
    records: list[IncidentRecord]
    next_after: str | None = Field(description="the cursor of the next page; None on the last")


class DetectionReport(BaseModel):
    customer_id: uuid.UUID
    model_name: str
    model_version: str
    baseline_id: uuid.UUID | None
    verdict: Literal["pass", "regression", "insufficient_data", "no_baseline"]
    window: dict[str, Any]
    findings: list[Finding]
    regressions: list[Regression] = Field(default_factory=list)
    resolved: list[Regression] = Field(default_factory=list)
    rolled_back_optimization_id: uuid.UUID | None = None


class ResolveRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    notes: str = Field(min_length=1, max_length=5_000)


class Arm(BaseModel):
    """One arm of an A/B test: a model version, or rows whose metadata has key = value."""

    model_config = ConfigDict(extra="forbid")

    model_version: str | None = Field(default=None, max_length=50)
    metadata_key: str | None = Field(default=None, max_length=100, pattern=r"^[A-Za-z0-9_.-]+$")
    metadata_value: str | None = Field(default=None, max_length=255)

    @model_validator(mode="after")
    def _one_selector(self) -> Arm:
        by_version = self.model_version is not None
        by_label = self.metadata_key is not None and self.metadata_value is not None
        if by_version == by_label:
            raise ValueError("select an arm by model_version, or by metadata_key and metadata_value")
        return self


class ABTestRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    customer_id: uuid.UUID | None = None
    model_name: str = Field(min_length=1, max_length=100)
    control: Arm
    candidate: Arm
    start: SaneInstant | None = None
    end: SaneInstant | None = None


class ArmResult(BaseModel):
    label: str
    count: int
    overall: dict[str, float | None]
    components: dict[str, dict[str, float | None]]
    p95_latency_ms: float | None
    hallucination_rate: float | None


class ABTestResult(BaseModel):
    control: ArmResult
    candidate: ArmResult
    tests: dict[str, dict[str, Any]]
    verdict: Literal["promote", "reject", "inconclusive"]
    reason: str
    extra_samples_needed: int


class RecordsDeletionRequest(BaseModel):
    """Delete one customer's per-request quality records (operators only)."""

    model_config = ConfigDict(extra="forbid")

    customer_id: uuid.UUID


class RecordsDeletion(BaseModel):
    """A deletion of one customer's per-request quality records, carried out by the worker in bounded batches."""

    customer_id: uuid.UUID
    requested_at: datetime = Field(description="records stored until this instant are deleted")
    status: Literal["pending"] = "pending"


class BaselineFilters(ListQuery):
    """GET /quality/baselines: filters of the list."""

    customer_id: uuid.UUID | None = None
    model_name: str | None = None
    model_version: str | None = None


class RegressionFilters(ListQuery):
    """GET /quality/regressions: filters of the list; `open` is whether the regression is unresolved."""

    customer_id: uuid.UUID | None = None
    model_name: str | None = None
    open: Annotated[bool | None, Where("resolved_at", "is null")] = None
