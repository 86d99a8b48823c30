"""Per-customer quality settings: score weights, the judge's thresholds, and the action policy.

Kept in `customers.metadata["quality_settings"]`; anything not set there takes the defaults below.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from optiinfra.enums import RegressionAction, RegressionSeverity
from optiinfra.quality.scoring import DEFAULT_WEIGHTS
from optiinfra.scoring.settings import ScoringSettings

SETTINGS_KEY = "quality_settings"
# A year: long enough for year-over-year comparisons and imports of last year's records (docs/scale.md).
DEFAULT_RETENTION_DAYS = 365

if TYPE_CHECKING:
    from optiinfra.models import Customer


class Floors(BaseModel):
    """Practical-significance floors: a change must exceed both of its floors to count as a regression."""

    model_config = ConfigDict(extra="forbid")

    quality_drop_abs: float = Field(default=0.05, gt=0, le=1, description="score points a mean must fall")
    quality_drop_rel: float = Field(default=0.05, gt=0, le=1, description="fraction a mean must fall")
    latency_increase_rel: float = Field(default=0.10, gt=0, description="fraction p95/p50 latency must rise")
    latency_increase_ms: float = Field(default=50.0, ge=0, description="milliseconds p95/p50 latency must rise")
    hallucination_increase_points: float = Field(default=0.02, gt=0, le=1, description="rate points the rate must rise")
    hallucination_ratio: float = Field(default=1.5, ge=1, description="factor the rate must be multiplied by")
    toxicity_increase_abs: float = Field(default=0.05, gt=0, le=1, description="points mean toxicity must rise")
    toxicity_ratio: float = Field(default=1.5, ge=1, description="factor mean toxicity must be multiplied by")
    # Continuous monitoring's share metrics (docs/quality.md, "Continuous monitoring").
    toxic_share_points: float = Field(default=0.01, gt=0, le=1, description="points the toxic share must rise")
    toxic_share_ratio: float = Field(default=2.0, ge=1, description="factor the toxic share must be multiplied by")
    low_score_share_points: float = Field(
        default=0.02, gt=0, le=1, description="points the share of low-score answers must rise"
    )
    low_score_share_ratio: float = Field(
        default=2.0, ge=1, description="factor the share of low-score answers must be multiplied by"
    )
    latency_p50_share_points: float = Field(
        default=0.08, gt=0, le=1, description="points the share above the reference median latency must rise"
    )
    latency_p95_share_points: float = Field(
        default=0.02, gt=0, le=1, description="points the share above the reference p95 latency must rise"
    )
    latency_p95_share_ratio: float = Field(
        default=1.6, ge=1, description="factor the share above the reference p95 latency must be multiplied by"
    )


class MonitoringSettings(BaseModel):
    """Continuous monitoring by the worker (and the backtest): looks, windows, budget, incidents, baselines."""

    model_config = ConfigDict(extra="forbid")

    interval_seconds: float = Field(default=60, ge=10, le=3600, description="seconds between the worker's looks")
    windows_minutes: tuple[int, ...] = Field(
        default=(15, 60, 240), min_length=1, max_length=6, description="the overlapping windows judged at each look"
    )
    false_alarms_per_week: float = Field(
        default=0.1, gt=0, le=10, description="budget: expected false regressions per model version per week"
    )
    toxic_threshold: float = Field(default=0.5, gt=0, le=1, description="an answer is toxic at this score or above")
    low_score_quantile: float = Field(
        default=0.02, gt=0, lt=0.5, description="answers below this reference quantile of the score count as low"
    )
    recovery_minutes: int = Field(
        default=60, ge=1, le=10_080, description="an incident resolves after this long without a flag"
    )
    reopen_minutes: int = Field(
        default=360,
        ge=0,
        le=10_080,
        description="a flag this soon after the metric's incident auto-resolved reopens that incident (0: never)",
    )
    auto_baseline: bool = Field(default=True, description="establish and move baselines forward automatically")
    baseline_min_hours: float = Field(default=24, ge=1, le=24 * 28, description="traffic span before the first")
    baseline_min_records: int = Field(default=2000, ge=50, description="records before the first baseline")
    reference_days: int = Field(default=7, ge=1, le=28, description="days of traffic a baseline summarises")
    refresh_hours: float = Field(default=24, ge=1, le=24 * 28, description="age at which a baseline moves forward")
    harm_steps: tuple[float, float, float] = Field(
        default=(1.0, 2.5, 5.0), description="harm (% of request quality lost) where severity is medium, high, critical"
    )
    latency_harm_weight: float = Field(
        default=0.1, ge=0, le=1, description="loss counted for a request pushed above a latency quantile"
    )

    @field_validator("windows_minutes")
    @classmethod
    def _windows_valid(cls, windows: tuple[int, ...]) -> tuple[int, ...]:
        if any(not 1 <= minutes <= 1440 for minutes in windows):
            raise ValueError("windows must be between 1 and 1440 minutes")
        return tuple(sorted(set(windows)))

    @field_validator("harm_steps")
    @classmethod
    def _harm_increase(cls, steps: tuple[float, float, float]) -> tuple[float, float, float]:
        if not (0 < steps[0] <= steps[1] <= steps[2]):
            raise ValueError("harm_steps must be positive and increasing")
        return steps


DEFAULT_POLICY: dict[RegressionSeverity, RegressionAction] = {
    RegressionSeverity.LOW: RegressionAction.ALERT_ONLY,
    RegressionSeverity.MEDIUM: RegressionAction.MANUAL_REVIEW,
    RegressionSeverity.HIGH: RegressionAction.ROLLBACK_TRIGGERED,
    RegressionSeverity.CRITICAL: RegressionAction.ROLLBACK_TRIGGERED,
}


class QualitySettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    weights: dict[str, float] = Field(default_factory=lambda: dict(DEFAULT_WEIGHTS))
    min_samples: int = Field(default=50, ge=10, le=1_000_000, description="smallest window a baseline or verdict uses")
    alpha: float = Field(default=0.01, gt=0, lt=0.5, description="family-wise significance level per window (Holm)")
    floors: Floors = Field(default_factory=lambda: Floors())
    severity_steps: tuple[float, float, float] = Field(
        default=(1.5, 2.0, 3.0),
        description="effect/floor ratios where severity becomes medium, high and critical",
    )
    policy: dict[RegressionSeverity, RegressionAction] = Field(default_factory=lambda: dict(DEFAULT_POLICY))
    monitoring: MonitoringSettings = Field(default_factory=lambda: MonitoringSettings())
    scoring: ScoringSettings = Field(default_factory=lambda: ScoringSettings())
    retention_days: int = Field(
        default=DEFAULT_RETENTION_DAYS,
        ge=1,
        le=3650,
        description="days per-request quality records are kept (by record timestamp); the worker deletes older ones",
    )

    @field_validator("weights")
    @classmethod
    def _weights_complete(cls, weights: dict[str, float]) -> dict[str, float]:
        if set(weights) != set(DEFAULT_WEIGHTS):
            raise ValueError(f"weights must name exactly {sorted(DEFAULT_WEIGHTS)}")
        if any(value < 0 for value in weights.values()) or sum(weights.values()) <= 0:
            raise ValueError("weights must be non-negative and not all zero")
        return weights

    @field_validator("severity_steps")
    @classmethod
    def _steps_increase(cls, steps: tuple[float, float, float]) -> tuple[float, float, float]:
        if not (1 <= steps[0] <= steps[1] <= steps[2]):
            raise ValueError("severity_steps must be increasing and at least 1")
        return steps

    @field_validator("policy")
    @classmethod
    def _policy_complete(
        cls, policy: dict[RegressionSeverity, RegressionAction]
    ) -> dict[RegressionSeverity, RegressionAction]:
        return {**DEFAULT_POLICY, **policy}

    def severity(self, ratio: float) -> RegressionSeverity:
        """Severity from how many times the effect exceeds its floor."""
        medium, high, critical = self.severity_steps
        if ratio >= critical:
            return RegressionSeverity.CRITICAL
        if ratio >= high:
            return RegressionSeverity.HIGH
        if ratio >= medium:
            return RegressionSeverity.MEDIUM
        return RegressionSeverity.LOW


def settings_of(customer: Customer) -> QualitySettings:
    stored: dict[str, Any] = (customer.metadata_ or {}).get(SETTINGS_KEY) or {}
    return QualitySettings.model_validate(stored)


def store_settings(customer: Customer, settings: QualitySettings) -> None:
    customer.metadata_ = {**(customer.metadata_ or {}), SETTINGS_KEY: settings.model_dump(mode="json")}
