"""Continuous monitoring (issue 11) on the project's traffic simulator with fixed seeds: shorter runs of the
benchmark's targets (benchmarks/monitoring_targets.py), the incident rule, and the agreement of the worker's SQL
aggregates with the benchmarks' numpy ones."""

from __future__ import annotations

import math
from datetime import timedelta

import numpy as np
import pytest
from scipy import stats
from sqlalchemy.orm import Session

from optiinfra.enums import AgentType, RegressionSeverity
from optiinfra.quality import monitoring, monitoring_store
from optiinfra.quality.monitoring import Cells, judge_pass, z_threshold
from optiinfra.quality.replay import columns_of, reference_at, replay
from optiinfra.quality.service import ingest
from optiinfra.quality.settings import QualitySettings
from optiinfra.quality.traffic import Effect, TrafficModel, generate, perturbed, start_of_day
from tests.factories import assign, make_agent, make_customer

SETTINGS = QualitySettings()
HISTORY_HOURS = 72


def _detect(kind: str, value: float, seed: int, hour: int, model: TrafficModel | None = None) -> tuple[float, str]:
    """Minutes from the effect's start to the first regression, after 3 days of history; and its severity."""
    base = start_of_day(10)
    start = base + timedelta(hours=HISTORY_HOURS + hour)
    days = (HISTORY_HOURS + hour + 7) / 24
    traffic = generate(model or TrafficModel(), base, days, seed, (Effect(kind, value, start),))
    incidents, _ = replay(columns_of(traffic), SETTINGS, start=start - timedelta(minutes=20))
    assert not [i for i in incidents if i.detected_at < start], "a false regression before the effect"
    after = [i for i in incidents if i.detected_at >= start]
    assert after, f"{kind} {value} never detected"
    return (after[0].detected_at - start).total_seconds() / 60, after[0].severity.value


@pytest.mark.parametrize(
    ("kind", "value", "target_minutes", "seed", "hour"),
    [
        ("overall_factor", 0.9, 30, 1, 3),
        ("garbage_share", 0.05, 120, 2, 9),
        ("hallucination_factor", 2.0, 360, 3, 1),
        ("toxic_share", 0.03, 120, 4, 20),
        ("latency_tail", 1.3, 60, 5, 14),
    ],
)
def test_each_target_effect_is_detected_in_time(
    kind: str, value: float, target_minutes: int, seed: int, hour: int
) -> None:
    minutes, _ = _detect(kind, value, seed, hour)
    assert minutes <= target_minutes


def test_severity_follows_harm_not_the_floor_ratio() -> None:
    # A 10 % lower score on every request is severe; more garbage answers are not "low" either.
    assert _detect("overall_factor", 0.9, 6, 16)[1] in {"high", "critical"}
    assert _detect("garbage_share", 0.10, 7, 16)[1] in {"high", "critical"}


@pytest.mark.parametrize(("seed", "model"), [(11, TrafficModel()), (12, perturbed(TrafficModel(), 12))])
def test_stable_days_with_a_daily_cycle_raise_no_regression(seed: int, model: TrafficModel) -> None:
    # Two judged days (after the initial baseline at 24 h) with the daily cycle in volume, mix and latency.
    traffic = generate(model, start_of_day(10), 3, seed)
    incidents, baselines = replay(columns_of(traffic), SETTINGS)
    assert len(baselines) >= 2  # the initial baseline, then moved forward after a healthy day
    assert incidents == []


def test_fewer_records_than_the_minimum_is_insufficient_data_never_pass_or_fail() -> None:
    traffic = generate(TrafficModel(), start_of_day(10), 2, 21)
    columns = columns_of(traffic)
    now = start_of_day(10) + timedelta(days=2)
    reference = reference_at(columns, now, [], SETTINGS)
    assert reference is not None
    bad = generate(TrafficModel(requests_per_day=2000), now, 0.01, 22, (Effect("overall_factor", 0.5, now),))
    window = monitoring.aggregate_numpy(columns_of(bad), reference.thresholds, 0.5)
    assert 0 < window.values["n"].sum() < SETTINGS.min_samples
    verdicts = judge_pass(reference, {15: window}, SETTINGS, now)
    assert {v.verdict for v in verdicts} == {"insufficient_data"}
    assert monitoring.overall(verdicts) == "insufficient_data"
    assert monitoring.overall(judge_pass(reference, {15: Cells.empty()}, SETTINGS, now)) == "insufficient_data"


