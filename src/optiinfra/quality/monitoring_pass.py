"""The monitoring pass: every model version with recent traffic (or an open incident) judged once, at `now`.

`run_monitoring_pass(factory, now)` is what `optiinfra worker` runs every `interval_seconds`, and what
`optiinfra quality backtest` runs on record time: one code path. Per model version, in its own transaction:

1. the baseline policy (`monitoring.baseline_due`): an initial baseline once the version has enough traffic; the
   automatic baseline moved forward once a day over the healthy part of its last `reference_days`;
2. one aggregate query for all windows, judged against the baseline's reference (`monitoring.judge_pass`);
3. the incident rule (`monitoring.incident_transition`): open once, update while flagged, resolve after a sustained
   recovery; actions by the customer's policy, a rollback only of an attributable change.

Several workers may run at once: a version's pass holds a transaction-scoped advisory lock, and a worker that finds
it held skips that version.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import select, text
from sqlalchemy.orm import Session, sessionmaker

from optiinfra.db.engine import unit_of_work
from optiinfra.events import service as events
from optiinfra.metrics import counters
from optiinfra.models import (
    BaselineType,
    Customer,
    QualityBaseline,
    QualityRegression,
    RegressionAction,
)
from optiinfra.quality import monitoring, monitoring_store, repository
from optiinfra.quality.detection import EVENT_SEVERITY, SEVERITY_ORDER, SYSTEM, Rollback, rollback_if_attributable
from optiinfra.quality.service import build_baseline
from optiinfra.quality.settings import QualitySettings, settings_of

logger = logging.getLogger("optiinfra.worker")
MONITORING_KEY = "monitoring"
SCORER_SET_KEY = "scorer_set"  # the scorers behind a baseline's records (optiinfra.scoring.suite)
BOUNDARY_KEY = "scorer_boundary_at"  # on a baseline ended by a change of scorers: when the new scorers began
SCORER_SINCE_KEY = "scorer_since"  # on a baseline made after such a boundary: the boundary (its refreshes keep it)
_RECENT_VERSIONS = text(
    "WITH RECURSIVE versions AS ("
    " (SELECT customer_id, model_name, model_version FROM quality_metrics"
    "  ORDER BY customer_id, model_name, model_version LIMIT 1)"
    " UNION ALL"
    " SELECT next.customer_id, next.model_name, next.model_version FROM versions AS v CROSS JOIN LATERAL"
    "  (SELECT m.customer_id, m.model_name, m.model_version FROM quality_metrics AS m"
    "   WHERE (m.customer_id, m.model_name, m.model_version) > (v.customer_id, v.model_name, v.model_version)"
    "   ORDER BY m.customer_id, m.model_name, m.model_version LIMIT 1) AS next"
    ") SELECT v.customer_id, v.model_name, v.model_version FROM versions AS v WHERE EXISTS ("
    " SELECT 1 FROM quality_metrics AS m WHERE m.customer_id = v.customer_id AND m.model_name = v.model_name"
    " AND m.model_version = v.model_version AND m.timestamp >= :since AND m.timestamp < :now)"
    " UNION SELECT r.customer_id, r.model_name, r.model_version FROM quality_regressions AS r"
    " WHERE r.resolved_at IS NULL AND r.model_name IS NOT NULL AND r.model_version IS NOT NULL"
)
SCAN_MINUTES = 240  # versions with records this recent (the longest default window) are judged at each pass


@dataclass
class PassReport:
    judged: int = 0
    skipped_busy: int = 0
    baselines: int = 0
    regressions: int = 0
    updated: int = 0
    resolved: int = 0
    reopened: int = 0
    rollbacks: int = 0
    verdicts: dict[str, int] = field(default_factory=dict)


def model_versions_to_judge(session: Session, now: datetime) -> list[tuple[uuid.UUID, str, str]]:
    """Versions with records in the last SCAN_MINUTES before `now`, and versions with an open incident.

    The versions are enumerated by a skip scan of the (customer, model, version, timestamp) index, then each is
    checked for recent records on the same index: the cost grows with the number of versions, not of rows. One
    query (one round trip) for both."""
    rows = session.execute(_RECENT_VERSIONS, {"since": now - timedelta(minutes=SCAN_MINUTES), "now": now}).all()
    return sorted({(row[0], str(row[1]), str(row[2])) for row in rows})


@dataclass
class MonitoringCache:
    """What passes may keep between them: what they read of each baseline's metadata (written once, when the
    baseline is established; the pass then reads the baseline's row without it), and, for a replay of data that no
    longer changes, the windows' read-ahead."""

    windows: monitoring_store.WindowCache | None = None

    facts: dict[uuid.UUID, _BaselineFacts] = field(default_factory=dict)

    def of(self, baseline: QualityBaseline) -> _BaselineFacts:
        found = self.facts.get(baseline.id)
        if found is None:
            if len(self.facts) > 10_000:
                self.facts.clear()
            found = _BaselineFacts.of(baseline)
            self.facts[baseline.id] = found
        return found


