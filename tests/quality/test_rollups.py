"""The hourly rollups (migration 017) equal the aggregates of the raw records after ingests, duplicates, late
records, score updates and deletions, and the dashboard's series reads them."""

from __future__ import annotations

import math
import uuid
from datetime import UTC, timedelta
from typing import Any

import pytest
from sqlalchemy import select, text
from sqlalchemy.orm import Session

from optiinfra.models import Agent, AgentType, Customer, QualityMetric, QualityRollup
from optiinfra.quality import repository
from optiinfra.quality.repository import INGEST_COLUMNS
from optiinfra.quality.store import SUM_FIELDS, PostgresStore
from tests.factories import make_agent, make_customer
from tests.quality.store_data import START, assert_same_aggregates, expected_rollups, records


# Other tests' servers commit records into the same database: every comparison is limited to this test's customers.
def stored_rollups(session: Session, customers: set[uuid.UUID]) -> dict[tuple[Any, ...], dict[str, Any]]:
    rows = session.scalars(select(QualityRollup).where(QualityRollup.customer_id.in_(customers))).all()
    return {
        (r.customer_id, r.model_name, r.model_version, r.route, r.hour_start.astimezone(UTC)): {
            **{name: getattr(r, name) for name in SUM_FIELDS},
            "latency_histogram": r.latency_histogram,
        }
        for r in rows
    }


def stored_records(session: Session, customers: set[uuid.UUID]) -> list[tuple[Any, ...]]:
    """The records as stored, in INGEST_COLUMNS order (what the rollups must agree with)."""
    columns = [getattr(QualityMetric, "metadata_" if name == "metadata" else name) for name in INGEST_COLUMNS]
    statement = select(*columns).where(QualityMetric.customer_id.in_(customers))
    return [tuple(row) for row in session.execute(statement).all()]


def assert_rollups_match_records(session: Session, customers: set[uuid.UUID]) -> None:
    session.flush()
    expected = expected_rollups(stored_records(session, customers))
    actual = stored_rollups(session, customers)
    assert set(actual) == set(expected)
    for key, sums in expected.items():
        assert_same_aggregates(actual[key], sums)


def _tenant(session: Session) -> tuple[Customer, Agent]:
    return make_customer(session), make_agent(session, type=AgentType.APPLICATION)


def test_ingested_batches_duplicates_and_late_records_are_rolled_up_exactly(session: Session) -> None:
    customer, agent = _tenant(session)
    other_customer, other_agent = _tenant(session)
    mine = {customer.id, other_customer.id}
    first = records(customer.id, agent.id, 400, seed=1)
    assert repository.bulk_insert_metrics(session, first) == 400  # the COPY path
    assert repository.bulk_insert_metrics(session, records(other_customer.id, other_agent.id, 50, seed=2)) == 50
    assert_rollups_match_records(session, mine)

    # A batch half of which is stored already goes through INSERT ... ON CONFLICT: only the new half counts.
    again = first[:100] + records(customer.id, agent.id, 100, seed=3, prefix="s")
    assert repository.bulk_insert_metrics(session, again) == 100
    # Late records: timestamps in hours already rolled up, and in a day long past.
    late = records(customer.id, agent.id, 60, seed=4, prefix="late", start=START - timedelta(days=20), hours=3)
    late += records(customer.id, agent.id, 40, seed=5, prefix="later", start=START, hours=2)
    assert repository.bulk_insert_metrics(session, late) == 100
    assert_rollups_match_records(session, mine)
    assert sum(int(r["record_count"]) for r in stored_rollups(session, mine).values()) == 650


def test_score_updates_deletions_and_deleted_agents_and_customers_are_subtracted(session: Session) -> None:
    customer, agent = _tenant(session)
    mine = {customer.id}
    second_agent = make_agent(session, type=AgentType.APPLICATION)
    repository.bulk_insert_metrics(session, records(customer.id, agent.id, 300, seed=6))
    repository.bulk_insert_metrics(session, records(customer.id, second_agent.id, 100, seed=7, prefix="b"))

    # Evaluations arriving for records stored without scores (OTLP): they move from unscored to scored.
    session.execute(
        text(
            "UPDATE quality_metrics SET metadata = metadata - 'scores_pending', overall_quality_score = 0.25, "
            "hallucination_detected = true WHERE metadata ? 'scores_pending' AND customer_id = :c"
        ),
        {"c": customer.id},
    )
    # A record moved to another hour and version.
    session.execute(
        text(
            "UPDATE quality_metrics SET timestamp = timestamp - interval '3 days', model_version = 'v9' "
            "WHERE request_id = 'r-00007' AND customer_id = :c"
        ),
        {"c": customer.id},
    )
    assert_rollups_match_records(session, mine)

    # Deletions: some records, then every record of one hour (its rollup rows disappear), then an agent's records.
    session.execute(text("DELETE FROM quality_metrics WHERE request_id LIKE 'r-001%'"))
    session.execute(
        text("DELETE FROM quality_metrics WHERE timestamp >= :s AND timestamp < :e"),
        {"s": START + timedelta(hours=5), "e": START + timedelta(hours=6)},
    )
    assert_rollups_match_records(session, mine)
    assert not [key for key in stored_rollups(session, mine) if key[4] == START + timedelta(hours=5)]
    session.delete(session.get(Agent, second_agent.id))
    assert_rollups_match_records(session, mine)

    session.delete(session.get(Customer, customer.id))
    session.flush()
    assert stored_rollups(session, mine) == {}