def test_a_shift_of_hour_and_mix_alone_is_not_a_regression() -> None:
    # The reference knows each route at each hour: judged at the busiest hour, with the day's mix, nothing moves,
    # although the whole-day means differ from that hour's.
    traffic = generate(TrafficModel(), start_of_day(10), 4, 23)
    columns = columns_of(traffic)
    now = start_of_day(10) + timedelta(days=3, hours=15)
    reference = reference_at(columns, now - timedelta(hours=9), [], SETTINGS)
    assert reference is not None
    in_window = (columns.timestamp >= (now - timedelta(hours=4)).timestamp()) & (columns.timestamp < now.timestamp())
    window = monitoring.aggregate_numpy(columns.take(in_window), reference.thresholds, 0.5)
    verdicts = {v.metric: v for v in judge_pass(reference, {240: window}, SETTINGS, now)}
    assert all(v.verdict == "pass" for v in verdicts.values())
    for name in ("overall_quality_score", "latency_share_above_p50", "latency_share_above_p95"):
        assert verdicts[name].z is not None
        assert verdicts[name].z < z_threshold(SETTINGS)


def test_the_false_alarm_budget_sets_the_threshold_by_the_union_bound() -> None:
    looks = 7 * 86_400 / 60 * len(monitoring.METRICS) * 3
    assert z_threshold(SETTINGS) == pytest.approx(float(stats.norm.isf(0.1 / looks)))
    looser = QualitySettings.model_validate({"monitoring": {"false_alarms_per_week": 1.0}})
    assert z_threshold(looser) < z_threshold(SETTINGS)


def test_incident_rule_opens_once_updates_and_resolves_only_after_sustained_recovery() -> None:
    now = start_of_day(1)
    rule = monitoring.incident_transition
    assert rule(False, None, True, now, SETTINGS) == "open"
    assert rule(True, now, True, now + timedelta(minutes=1), SETTINGS) == "update"
    # One passing look is not a recovery.
    assert rule(True, now, False, now + timedelta(minutes=1), SETTINGS) == "none"
    assert rule(True, now, False, now + timedelta(minutes=59), SETTINGS) == "none"
    assert rule(True, now, False, now + timedelta(minutes=60), SETTINGS) == "resolve"
    assert rule(False, None, False, now, SETTINGS) == "none"


def test_a_recurrence_soon_after_resolution_reopens_the_incident_a_later_one_is_new() -> None:
    resolved = start_of_day(1)
    horizon = timedelta(minutes=SETTINGS.monitoring.reopen_minutes)
    assert monitoring.reopens(resolved, resolved + timedelta(minutes=1), SETTINGS)
    assert monitoring.reopens(resolved, resolved + horizon, SETTINGS)
    assert not monitoring.reopens(resolved, resolved + horizon + timedelta(minutes=1), SETTINGS)
    assert not monitoring.reopens(None, resolved, SETTINGS)  # resolved by a person, or never resolved
    never = QualitySettings.model_validate({"monitoring": {"reopen_minutes": 0}})
    assert not monitoring.reopens(resolved, resolved + timedelta(minutes=1), never)


def test_an_episode_is_one_incident_resolved_after_it_ends() -> None:
    base = start_of_day(10)
    start = base + timedelta(hours=HISTORY_HOURS + 10)
    effect = Effect("overall_factor", 0.85, start, end=start + timedelta(hours=2))
    traffic = generate(TrafficModel(), base, (HISTORY_HOURS + 18) / 24, 31, (effect,))
    incidents, _ = replay(columns_of(traffic), SETTINGS, start=start - timedelta(minutes=10))
    overall = [i for i in incidents if i.metric == "overall_quality_score"]
    assert len(overall) == 1
    [incident] = overall
    assert incident.resolved_at is not None
    assert incident.resolved_at >= start + timedelta(hours=2, minutes=SETTINGS.monitoring.recovery_minutes)
    assert incident.detections > 60
    assert incident.severity in {RegressionSeverity.HIGH, RegressionSeverity.CRITICAL}


