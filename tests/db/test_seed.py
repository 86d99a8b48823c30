"""The demo data: present in all 22 tables (besides sessions and counters), consistent with itself, and idempotent."""

from __future__ import annotations

import statistics
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import Engine, create_engine, inspect, text

from optiinfra.db import migrations
from optiinfra.db.migrations import QUEUE_PREFIX
from optiinfra.demo.seed import seed_demo_data
from optiinfra.enums import RecommendationStatus
from optiinfra.models import QUALITY_PARTITION_PREFIX
from tests.conftest import DatabaseFactory

NOW = datetime(2026, 11, 20, 9, 30, tzinfo=UTC)


@pytest.fixture(scope="module")
def seeded_engine(create_database: DatabaseFactory):
    engine = create_engine(create_database())
    migrations.upgrade(engine)
    seed_demo_data(engine, now=NOW)
    yield engine
    engine.dispose()


def fingerprint(engine: Engine) -> dict[str, str]:
    """A digest of every row of every table, to compare database contents exactly."""
    names = sorted(
        {n for n in inspect(engine).get_table_names() if not n.startswith(QUEUE_PREFIX)} - {"alembic_version"}
    )
    with engine.connect() as connection:
        return {
            name: connection.execute(
                text(f"SELECT md5(coalesce(string_agg(t::text, ',' ORDER BY t::text), '')) FROM \"{name}\" t")
            ).scalar_one()
            for name in names
        }


def scalar(engine: Engine, query: str, **params: object) -> object:
    with engine.connect() as connection:
        return connection.execute(text(query), params).scalar_one()


def test_seed_fills_all_24_tables(seeded_engine: Engine) -> None:
    # Dashboard sessions are opened by people signing in, metric counters count what the processes did, and scoring
    # texts wait only until a worker scores them, and Prometheus sources name someone's real server (a worker would
    # call it): none is demo data. quality_metrics' partitions (migration 016) are parts of one table; its
    # idempotency keys (quality_request_keys) are filled with its rows.
    names = {
        n
        for n in inspect(seeded_engine).get_table_names()
        if not n.startswith((QUEUE_PREFIX, QUALITY_PARTITION_PREFIX))
    } - {
        "alembic_version",
        "dashboard_sessions",
        "metric_counters",
        "scoring_texts",
        "prometheus_sources",
    }
    assert len(names) == 24
    for name in names:
        assert scalar(seeded_engine, f'SELECT count(*) FROM "{name}"') > 0, name


def test_seed_again_changes_nothing_even_hours_later(seeded_engine: Engine) -> None:
    before = fingerprint(seeded_engine)
    report = seed_demo_data(seeded_engine, now=NOW)
    assert all(added == 0 for added, _ in report.values())
    later = seed_demo_data(seeded_engine, now=NOW + timedelta(hours=7))
    assert all(added == 0 for added, _ in later.values())
    assert fingerprint(seeded_engine) == before


def test_three_customers_and_one_agent_of_each_type(seeded_engine: Engine) -> None:
    assert scalar(seeded_engine, "SELECT count(*) FROM customers") == 3
    assert scalar(seeded_engine, "SELECT count(DISTINCT type) FROM agents") == 5
    assert scalar(seeded_engine, "SELECT count(*) FROM agents") == 5


def test_customer_api_keys_are_sha256_digests(seeded_engine: Engine) -> None:
    assert scalar(seeded_engine, "SELECT count(*) FROM customers WHERE api_key !~ '^[0-9a-f]{64}$'") == 0


def test_recommendations_cover_every_status_with_their_decisions(seeded_engine: Engine) -> None:
    with seeded_engine.connect() as connection:
        statuses = set(connection.execute(text("SELECT DISTINCT status::text FROM recommendations")).scalars())
        assert statuses == {status.value for status in RecommendationStatus}
        undecided_approvals = connection.execute(
            text(
                "SELECT count(*) FROM recommendations r WHERE r.status <> 'pending' AND NOT EXISTS "
                "(SELECT 1 FROM approvals a WHERE a.recommendation_id = r.id AND a.status <> 'pending')"
            )
        ).scalar_one()
        assert undecided_approvals == 0
        without_optimization = connection.execute(
            text(
                "SELECT count(*) FROM recommendations r WHERE r.status NOT IN ('pending', 'rejected') "
                "AND NOT EXISTS (SELECT 1 FROM optimizations o WHERE o.recommendation_id = r.id)"
            )
        ).scalar_one()
        assert without_optimization == 0
        rejected_with_optimization = connection.execute(
            text(
                "SELECT count(*) FROM optimizations o JOIN recommendations r ON r.id = o.recommendation_id "
                "WHERE r.status IN ('pending', 'rejected')"
            )
        ).scalar_one()
        assert rejected_with_optimization == 0