def test_hourly_series_reads_rollups_and_agrees_with_the_raw_records(session: Session) -> None:
    customer, agent = _tenant(session)
    rows = records(customer.id, agent.id, 600, seed=8, versions=(("gpt", "v1"),))
    repository.bulk_insert_metrics(session, rows)

    points = repository.bucketed_series(session, customer.id, "gpt", "v1", START, timedelta(hours=1))
    raw = session.execute(
        text(
            "SELECT date_trunc('hour', timestamp, 'UTC'), count(*), "
            "avg(overall_quality_score) FILTER (WHERE NOT metadata ? 'scores_pending'), "
            "array_agg(latency_ms ORDER BY latency_ms) FILTER (WHERE latency_ms IS NOT NULL), "
            "avg(hallucination_detected::int) FILTER (WHERE NOT metadata ? 'scores_pending') "
            "FROM quality_metrics WHERE customer_id = :c GROUP BY 1 ORDER BY 1"
        ),
        {"c": customer.id},
    ).all()
    assert [p.bucket for p in points] == [row[0] for row in raw]
    for point, row in zip(points, raw, strict=True):
        assert point.count == row[1]
        assert point.overall == (None if row[2] is None else float(row[2])) or abs(point.overall - row[2]) < 1e-9
        assert point.hallucination_rate is not None
        assert abs(point.hallucination_rate - float(row[4])) < 1e-9
        # The histogram's p95 is within half a bin (about 5%) of the exact one (nearest rank).
        latencies = row[3]
        exact = latencies[math.ceil(0.95 * len(latencies)) - 1]
        assert point.p95_latency_ms is not None
        assert 1.1**-0.5 <= point.p95_latency_ms / exact <= 1.1**0.5

    six_hours = repository.bucketed_series(session, customer.id, "gpt", "v1", START, timedelta(hours=6))
    assert [p.count for p in six_hours] == [
        sum(row[1] for row in raw if START + timedelta(hours=6 * i) <= row[0] < START + timedelta(hours=6 * (i + 1)))
        for i in range(5)
    ]
    assert PostgresStore().model_versions(session, customer.id) == [("gpt", "v1")]


def test_route_breakdown_and_a_routes_series_over_days_read_rollups_and_agree_with_the_records(
    session: Session,
) -> None:
    customer, agent = _tenant(session)
    repository.bulk_insert_metrics(session, records(customer.id, agent.id, 500, seed=9, versions=(("gpt", "v1"),)))
    raw = {
        row[0]: row[1:]
        for row in session.execute(
            text(
                "SELECT coalesce(metadata->>'route', ''), count(*), "
                "avg(overall_quality_score) FILTER (WHERE NOT metadata ? 'scores_pending'), "
                "avg(hallucination_detected::int) FILTER (WHERE NOT metadata ? 'scores_pending') "
                "FROM quality_metrics WHERE customer_id = :c GROUP BY 1"
            ),
            {"c": customer.id},
        ).all()
    }
    breakdown = repository.route_breakdown(session, customer.id, "gpt", "v1", START)  # more than a day: rollups
    assert [summary.count for summary in breakdown] == sorted((row[0] for row in raw.values()), reverse=True)
    for summary in breakdown:
        count, overall, hallucination = raw[summary.route]
        assert summary.count == count
        assert summary.overall == pytest.approx(float(overall))
        assert summary.hallucination_rate == pytest.approx(float(hallucination))
        assert summary.p95_latency_ms is not None

    search = repository.bucketed_series(session, customer.id, "gpt", "v1", START, timedelta(hours=6), "search")
    assert sum(point.count for point in search) == raw["search"][0]