def _store(session: Session, traffic_records: list[dict], customer_id: object) -> None:
    from optiinfra.auth.principal import Principal

    for offset in range(0, len(traffic_records), 10_000):
        ingest(session, Principal.operator(), traffic_records[offset : offset + 10_000], customer_id=customer_id,
               agent_id=None)  # fmt: skip


def test_sql_aggregates_and_reference_match_the_numpy_path(session: Session) -> None:
    customer = make_customer(session)
    assign(session, make_agent(session, type=AgentType.APPLICATION), customer)
    base = start_of_day(5)
    traffic = generate(TrafficModel(requests_per_day=6000), base, 2.2, 41, (Effect("toxic_share", 0.02, base),))
    _store(session, traffic.records("m", "v1"), customer.id)
    columns = columns_of(traffic)
    now = base + timedelta(days=2, hours=3)
    spans = [(base + timedelta(hours=30), base + timedelta(hours=31))]
    from_db = monitoring_store.reference_from_db(
        session, customer.id, "m", "v1", now - timedelta(days=7), now, spans,
        low_quantile=0.02, toxic_threshold=0.5, min_records=100,
    )  # fmt: skip
    mask = (columns.timestamp < now.timestamp()) & ~(
        (columns.timestamp >= spans[0][0].timestamp()) & (columns.timestamp < spans[0][1].timestamp())
    )
    expected = monitoring.build_reference(
        monitoring.aggregate_numpy(
            columns.take(mask), monitoring.thresholds_numpy(columns.take(mask), 0.02), 0.5, by_day=True
        ),
        monitoring.thresholds_numpy(columns.take(mask), 0.02),
        start=None,
        end=None,
    )
    assert from_db is not None
    assert from_db.records == expected.records
    assert from_db.days == expected.days
    assert from_db.thresholds.cells.keys() == expected.thresholds.cells.keys()
    for key, values in expected.thresholds.cells.items():
        assert from_db.thresholds.cells[key] == pytest.approx(values)
    for key, metrics in expected.cells.items():
        for name, values in metrics.items():
            assert from_db.cells[key][name] == pytest.approx(values, rel=1e-9, abs=1e-12)
    assert from_db.tau2 == pytest.approx(expected.tau2, rel=1e-6, abs=1e-15)
    assert monitoring.TAIL_SCORE.name in from_db.tau2  # the tail score's statistics, from PostgreSQL too
    assert from_db.score_slope == pytest.approx(expected.score_slope, rel=1e-6)
    assert from_db.score_load_slope == pytest.approx(expected.score_load_slope, rel=1e-6, abs=1e-12)
    assert expected.score_covariance is None or from_db.score_covariance == pytest.approx(
        expected.score_covariance, rel=1e-6, abs=1e-15
    )

    windows = monitoring_store.window_cells(
        session, customer.id, "m", "v1", now, (15, 60, 240), expected.thresholds, 0.5
    )
    for minutes, cells in windows.items():
        inside = (columns.timestamp >= (now - timedelta(minutes=minutes)).timestamp()) & (
            columns.timestamp < now.timestamp()
        )
        mine = monitoring.aggregate_numpy(columns.take(inside), expected.thresholds, 0.5)
        assert sorted(zip(cells.route, cells.hour.tolist(), strict=True)) == sorted(
            zip(mine.route, mine.hour.tolist(), strict=True)
        )
        order_db = np.lexsort((cells.hour, np.array(cells.route)))
        order_np = np.lexsort((mine.hour, np.array(mine.route)))
        for name in monitoring.AGG_FIELDS:
            assert cells.values[name][order_db] == pytest.approx(mine.values[name][order_np], rel=1e-9, abs=1e-9)


