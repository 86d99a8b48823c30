"""Per-customer quality settings: score weights, the judge's thresholds, and the action policy.

Kept in `customers.metadata["quality_settings"]`; anything not set there takes the defaults below.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from optiinfra.models import Customer, RegressionAction, RegressionSeverity
from optiinfra.quality.scoring import DEFAULT_WEIGHTS

SETTINGS_KEY = "quality_settings"


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