@dataclass(frozen=True)
class _BaselineFacts:
    """What monitoring reads of a baseline's metadata (written once, when the baseline is established)."""

    reference: monitoring.Reference | None  # None: made before monitoring existed, or by the demo data
    automatic: bool

    @staticmethod
    def of(baseline: QualityBaseline) -> _BaselineFacts:
        data = baseline.metadata_
        reference = monitoring.Reference.from_json(data[MONITORING_KEY]) if MONITORING_KEY in data else None
        return _BaselineFacts(reference, data.get("policy") == "automatic")


def run_monitoring_pass(
    factory: sessionmaker[Session],
    now: datetime | None = None,
    *,
    rollback: Rollback,
    cache: MonitoringCache | None = None,
    session: Session | None = None,
) -> PassReport:
    """Judge every model version once at `now` (default: the current time). Each version in its own transaction,
    or, when the caller gives its `session` (the backtest, which batches many passes in one transaction), in that
    session's transaction."""
    moment = now or datetime.now(UTC)
    if session is not None:
        keys = model_versions_to_judge(session, moment)
        return _judge_keys(keys, lambda: nullcontext(session), moment, rollback, cache)
    with unit_of_work(factory) as reading:
        keys = model_versions_to_judge(reading, moment)
    return _judge_keys(keys, lambda: unit_of_work(factory), moment, rollback, cache)


def _judge_keys(
    keys: list[tuple[uuid.UUID, str, str]],
    transaction: Callable[[], AbstractContextManager[Session]],
    moment: datetime,
    rollback: Rollback,
    cache: MonitoringCache | None,
) -> PassReport:
    report = PassReport()
    for customer_id, model_name, model_version in keys:
        with transaction() as session:
            if not _lock(session, f"quality-monitor:{customer_id}:{model_name}:{model_version}"):
                report.skipped_busy += 1
                continue
            verdict = monitor_version(session, customer_id, model_name, model_version, moment, rollback, report, cache)
            labels = {"source": "worker", "verdict": verdict}
            counters.add(session, "optiinfra_detection_passes", labels, customer_id=customer_id)
        report.judged += 1
        report.verdicts[verdict] = report.verdicts.get(verdict, 0) + 1
        logger.info("%s %s %s: %s", customer_id, model_name, model_version, verdict)
    return report


def _lock(session: Session, key: str) -> bool:
    """The version's transaction-scoped advisory lock, asked of PostgreSQL once per transaction (a caller that
    batches several passes in one transaction already holds it from the first)."""
    transaction = session.get_transaction()
    held: tuple[Any, set[str]] | None = session.info.get("monitoring_locks")
    if held is None or held[0] is not transaction:
        held = (transaction, set())
        session.info["monitoring_locks"] = held
    if key in held[1]:
        return True
    if not repository.lock_key(session, key):
        return False
    held[1].add(key)
    return True


_UNREAD: Any = object()


@dataclass
class _VersionMemo:
    """What this transaction has read of a version, and keeps up to date with its own writes: a caller batching
    passes in one transaction (the backtest) reads it once; the worker's transaction (one version, one pass) reads
    it once anyway. Within a transaction the incident rows are locked (FOR UPDATE), so no other worker changes them.
    """

    baseline: Any = _UNREAD  # QualityBaseline | None once read
    incidents: dict[str, QualityRegression] | None = None


def _memo(session: Session, key: tuple[uuid.UUID, str, str]) -> _VersionMemo:
    transaction = session.get_transaction()
    held: tuple[Any, dict[tuple[uuid.UUID, str, str], _VersionMemo]] | None = session.info.get("monitoring_memo")
    if held is None or held[0] is not transaction:
        held = (transaction, {})
        session.info["monitoring_memo"] = held
    return held[1].setdefault(key, _VersionMemo())