def _as_before_the_tail_score(reference: monitoring.Reference) -> monitoring.Reference:
    """The reference as a baseline stored before the tail score has it: no p90 thresholds, no score statistics."""
    data = reference.to_json()
    data["thresholds"] = {
        "cells": [row[:5] for row in data["thresholds"]["cells"]],
        "routes": {route: values[:3] for route, values in data["thresholds"]["routes"].items()},
    }
    for row in data["cells"]:
        row[2].pop(monitoring.TAIL_SCORE.name, None)
    for metrics in data["routes"].values():
        metrics.pop(monitoring.TAIL_SCORE.name, None)
    data["tau2"].pop(monitoring.TAIL_SCORE.name, None)
    for key in ("score_slope", "score_load_slope", "score_covariance"):
        del data[key]
    return monitoring.Reference.from_json(data)


def _tail_at_night(seed: int, minutes: int) -> tuple[dict[str, float], float]:
    """z of `latency_share_above_p95` in the 60-minute window `minutes` after p95 latency rose 30 % (median
    unchanged) at 03:00 UTC, the quietest hour (about 650 requests an hour), after 7 days of history as in the
    benchmark: judged with the tail score and, on the same data, with the p95 share alone (a reference made before
    the tail score)."""
    base = start_of_day(10)
    start = base + timedelta(days=7, hours=3)
    traffic = generate(TrafficModel(), base, 7 + 5 / 24, seed, (Effect("latency_tail", 1.3, start),))
    columns = columns_of(traffic)
    reference = reference_at(columns, start - timedelta(minutes=30), [], SETTINGS)
    assert reference is not None
    assert reference.score_covariance is not None
    now = start + timedelta(minutes=minutes)
    inside = (columns.timestamp >= (now - timedelta(minutes=60)).timestamp()) & (columns.timestamp < now.timestamp())
    z = {}
    for name, judged in (("score", reference), ("p95 share", _as_before_the_tail_score(reference))):
        window = monitoring.aggregate_numpy(columns.take(inside), judged.thresholds, 0.5)
        [tail] = [v for v in judge_pass(judged, {60: window}, SETTINGS, now) if v.metric == "latency_share_above_p95"]
        assert tail.z is not None
        assert tail.evidence().get("test") == (monitoring.TAIL_TEST if name == "score" else None)
        z[name] = tail.z
    return z, z_threshold(SETTINGS)


@pytest.mark.parametrize("seed", [1, 3])
def test_the_tail_score_sees_a_stretched_tail_at_night_with_more_evidence_than_the_p95_share(seed: int) -> None:
    # The last gap: p95 +30 % with the median unchanged, within the hour at the quietest hour. Once the
    # 60-minute window is all effect, the tail score's z clears the week's threshold (z 6.8 and 5.1 with these
    # seeds), well above the p95 share's on the same data (5.2 and 4.5: seed 3 would not be flagged by it).
    z, z_star = _tail_at_night(seed, 60)
    assert z["score"] >= z_star
    assert z["score"] >= z["p95 share"] + 0.5


def test_a_reference_made_before_the_tail_score_is_judged_by_its_p95_share_and_never_crashes() -> None:
    traffic = generate(TrafficModel(), start_of_day(10), 3, 24)
    columns = columns_of(traffic)
    now = start_of_day(10) + timedelta(days=3)
    reference = reference_at(columns, now - timedelta(hours=2), [], SETTINGS)
    assert reference is not None
    old = _as_before_the_tail_score(reference)
    assert old.score_slope is None
    assert not old.thresholds.has_p90
    assert all(math.isnan(values[3]) for values in old.thresholds.cells.values())
    inside = (columns.timestamp >= (now - timedelta(hours=2)).timestamp()) & (columns.timestamp < now.timestamp())
    window = monitoring.aggregate_numpy(columns.take(inside), old.thresholds, 0.5)
    assert window.values["p90_k"].sum() == 0  # no p90 threshold: nothing counted above it (NULL in SQL)
    verdicts = {v.metric: v for v in judge_pass(old, {120: window}, SETTINGS, now)}
    tail = verdicts["latency_share_above_p95"]
    assert tail.verdict == "pass"
    assert tail.z is not None
    assert math.isfinite(tail.z)
    assert "test" not in tail.evidence()
    # A rebuilt reference (the policy's daily refresh) has the tail score again.
    assert reference.thresholds.has_p90
    assert reference.score_slope is not None
