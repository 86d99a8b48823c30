"""The quality gate: an optimization cannot complete while the judge finds a high or critical regression for its
customer since it started, so bad optimizations do not reach production.

It belongs to the optimization lifecycle (which asks quality) rather than to quality (which must not know the
lifecycle): quality sits below recommendations in the layers (docs/architecture.md)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from optiinfra.errors import ConflictError
from optiinfra.models import Customer, Optimization, QualityRegression, RegressionSeverity
from optiinfra.quality import repository
from optiinfra.quality.evaluation import evaluate
from optiinfra.quality.schemas import BaselineWindow
from optiinfra.quality.settings import settings_of

BLOCKING = {RegressionSeverity.HIGH, RegressionSeverity.CRITICAL}


def blocking_findings(
    session: Session, optimization: Optimization, now: datetime | None = None
) -> list[dict[str, Any]]:
    """High or critical regressions of the optimization's customer since it started: recorded ones, and what the
    judge finds now on every model version with data since then."""
    moment = now or datetime.now(UTC)
    since = optimization.started_at or optimization.created_at
    customer = session.get(Customer, optimization.customer_id)
    assert customer is not None
    settings = settings_of(customer)
    blocking: list[dict[str, Any]] = []
    recorded = session.scalars(
        select(QualityRegression).where(
            QualityRegression.customer_id == customer.id,
            QualityRegression.resolved_at.is_(None),
            QualityRegression.detected_at >= since,
            QualityRegression.severity.in_(BLOCKING),
        )
    )
    for regression in recorded:
        blocking.append(
            {
                "source": "recorded",
                "regression_id": str(regression.id),
                "model_name": regression.model_name,
                "model_version": regression.model_version,
                "metric_name": regression.metric_name,
                "severity": str(regression.severity),
            }
        )
    for model_name, model_version in repository.model_versions_since(session, customer.id, since):
        window = BaselineWindow(start=since, end=moment + timedelta(minutes=5))
        _, _, findings, _ = evaluate(session, customer.id, model_name, model_version, window, settings, moment)
        for finding in findings:
            if finding.verdict == "regression" and finding.severity in BLOCKING:
                blocking.append(
                    {
                        "source": "judge",
                        "model_name": model_name,
                        "model_version": model_version,
                        "metric_name": finding.metric_name,
                        "severity": str(finding.severity),
                        "baseline_value": finding.baseline_value,
                        "current_value": finding.current_value,
                        "p_value_adjusted": finding.p_value_adjusted,
                    }
                )
    return blocking


def check_completion(session: Session, optimization: Optimization) -> None:
    """Refuse (409) to complete an optimization while quality has regressed badly since it started."""
    blocking = blocking_findings(session, optimization)
    if blocking:
        raise ConflictError(
            "The quality gate refused completion: the judge found a high or critical quality regression since this "
            "optimization started. Roll it back, or resolve the regression first.",
            details={"verdict": "regression", "blocking": blocking},
        )
