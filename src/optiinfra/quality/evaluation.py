"""Judging one model version's window against its active baseline, without storing anything.

Shared by detection (which then records and acts) and the quality gate (which only looks).
"""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import ColumnElement
from sqlalchemy.orm import Session

from optiinfra.models import QualityBaseline
from optiinfra.quality import repository
from optiinfra.quality import schemas as quality_schemas
from optiinfra.quality.judge import judge, overall_verdict
from optiinfra.quality.settings import QualitySettings
from optiinfra.quality.statistics import WindowSummary


def baseline_summary(baseline: QualityBaseline) -> WindowSummary:
    return WindowSummary.model_validate(baseline.metadata_)


def evaluate(
    session: Session,
    customer_id: uuid.UUID,
    model_name: str,
    model_version: str,
    window: quality_schemas.BaselineWindow,
    settings: QualitySettings,
    now: datetime,
    *,
    extra_condition: ColumnElement[bool] | None = None,
) -> tuple[QualityBaseline | None, repository.WindowRows, list[quality_schemas.Finding], str]:
    """Judge one window against the active baseline; stores nothing."""
    baseline = repository.active_baseline(session, customer_id, model_name, model_version, now)
    rows = repository.read_window(
        session,
        customer_id,
        model_name,
        model_version=model_version,
        start=window.start,
        end=window.end,
        last_n=window.last_n,
        extra_condition=extra_condition,
    )
    if baseline is None:
        return None, rows, [], "no_baseline"
    current = rows.summarize()
    findings = judge(baseline_summary(baseline), current, rows.latency_ms, settings)
    return baseline, rows, findings, overall_verdict(current, findings, settings)