def test_regressions_include_one_resolved_and_one_open(seeded_engine: Engine) -> None:
    assert scalar(seeded_engine, "SELECT count(*) FROM quality_regressions WHERE resolved_at IS NOT NULL") >= 1
    assert scalar(seeded_engine, "SELECT count(*) FROM quality_regressions WHERE resolved_at IS NULL") >= 1
    assert scalar(seeded_engine, "SELECT count(*) FROM quality_regressions WHERE resolved_at < detected_at") == 0


def test_quality_metrics_span_several_models_versions_and_days(seeded_engine: Engine) -> None:
    assert scalar(seeded_engine, "SELECT count(DISTINCT model_name) FROM quality_metrics") >= 3
    assert scalar(seeded_engine, "SELECT count(DISTINCT (model_name, model_version)) FROM quality_metrics") >= 4
    days = scalar(
        seeded_engine, "SELECT extract(epoch FROM max(timestamp) - min(timestamp)) / 86400 FROM quality_metrics"
    )
    assert days >= 3
    assert scalar(seeded_engine, "SELECT max(timestamp) FROM quality_metrics") <= NOW


def test_resource_metrics_cover_a_day_and_every_resource_type(seeded_engine: Engine) -> None:
    hours = scalar(
        seeded_engine, "SELECT extract(epoch FROM max(timestamp) - min(timestamp)) / 3600 FROM resource_metrics"
    )
    assert hours >= 23
    assert scalar(seeded_engine, "SELECT count(DISTINCT resource_type) FROM resource_metrics") == 5


def test_baselines_summarise_exactly_the_rows_of_their_window(seeded_engine: Engine) -> None:
    with seeded_engine.connect() as connection:
        baselines = connection.execute(
            text(
                "SELECT customer_id, model_name, model_version, sample_size, avg_overall_score, p95_latency_ms, "
                "metadata FROM quality_baselines"
            )
        ).all()
        assert {row.model_version for row in baselines} >= {"2024-08-06", "2024-11-20", "v1-fp16"}
        for baseline in baselines:
            window = baseline.metadata["window"]
            rows = connection.execute(
                text(
                    "SELECT overall_quality_score, latency_ms FROM quality_metrics WHERE customer_id = :customer "
                    "AND model_name = :model AND model_version = :version AND timestamp BETWEEN :start AND :end"
                ),
                {
                    "customer": baseline.customer_id,
                    "model": baseline.model_name,
                    "version": baseline.model_version,
                    "start": datetime.fromisoformat(window["start"]),
                    "end": datetime.fromisoformat(window["end"]),
                },
            ).all()
            assert len(rows) == baseline.sample_size
            assert statistics.fmean(r.overall_quality_score for r in rows) == pytest.approx(
                baseline.avg_overall_score, abs=1e-4
            )
            stats = baseline.metadata["components"]["overall_quality_score"]
            assert stats["ci95_low"] < baseline.avg_overall_score < stats["ci95_high"]


def test_active_workflow_is_referenced_by_its_agent_state(seeded_engine: Engine) -> None:
    assert (
        scalar(
            seeded_engine,
            "SELECT count(*) FROM agent_states s JOIN workflow_executions w ON w.id = s.current_workflow_id "
            "WHERE w.status = 'running'",
        )
        == 1
    )


def test_capabilities_table_matches_the_agents_capability_lists(seeded_engine: Engine) -> None:
    mismatches = scalar(
        seeded_engine,
        "SELECT count(*) FROM agents a WHERE (SELECT coalesce(jsonb_agg(c.capability_name ORDER BY c.capability_name), "
        "'[]') FROM agent_capabilities c WHERE c.agent_id = a.id) <> (SELECT jsonb_agg(v ORDER BY v) FROM "
        "jsonb_array_elements_text(a.capabilities) v)",
    )
    assert mismatches == 0
