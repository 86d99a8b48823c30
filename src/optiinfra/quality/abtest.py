"""A/B tests with quality validation: is a candidate (model version or labelled traffic) at least as good as the
control?

The candidate is **rejected** when it is significantly worse (two-sided tests at the customer's alpha, Holm-adjusted
over the tests) by more than the judge's floors: overall score, p95 latency or hallucination rate. It is
**promoted** when no such harm is found and the 95 % confidence interval of the overall-score difference lies above
-floor (non-inferiority). Otherwise the test is **inconclusive**, with the extra samples per arm needed for the
interval to be that narrow.
"""

from __future__ import annotations

import math
from typing import cast

from sqlalchemy import ColumnElement
from sqlalchemy.orm import Session

from optiinfra.auth.principal import Principal, Role
from optiinfra.models import QualityMetric
from optiinfra.quality import repository
from optiinfra.quality import schemas as quality_schemas
from optiinfra.quality.service import resolve_customer
from optiinfra.quality.settings import settings_of
from optiinfra.quality.statistics import (
    COMPONENTS,
    WindowSummary,
    fisher_rate_increase,
    holm_adjust,
    mann_whitney,
    samples_needed,
    welch_from_summaries,
)


def _condition(arm: quality_schemas.Arm) -> ColumnElement[bool]:
    if arm.model_version is not None:
        return QualityMetric.model_version == arm.model_version
    assert arm.metadata_key is not None
    assert arm.metadata_value is not None
    return cast(ColumnElement[bool], QualityMetric.metadata_[arm.metadata_key].astext == arm.metadata_value)


def _label(arm: quality_schemas.Arm) -> str:
    return f"version {arm.model_version}" if arm.model_version else f"{arm.metadata_key}={arm.metadata_value}"


def _arm_result(label: str, summary: WindowSummary) -> quality_schemas.ArmResult:
    def mean_block(name: str) -> dict[str, float | None]:
        block = summary.components[name]
        return {"n": block.n, "mean": block.mean, "ci95_low": block.ci95_low, "ci95_high": block.ci95_high}

    return quality_schemas.ArmResult(
        label=label,
        count=summary.sample_size,
        overall=mean_block("overall_quality_score"),
        components={name: mean_block(name) for name in COMPONENTS if name != "overall_quality_score"},
        p95_latency_ms=summary.latency_ms.p95,
        hallucination_rate=summary.hallucination.rate,
    )


def run_ab_test(
    session: Session, principal: Principal, request: quality_schemas.ABTestRequest
) -> quality_schemas.ABTestResult:
    principal.require(Role.CUSTOMER, Role.AGENT, Role.OPERATOR)
    customer = resolve_customer(session, principal, request.customer_id)
    settings = settings_of(customer)
    floors = settings.floors
    arms = {}
    for name, arm in (("control", request.control), ("candidate", request.candidate)):
        rows = repository.read_window(
            session,
            customer.id,
            request.model_name,
            start=request.start,
            end=request.end,
            extra_condition=_condition(arm),
        )
        summary = rows.summarize()
        arms[name] = (rows, summary)
    (control_rows, control), (candidate_rows, candidate) = arms["control"], arms["candidate"]
    result_arms = {
        "control": _arm_result(_label(request.control), control),
        "candidate": _arm_result(_label(request.candidate), candidate),
    }
    smallest = min(control.sample_size, candidate.sample_size)
    if smallest < settings.min_samples:
        return quality_schemas.ABTestResult(
            **result_arms,
            tests={},
            verdict="inconclusive",
            reason=f"each arm needs at least {settings.min_samples} records; the smaller has {smallest}",
            extra_samples_needed=settings.min_samples - smallest,
        )

    overall_test = welch_from_summaries(
        candidate.components["overall_quality_score"],
        control.components["overall_quality_score"],
        alternative="two-sided",
    )
    latency_test = (
        mann_whitney(
            [v for v in candidate_rows.latency_ms if v is not None],
            [v for v in control_rows.latency_ms if v is not None],
            alternative="two-sided",
        )
        if candidate.latency_ms.n and control.latency_ms.n
        else None
    )
    hallucination_test = fisher_rate_increase(candidate.hallucination, control.hallucination)
    named = [("overall_quality_score", overall_test), ("hallucination_rate", hallucination_test)]
    if latency_test is not None:
        named.append(("latency_ms", latency_test))
    adjusted = dict(zip([n for n, _ in named], holm_adjust([t.p_value for _, t in named]), strict=True))
    tests = {
        name: {
            "test": t.test,
            "statistic": t.statistic,
            "p_value": t.p_value,
            "p_value_adjusted": adjusted[name],
            "ci95": list(t.ci95) if t.ci95 else None,
        }
        for name, t in named
    }

    control_overall = control.components["overall_quality_score"]
    candidate_overall = candidate.components["overall_quality_score"]
    assert control_overall.mean is not None
    assert candidate_overall.mean is not None
    delta = candidate_overall.mean - control_overall.mean
    harms = []
    if adjusted["overall_quality_score"] < settings.alpha and -delta >= floors.quality_drop_abs:
        harms.append(f"overall score lower by {-delta:.3f}")
    rate_delta = (candidate.hallucination.rate or 0.0) - (control.hallucination.rate or 0.0)
    if adjusted["hallucination_rate"] < settings.alpha and rate_delta >= floors.hallucination_increase_points:
        harms.append(f"hallucination rate higher by {rate_delta:.3f}")
    if latency_test is not None and control.latency_ms.p95 and candidate.latency_ms.p95:
        latency_delta = candidate.latency_ms.p95 - control.latency_ms.p95
        if (
            adjusted["latency_ms"] < settings.alpha
            and latency_delta >= floors.latency_increase_ms
            and latency_delta / control.latency_ms.p95 >= floors.latency_increase_rel
        ):
            harms.append(f"p95 latency higher by {latency_delta:.0f} ms")
    if harms:
        return quality_schemas.ABTestResult(
            **result_arms,
            tests=tests,
            verdict="reject",
            reason="candidate is worse: " + "; ".join(harms),
            extra_samples_needed=0,
        )
    ci = overall_test.ci95
    assert ci is not None
    if ci[0] > -floors.quality_drop_abs:
        return quality_schemas.ABTestResult(
            **result_arms,
            tests=tests,
            verdict="promote",
            reason=f"no harm found; the overall-score difference is at least {ci[0]:.3f} (95 % CI), within the "
            f"-{floors.quality_drop_abs} floor",
            extra_samples_needed=0,
        )
    spread = max(control_overall.std or 0.0, candidate_overall.std or 0.0)
    # Per-arm samples for the interval's lower bound to clear -floor if the true difference is the one seen.
    margin = floors.quality_drop_abs + min(delta, 0.0)
    needed = samples_needed(spread, margin, alpha=0.05, power=0.8) if margin > 0 else math.inf
    extra = 0 if needed == math.inf else max(0, int(needed) - smallest)
    return quality_schemas.ABTestResult(
        **result_arms,
        tests=tests,
        verdict="inconclusive",
        reason="no significant harm, but too few samples to show the candidate is not worse than the floor"
        if needed != math.inf
        else "the observed difference is at the floor: more samples will not settle it",
        extra_samples_needed=extra,
    )