def _still_active(baseline: QualityBaseline | None, now: datetime) -> bool:
    """Whether the baseline read earlier in this transaction is still the active one at `now`. The monitoring
    establishes and expires a version's baselines only under the version's lock; a manual baseline set meanwhile is
    seen by the next transaction (the worker's next pass; the backtest's scratch database has no other writer)."""
    return baseline is None or baseline.valid_until is None or baseline.valid_until > now


def _open_incidents(
    session: Session, customer_id: uuid.UUID, model_name: str, model_version: str
) -> dict[str, QualityRegression]:
    rows = session.scalars(
        select(QualityRegression)
        .where(
            QualityRegression.customer_id == customer_id,
            QualityRegression.model_name == model_name,
            QualityRegression.model_version == model_version,
            QualityRegression.resolved_at.is_(None),
        )
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    return {row.metric_name: row for row in rows}


def _incident_spans(
    session: Session, customer_id: uuid.UUID, model_name: str, model_version: str, since: datetime
) -> list[tuple[datetime, datetime | None]]:
    rows = session.execute(
        select(QualityRegression.detected_at, QualityRegression.resolved_at).where(
            QualityRegression.customer_id == customer_id,
            QualityRegression.model_name == model_name,
            QualityRegression.model_version == model_version,
            (QualityRegression.resolved_at.is_(None)) | (QualityRegression.resolved_at >= since),
        )
    ).all()
    return [(row[0], row[1]) for row in rows]


def _establish(
    session: Session,
    customer_id: uuid.UUID,
    model_name: str,
    model_version: str,
    now: datetime,
    settings: QualitySettings,
    kind: str,
    boundary: datetime | None = None,
) -> QualityBaseline | None:
    """An automatic baseline at `now` by the documented policy (None if the healthy records are too few); with a
    scorer boundary, only records from it on (scored by the current scorers) make the baseline."""
    config = settings.monitoring
    since = now - timedelta(days=config.reference_days)
    if boundary is not None:
        since = max(since, boundary)
    spans = monitoring.excluded_spans(
        _incident_spans(session, customer_id, model_name, model_version, since), now, settings
    )
    reference = monitoring_store.reference_from_db(
        session,
        customer_id,
        model_name,
        model_version,
        since,
        now,
        spans,
        low_quantile=config.low_score_quantile,
        toxic_threshold=config.toxic_threshold,
        min_records=config.baseline_min_records,
    )
    if reference is None:
        return None
    # The whole-window summary the per-window judge (detect, quality gate) compares with: the last 5,000 records.
    rows = repository.read_window(
        session, customer_id, model_name, model_version=model_version, start=boundary, end=now, last_n=5000
    )
    if all(overall is None for overall in rows.overall):
        return None  # only records whose evaluations have not arrived (OTLP): no score to summarise yet
    latest = repository.latest_baseline(session, customer_id, model_name, model_version)
    if latest is None:
        baseline_type = BaselineType.INITIAL
    elif repository.rollback_since(session, customer_id, model_name, model_version, latest.established_at):
        baseline_type = BaselineType.ROLLBACK
    else:
        baseline_type = BaselineType.UPDATED
    repository.expire_baselines(session, customer_id, model_name, model_version, now)
    assert rows.agent_id is not None  # the window holds records (checked above)
    baseline = build_baseline(
        customer_id=customer_id,
        agent_id=rows.agent_id,
        model_name=model_name,
        model_version=model_version,
        baseline_type=baseline_type,
        rows=rows,
        established_at=now,
        valid_until=None,
        window={"start": reference.start, "end": reference.end, "last_n": None},
        reference=reference,
        policy="automatic",
    )
    baseline.metadata_ = {
        **baseline.metadata_,
        "excluded_spans": [[a.isoformat(), b.isoformat()] for a, b in spans],
        SCORER_SET_KEY: monitoring_store.current_scorer_set(session, customer_id, model_name, model_version, now)[1],
        **({SCORER_SINCE_KEY: boundary.isoformat()} if boundary is not None else {}),
    }
    session.add(baseline)
    session.flush()
    events.record(
        session,
        event_type="quality.baseline_established",
        actor=SYSTEM,
        customer_id=customer_id,
        agent_id=baseline.agent_id,
        subject={"baseline_id": str(baseline.id), "model_name": model_name, "model_version": model_version},
        after={
            "baseline_type": str(baseline.baseline_type),
            "policy": f"automatic ({kind})",
            "reference_records": reference.records,
            "reference_days": reference.days,
        },
    )
    return baseline


def _scorer_boundary(
    session: Session,
    customer_id: uuid.UUID,
    model_name: str,
    model_version: str,
    baseline: QualityBaseline | None,
    now: datetime,
    settings: QualitySettings,
) -> tuple[QualityBaseline | None, datetime | None]:
    """A change of scorers is a baseline boundary: (the baseline still in force, the boundary if one is open).

    When the version's newest scored records were scored by other scorers (another version, or the customer's own
    scores against ours) than the active baseline summarises, that baseline ends now, with the time the new scorers'
    first record was seen as the boundary; no verdict is given until the policy establishes a new baseline from
    records after the boundary only (`baseline_min_hours` and `baseline_min_records` of them). So a scorer upgrade
    never reads as a model regression, nor hides one behind a shifted scale."""
    if baseline is None:
        latest = repository.latest_baseline(session, customer_id, model_name, model_version)
        if latest is not None and BOUNDARY_KEY in latest.metadata_:
            return None, datetime.fromisoformat(latest.metadata_[BOUNDARY_KEY])
        return None, None
    found, current = monitoring_store.current_scorer_set(session, customer_id, model_name, model_version, now)
    summarised = baseline.metadata_.get(SCORER_SET_KEY)
    if not found or current == summarised:
        # A baseline made after a boundary keeps it, so its refreshes never reach back before the boundary.
        since = baseline.metadata_.get(SCORER_SINCE_KEY)
        return baseline, datetime.fromisoformat(since) if since else None
    since = baseline.established_at - timedelta(days=settings.monitoring.reference_days)
    boundary = (
        monitoring_store.first_scored_by(session, customer_id, model_name, model_version, current, since, now) or now
    )
    baseline.valid_until = now
    baseline.metadata_ = {**baseline.metadata_, BOUNDARY_KEY: boundary.isoformat(), "next_scorer_set": current}
    events.record(
        session,
        event_type="quality.baseline_ended",
        actor=SYSTEM,
        customer_id=customer_id,
        agent_id=baseline.agent_id,
        subject={"baseline_id": str(baseline.id), "model_name": model_name, "model_version": model_version},
        before={SCORER_SET_KEY: summarised},
        after={SCORER_SET_KEY: current, "boundary": boundary.isoformat()},
        extra={"reason": "the scorers changed: a new baseline is established from records after the boundary"},
    )
    return None, boundary


def monitor_version(
    session: Session,
    customer_id: uuid.UUID,
    model_name: str,
    model_version: str,
    now: datetime,
    rollback: Rollback,
    report: PassReport | None = None,
    cache: MonitoringCache | None = None,
) -> str:
    """One version's monitoring at `now` (the caller holds its lock); returns the pass's verdict. An incident whose
    policy is rollback rolls back, with `rollback` (the optimization lifecycle's, given by the edge that runs the
    pass), the optimization its window's evidence names."""
    report = report if report is not None else PassReport()
    customer = session.get(Customer, customer_id)
    if customer is None:
        return "no_customer"
    # Kept in the session's identity map for the session's life: a caller batching passes reads it once.
    session.info.setdefault("monitoring_customers", {})[customer_id] = customer
    settings = settings_of(customer)
    memo = _memo(session, (customer_id, model_name, model_version))
    if memo.baseline is _UNREAD or not _still_active(memo.baseline, now):
        memo.baseline = repository.active_baseline(
            session, customer_id, model_name, model_version, now, with_metadata=cache is None
        )
    baseline = memo.baseline
    facts = _BaselineFacts.of(baseline) if baseline is not None and cache is None else None
    if baseline is not None and cache is not None:
        facts = cache.of(baseline)
    if memo.incidents is None:
        memo.incidents = _open_incidents(session, customer_id, model_name, model_version)
    incidents = memo.incidents
    ended, boundary = _scorer_boundary(session, customer_id, model_name, model_version, baseline, now, settings)
    if baseline is not None and ended is None:
        baseline = memo.baseline = None
        facts = None
    # A baseline without the monitoring's reference (made before it existed, or by the demo data) counts as none.
    usable = baseline if facts is not None and facts.reference is not None else None
    first, count = (None, 0)
    if usable is None:
        first, count = monitoring_store.traffic_stats(
            session,
            customer_id,
            model_name,
            model_version,
            now,
            cap=settings.monitoring.baseline_min_records,
            since=boundary,
        )
    due = monitoring.baseline_due(
        established_at=usable.established_at if usable else None,
        automatic=bool(facts and facts.automatic),
        open_incidents=len(incidents),
        first_record_at=first,
        records=count,
        now=now,
        settings=settings,
    )
    if due is not None:
        established = _establish(session, customer_id, model_name, model_version, now, settings, due, boundary)
        if established is not None:
            baseline = memo.baseline = established
            facts = cache.of(baseline) if cache is not None else _BaselineFacts.of(baseline)
            report.baselines += 1
    if baseline is None or facts is None or facts.reference is None:
        return "no_baseline"
    reference = facts.reference
    windows = monitoring_store.window_cells(
        session,
        customer_id,
        model_name,
        model_version,
        now,
        settings.monitoring.windows_minutes,
        reference.thresholds,
        settings.monitoring.toxic_threshold,
        cache.windows if cache else None,
    )
    verdicts = monitoring.judge_pass(reference, windows, settings, now)
    wants_rollback: list[QualityRegression] = []
    flagged_windows: list[monitoring.MetricVerdict] = []
    for verdict in verdicts:
        if verdict.verdict == "insufficient_data":
            continue
        existing = incidents.get(verdict.metric)
        last_flagged = _last_flagged(existing)
        transition = monitoring.incident_transition(
            existing is not None, last_flagged, verdict.verdict == "regression", now, settings
        )
        if transition == "open":
            previous = _latest_resolved(session, customer_id, model_name, model_version, verdict.metric)
            if previous is not None and monitoring.reopens(_auto_resolved_at(previous), now, settings):
                transition, existing = "reopen", previous
        if transition == "open":
            regression = incidents[verdict.metric] = _open(
                session, customer_id, model_name, model_version, baseline, verdict, now
            )
            report.regressions += 1
        elif transition == "reopen" and existing is not None:
            regression = incidents[verdict.metric] = _reopen(session, existing, baseline, verdict, now)
            report.reopened += 1
        elif transition == "update" and existing is not None:
            regression = _update(session, existing, baseline, verdict, now)
            report.updated += 1
        elif transition == "resolve" and existing is not None:
            _resolve(session, existing, now, settings)
            del incidents[verdict.metric]
            report.resolved += 1
            continue
        else:
            continue
        flagged_windows.append(verdict)
        action = settings.policy[regression.severity]
        if regression.action_taken is RegressionAction.ROLLBACK_TRIGGERED:
            continue
        if action is RegressionAction.ROLLBACK_TRIGGERED:
            wants_rollback.append(regression)  # only if attributable; else manual review
        else:
            regression.action_taken = action
    if wants_rollback:
        worst = max(wants_rollback, key=lambda r: SEVERITY_ORDER.index(r.severity))
        longest = max(v.window_minutes or 0 for v in flagged_windows)
        rolled_back = rollback_if_attributable(
            session, customer_id, wants_rollback, worst, now - timedelta(minutes=longest), now, rollback
        )
        report.rollbacks += rolled_back is not None
    session.flush()
    return monitoring.overall(verdicts)


def _latest_resolved(
    session: Session, customer_id: uuid.UUID, model_name: str, model_version: str, metric: str
) -> QualityRegression | None:
    """The metric's most recently resolved incident (asked only when the metric is flagged with none open)."""
    return session.scalars(
        select(QualityRegression)
        .where(
            QualityRegression.customer_id == customer_id,
            QualityRegression.model_name == model_name,
            QualityRegression.model_version == model_version,
            QualityRegression.metric_name == metric,
            QualityRegression.resolved_at.is_not(None),
        )
        .order_by(QualityRegression.resolved_at.desc())
        .limit(1)
        .with_for_update()
    ).first()


def _auto_resolved_at(regression: QualityRegression) -> datetime | None:
    """When the incident rule resolved it (None if a person did: their judgement stands, a recurrence is new)."""
    return regression.resolved_at if regression.metadata_.get("resolved_by") == "monitoring" else None


def _last_flagged(regression: QualityRegression | None) -> datetime | None:
    if regression is None:
        return None
    value = regression.metadata_.get("last_flagged_at")
    return datetime.fromisoformat(value) if value else regression.detected_at


def _values(verdict: monitoring.MetricVerdict) -> dict[str, Any]:
    assert verdict.observed is not None
    assert verdict.expected is not None
    assert verdict.effect is not None
    percent = 100.0 * verdict.effect / abs(verdict.expected) if verdict.expected else 10_000.0
    return {
        "baseline_value": verdict.expected,
        "current_value": verdict.observed,
        "delta_percent": -min(percent, 10_000.0),  # negative is worse
        "sample_size": verdict.n,
    }


def _open(
    session: Session,
    customer_id: uuid.UUID,
    model_name: str,
    model_version: str,
    baseline: QualityBaseline,
    verdict: monitoring.MetricVerdict,
    now: datetime,
) -> QualityRegression:
    assert verdict.severity is not None
    regression = QualityRegression(
        agent_id=baseline.agent_id,
        customer_id=customer_id,
        model_name=model_name,
        model_version=model_version,
        baseline_id=baseline.id,
        regression_type=verdict.regression_type,
        metric_name=verdict.metric,
        detected_at=now,
        severity=verdict.severity,
        action_taken=RegressionAction.ALERT_ONLY,
        metadata_={
            "source": "monitoring",
            "evidence": verdict.evidence(),
            "first_evidence": verdict.evidence(),
            "last_flagged_at": now.isoformat(),
            "detections": 1,
            "harm": verdict.harm,
        },
        **_values(verdict),
    )
    session.add(regression)
    session.flush()
    _event(session, "quality.regression_detected", regression, verdict)
    return regression


def _update(
    session: Session,
    regression: QualityRegression,
    baseline: QualityBaseline,
    verdict: monitoring.MetricVerdict,
    now: datetime,
) -> QualityRegression:
    assert verdict.severity is not None
    worse = SEVERITY_ORDER.index(verdict.severity) > SEVERITY_ORDER.index(regression.severity)
    if worse:
        regression.severity = verdict.severity
    for name, value in _values(verdict).items():
        setattr(regression, name, value)
    regression.baseline_id = baseline.id
    regression.metadata_ = {
        **regression.metadata_,
        "evidence": verdict.evidence(),
        "last_flagged_at": now.isoformat(),
        "detections": int(regression.metadata_.get("detections", 1)) + 1,
        "harm": max(float(regression.metadata_.get("harm") or 0.0), verdict.harm or 0.0),
    }
    if worse:
        _event(session, "quality.regression_updated", regression, verdict)
    return regression


def _reopen(
    session: Session,
    regression: QualityRegression,
    baseline: QualityBaseline,
    verdict: monitoring.MetricVerdict,
    now: datetime,
) -> QualityRegression:
    """The recurrence rule: the same incident again, not a new one (`reopened` counts, `reopened_at` lists when)."""
    assert regression.resolved_at is not None
    regression.metadata_ = {
        **regression.metadata_,
        "reopened": int(regression.metadata_.get("reopened", 0)) + 1,
        "reopened_at": [*regression.metadata_.get("reopened_at", []), now.isoformat()],
        "previously_resolved_at": [
            *regression.metadata_.get("previously_resolved_at", []),
            regression.resolved_at.isoformat(),
        ],
        "resolved_by": None,
    }
    regression.resolved_at = None
    regression.resolution_notes = None
    session.flush()  # the partial unique index sees one open incident of the metric, this one
    _update(session, regression, baseline, verdict, now)
    _event(session, "quality.regression_reopened", regression, verdict)
    return regression


def _resolve(session: Session, regression: QualityRegression, now: datetime, settings: QualitySettings) -> None:
    regression.resolved_at = now
    regression.metadata_ = {**regression.metadata_, "resolved_by": "monitoring"}
    regression.resolution_notes = (
        f"Auto-resolved: no window flagged {regression.metric_name} for "
        f"{settings.monitoring.recovery_minutes} minutes (sustained recovery)."
    )
    events.record(
        session,
        event_type="quality.regression_resolved",
        actor=SYSTEM,
        customer_id=regression.customer_id,
        agent_id=regression.agent_id,
        subject={"regression_id": str(regression.id), "metric_name": regression.metric_name},
        before={"resolved": False},
        after={"resolved": True},
        extra={"notes": regression.resolution_notes},
    )


def _event(session: Session, event_type: str, regression: QualityRegression, verdict: monitoring.MetricVerdict) -> None:
    events.record(
        session,
        event_type=event_type,
        actor=SYSTEM,
        customer_id=regression.customer_id,
        agent_id=regression.agent_id,
        severity=EVENT_SEVERITY[regression.severity],
        subject={
            "regression_id": str(regression.id),
            "model_name": regression.model_name,
            "model_version": regression.model_version,
            "metric_name": regression.metric_name,
        },
        after={
            "severity": str(regression.severity),
            "expected": verdict.expected,
            "observed": verdict.observed,
            "z": verdict.z,
            "window_minutes": verdict.window_minutes,
            "harm": verdict.harm,
        },
    )
