"""quality_metrics partitioned by day (migration 016): idempotency across partitions, partitions ahead, retention,
and the deletion of one customer's records."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import Engine, create_engine, func, select, text
from sqlalchemy.orm import Session, sessionmaker

from optiinfra.auth.principal import Principal
from optiinfra.db import migrations
from optiinfra.db.engine import make_session_factory, unit_of_work
from optiinfra.errors import InvalidInputError
from optiinfra.models import AgentType, Customer, QualityMetric, QualityRequestKey
from optiinfra.quality import partitions, service
from optiinfra.quality.settings import settings_of, store_settings
from tests.factories import assign, make_agent, make_customer

CLI = Principal.system("test")
NOW = datetime.now(UTC)


@pytest.fixture(scope="module")
def factory(create_database: Any) -> Iterator[sessionmaker[Session]]:
    engine: Engine = create_engine(create_database(), pool_size=2)
    migrations.upgrade(engine)
    yield make_session_factory(engine)
    engine.dispose()


def _customer(factory: sessionmaker[Session], retention_days: int | None = None) -> uuid.UUID:
    with unit_of_work(factory) as session:
        customer = make_customer(session)
        assign(session, make_agent(session, type=AgentType.APPLICATION), customer)
        if retention_days is not None:
            store_settings(customer, settings_of(customer).model_copy(update={"retention_days": retention_days}))
        return customer.id


def _record(request_id: str, at: datetime, overall: float = 0.9) -> dict[str, Any]:
    return {
        "request_id": request_id,
        "model_name": "m",
        "model_version": "v1",
        "overall_quality_score": overall,
        "latency_ms": 100.0,
        "timestamp": at.isoformat(),
    }


def _ingest(factory: sessionmaker[Session], customer_id: uuid.UUID, records: list[dict[str, Any]]) -> Any:
    with unit_of_work(factory) as session:
        return service.ingest(session, CLI, records, customer_id=customer_id, agent_id=None)


def _stored(factory: sessionmaker[Session], customer_id: uuid.UUID) -> set[str]:
    with unit_of_work(factory) as session:
        return set(session.scalars(select(QualityMetric.request_id).where(QualityMetric.customer_id == customer_id)))


def _keys(factory: sessionmaker[Session], customer_id: uuid.UUID) -> set[str]:
    with unit_of_work(factory) as session:
        return set(
            session.scalars(select(QualityRequestKey.request_id).where(QualityRequestKey.customer_id == customer_id))
        )


def test_a_record_sent_again_days_later_into_another_partition_is_a_duplicate(
    factory: sessionmaker[Session],
) -> None:
    customer_id = _customer(factory)
    first = _ingest(factory, customer_id, [_record("r-1", NOW - timedelta(days=3)), _record("r-2", NOW)])
    # Re-sent with a new timestamp (a client that stamps on sending): another day, another partition.
    again = _ingest(factory, customer_id, [_record("r-1", NOW), _record("r-3", NOW)])

    assert (first.inserted, again.inserted, again.duplicates) == (2, 1, 1)
    assert _stored(factory, customer_id) == _keys(factory, customer_id) == {"r-1", "r-2", "r-3"}
    with unit_of_work(factory) as session:
        stored = session.scalar(
            select(QualityMetric.timestamp).where(
                QualityMetric.customer_id == customer_id, QualityMetric.request_id == "r-1"
            )
        )
        assert stored is not None
        assert stored < NOW - timedelta(days=2), "the first one stays"
        detail = service.record_detail(session, CLI, customer_id, "r-1")
        assert detail.timestamp == stored


def test_the_key_table_refuses_a_duplicate_from_any_writer_and_a_batch_stays_all_or_nothing(
    factory: sessionmaker[Session],
) -> None:
    customer_id = _customer(factory)
    _ingest(factory, customer_id, [_record("kept", NOW - timedelta(days=1))])

    with pytest.raises(InvalidInputError), unit_of_work(factory) as session:
        service.ingest(
            session,
            CLI,
            [_record("new", NOW), _record("bad", NOW, overall=1.5)],
            customer_id=customer_id,
            agent_id=None,
        )
    with pytest.raises(Exception, match="pk_quality_request_keys"), unit_of_work(factory) as session:
        session.execute(
            text(
                "INSERT INTO quality_metrics (agent_id, customer_id, request_id, model_name, model_version, "
                "overall_quality_score, timestamp) SELECT agent_id, customer_id, request_id, model_name, "
                "model_version, 0.1, now() FROM quality_metrics WHERE customer_id = :customer_id"
            ),
            {"customer_id": customer_id},
        )

    assert _stored(factory, customer_id) == _keys(factory, customer_id) == {"kept"}


def test_the_worker_creates_partitions_ahead_and_old_records_still_land(factory: sessionmaker[Session]) -> None:
    later = NOW + timedelta(days=30)
    with unit_of_work(factory) as session:
        created = partitions.ensure_partitions(session, later, days_ahead=2)
    with unit_of_work(factory) as session:
        again = partitions.ensure_partitions(session, later, days_ahead=2)
        found = {part.name: part for part in partitions.partitions(session)}

    day = partitions.day_start(later)
    assert created == [f"quality_metrics_p_{day + timedelta(days=offset):%Y%m%d}" for offset in range(3)]
    assert again == []
    assert found[created[0]].start == day
    assert found[created[0]].end == day + timedelta(days=1)
    customer_id = _customer(factory)
    last_year = NOW - timedelta(days=300)
    result = _ingest(factory, customer_id, [_record("last-year", last_year), _record("today", NOW)])
    assert result.inserted == 2
    with unit_of_work(factory) as session:
        where = session.execute(
            text("SELECT request_id, tableoid::regclass::text FROM quality_metrics WHERE customer_id = :c"),
            {"c": customer_id},
        ).all()
    assert {request_id: table.startswith("quality_metrics_p_") for request_id, table in where} == {
        "last-year": True,
        "today": True,
    }


def test_retention_drops_partitions_past_everyone_and_deletes_only_what_a_shorter_retention_ends(
    create_database: Any,
) -> None:
    engine = create_engine(create_database(), pool_size=2)
    migrations.upgrade(engine)
    factory = make_session_factory(engine)
    try:
        # Partitions for the days around a moment 40 days on, then records in them.
        later = NOW + timedelta(days=40)
        with unit_of_work(factory) as session:
            partitions.ensure_partitions(session, later - timedelta(days=12), days_ahead=12)
        short = _customer(factory, retention_days=5)
        long = _customer(factory, retention_days=10)
        with unit_of_work(factory) as session:
            # Dated in the future (the API refuses that), as if the clock had moved 40 days on.
            for customer_id in (short, long):
                session.execute(
                    text(
                        "INSERT INTO quality_metrics (agent_id, customer_id, request_id, model_name, model_version, "
                        "overall_quality_score, timestamp) SELECT a.agent_id, :customer_id, 'd' || age, 'm', 'v1', "
                        "0.9, :later - make_interval(days => age, hours => 1) "
                        "FROM unnest(CAST(:ages AS int[])) AS age, "
                        "(SELECT agent_id FROM agent_customers WHERE customer_id = :customer_id) AS a"
                    ),
                    {"customer_id": customer_id, "later": later, "ages": [1, 4, 6, 9, 11]},
                )
            before = {part.name: part for part in partitions.partitions(session)}

        report = partitions.apply_retention(factory, later)

        with unit_of_work(factory) as session:
            after = {part.name for part in partitions.partitions(session)}
            total_keys = session.scalar(select(func.count()).select_from(QualityRequestKey))
            total_rows = session.scalar(select(func.count()).select_from(QualityMetric))
        # Every partition ending 10 days or more before is gone (the older customers' retention passed), detached
        # and dropped, with its keys; none newer.
        cutoff = later - timedelta(days=10)
        assert report.finished
        assert set(report.dropped) == set(before) - after
        assert set(report.dropped) == {
            name for name, part in before.items() if part.end is not None and part.end <= cutoff
        }
        assert f"quality_metrics_p_{partitions.day_start(later - timedelta(days=11)):%Y%m%d}" in report.dropped
        assert _stored(factory, long) == _keys(factory, long) == {"d1", "d4", "d6", "d9"}
        # The shorter retention deleted its own older records row by row, and only them.
        assert _stored(factory, short) == _keys(factory, short) == {"d1", "d4"}
        assert report.deleted == 2
        assert total_keys == total_rows == 6
        # Nothing left to do on a second pass.
        again = partitions.apply_retention(factory, later)
        assert (again.dropped, again.deleted) == ([], 0)
    finally:
        engine.dispose()


def test_deleting_one_customers_records_leaves_the_others_intact(factory: sessionmaker[Session]) -> None:
    gone, kept = _customer(factory), _customer(factory)
    for customer_id in (gone, kept):
        _ingest(factory, customer_id, [_record(f"r-{index}", NOW - timedelta(days=index)) for index in range(7)])

    with unit_of_work(factory) as session:
        customer = session.get(Customer, gone)
        assert customer is not None
        requested = service.request_records_deletion(session, Principal.operator(), gone)
    deleted = partitions.carry_out_deletions(factory, deadline=float("inf"))

    assert requested.status == "pending"
    assert deleted == 7
    assert _stored(factory, gone) == _keys(factory, gone) == set()
    assert len(_stored(factory, kept)) == len(_keys(factory, kept)) == 7
    with unit_of_work(factory) as session:
        customer = session.get(Customer, gone)
        assert customer is not None
        assert partitions.DELETION_KEY not in customer.metadata_
    # The customer can send again; the old request ids are new again.
    assert _ingest(factory, gone, [_record("r-1", NOW)]).inserted == 1
