"""One suite for both stores of per-request records (issue 16): PostgreSQL, and ClickHouse through the real engine
in-process (chdb) with the SQL the server receives through clickhouse-connect."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.orm import Session

from optiinfra.models import AgentType
from optiinfra.quality.clickhouse import ChdbClickHouse
from optiinfra.quality.repository import INGEST_COLUMNS
from optiinfra.quality.store import (
    ClickHouseStore,
    PostgresStore,
    QualityStore,
    histogram_quantile,
    series,
)
from tests.factories import make_agent, make_customer
from tests.quality.store_data import START, assert_same_aggregates, expected_rollups, records

COLUMN = {name: i for i, name in enumerate(INGEST_COLUMNS)}


@pytest.fixture(scope="module")
def chdb_client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ChdbClickHouse]:
    client = ChdbClickHouse(str(tmp_path_factory.mktemp("chdb") / "data"))
    ClickHouseStore(client).ensure_schema()
    yield client
    client.close()


@pytest.fixture(params=["postgresql", "clickhouse"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> QualityStore:
    if request.param == "postgresql":
        return PostgresStore()
    return ClickHouseStore(request.getfixturevalue("chdb_client"))


def _tenant(session: Session) -> tuple[uuid.UUID, uuid.UUID]:
    return make_customer(session).id, make_agent(session, type=AgentType.APPLICATION).id


def _of_version(rows: list[tuple[Any, ...]], model: str, version: str) -> list[tuple[Any, ...]]:
    return [r for r in rows if r[COLUMN["model_name"]] == model and r[COLUMN["model_version"]] == version]


def test_a_batch_stores_only_records_not_stored_yet(store: QualityStore, session: Session) -> None:
    customer_id, agent_id = _tenant(session)
    rows = records(customer_id, agent_id, 200, seed=11)
    assert store.insert_records(session, rows) == 200
    assert store.insert_records(session, rows) == 0  # the same batch again
    overlapping = rows[:50] + records(customer_id, agent_id, 30, seed=12, prefix="n")
    assert store.insert_records(session, overlapping + overlapping[-5:]) == 30  # repeated inside the batch too
    # Another customer's identical request ids are its own records.
    other_id, other_agent = _tenant(session)
    assert store.insert_records(session, records(other_id, other_agent, 20, seed=11)) == 20

    stored = store.hourly_rollups(session, customer_id, "gpt", "v1", START - timedelta(days=1))
    stored += store.hourly_rollups(session, customer_id, "gpt", "v2", START - timedelta(days=1))
    assert sum(r.record_count for r in stored) == 230


def test_windows_by_time_and_last_n_return_the_versions_records_oldest_first(
    store: QualityStore, session: Session
) -> None:
    customer_id, agent_id = _tenant(session)
    rows = records(customer_id, agent_id, 300, seed=13)
    store.insert_records(session, rows)
    mine = sorted(_of_version(rows, "gpt", "v2"), key=lambda r: r[COLUMN["timestamp"]])

    start, end = START + timedelta(hours=3), START + timedelta(hours=11)
    window = store.read_window(session, customer_id, "gpt", model_version="v2", start=start, end=end)
    expected = [r for r in mine if start <= r[COLUMN["timestamp"]] < end]
    assert window.size == len(expected) > 20
    assert (window.first_at, window.last_at) == (expected[0][COLUMN["timestamp"]], expected[-1][COLUMN["timestamp"]])
    assert window.overall == [
        None if "scores_pending" in r[COLUMN["metadata"]] else pytest.approx(r[COLUMN["overall_quality_score"]])
        for r in expected
    ]
    assert window.latency_ms == [
        None if r[COLUMN["latency_ms"]] is None else pytest.approx(r[COLUMN["latency_ms"]]) for r in expected
    ]
    assert window.hallucination == [r[COLUMN["hallucination_detected"]] for r in expected]
    assert window.agent_id == agent_id

    last = store.read_window(session, customer_id, "gpt", model_version="v2", last_n=25)
    assert last.size == 25
    assert (last.first_at, last.last_at) == (mine[-25][COLUMN["timestamp"]], mine[-1][COLUMN["timestamp"]])
    assert last.overall == [
        None if "scores_pending" in r[COLUMN["metadata"]] else pytest.approx(r[COLUMN["overall_quality_score"]])
        for r in mine[-25:]
    ]
    assert store.read_window(session, customer_id, "gpt", model_version="v3", last_n=25).size == 0


def test_hourly_rollups_fleet_summary_and_series_equal_the_aggregates_of_the_records(
    store: QualityStore, session: Session
) -> None:
    customer_id, agent_id = _tenant(session)
    other_id, other_agent = _tenant(session)
    rows = records(customer_id, agent_id, 500, seed=14)
    other = records(other_id, other_agent, 100, seed=15, versions=(("claude", "x"),))
    store.insert_records(session, rows)
    store.insert_records(session, other)
    store.insert_records(session, rows[:40])  # duplicates are never counted twice

    expected = expected_rollups(rows)
    for version in ("v1", "v2"):
        rollups = store.hourly_rollups(session, customer_id, "gpt", version, START)
        actual = {(r.route, r.hour_start): {**r.sums, "latency_histogram": r.latency_histogram} for r in rollups}
        mine = {(k[3], k[4]): v for k, v in expected.items() if k[2] == version}
        assert set(actual) == set(mine)
        for key, sums in mine.items():
            assert_same_aggregates(actual[key], sums)
    # Hours from the hour of `since`, up to the hour of `until`.
    part = store.hourly_rollups(
        session, customer_id, "gpt", "v1", START + timedelta(hours=2, minutes=30), START + timedelta(hours=4, minutes=1)
    )
    assert {r.hour_start for r in part} == {START + timedelta(hours=2), START + timedelta(hours=3)}

    summary = store.fleet_summary(session, START, START + timedelta(days=2), [customer_id, other_id])
    assert [(s.customer_id, s.model_name, s.model_version) for s in summary] == sorted(
        [(customer_id, "gpt", "v1"), (customer_id, "gpt", "v2"), (other_id, "claude", "x")]
    )
    everything = {**expected, **expected_rollups(other)}
    for line in summary:
        sums = [v for k, v in everything.items() if k[:3] == (line.customer_id, line.model_name, line.model_version)]
        scored = sum(s["scored_count"] for s in sums)
        assert line.record_count == sum(s["record_count"] for s in sums)
        assert line.mean_overall == pytest.approx(sum(s["overall_sum"] for s in sums) / scored)
        assert line.hallucination_rate == pytest.approx(sum(s["hallucination_count"] for s in sums) / scored)
        assert line.prompt_tokens == sum(s["prompt_tokens_sum"] for s in sums)
        histogram = [sum(column) for column in zip(*(s["latency_histogram"] for s in sums), strict=True)]
        assert line.p95_latency_ms == pytest.approx(histogram_quantile(histogram, 0.95))
    assert store.fleet_summary(session, START, START + timedelta(days=2), [uuid.uuid4()]) == []

    points = series(store, session, customer_id, "gpt", "v1", START, timedelta(hours=6))
    assert [p.bucket for p in points] == [START + timedelta(hours=6 * i) for i in range(5)]
    assert sum(p.count for p in points) == len(_of_version(rows, "gpt", "v1"))


def test_model_versions_and_drill_down_are_the_customers_own(store: QualityStore, session: Session) -> None:
    customer_id, agent_id = _tenant(session)
    other_id, other_agent = _tenant(session)
    rows = records(customer_id, agent_id, 120, seed=16, versions=(("b", "v2"), ("a", "v1"), ("b", "v10")))
    store.insert_records(session, rows)
    store.insert_records(session, records(other_id, other_agent, 10, seed=17, versions=(("z", "v9"),)))
    assert store.model_versions(session, customer_id) == [("a", "v1"), ("b", "v10"), ("b", "v2")]

    start, end = START, START + timedelta(hours=12)
    page = store.records(session, customer_id, "b", "v2", start, end, 7)
    mine = sorted(
        (r for r in _of_version(rows, "b", "v2") if start <= r[COLUMN["timestamp"]] < end),
        key=lambda r: r[COLUMN["timestamp"]],
        reverse=True,
    )[:7]
    assert [p.request_id for p in page] == [r[COLUMN["request_id"]] for r in mine]
    first, source = page[0], mine[0]
    assert first.timestamp == source[COLUMN["timestamp"]].astimezone(UTC)
    assert first.agent_id == agent_id
    assert first.route == source[COLUMN["metadata"]].get("route", "")
    pending = "scores_pending" in source[COLUMN["metadata"]]
    assert first.overall_quality_score == (None if pending else pytest.approx(source[COLUMN["overall_quality_score"]]))
    assert store.records(session, other_id, "b", "v2", start, end, 7) == []
