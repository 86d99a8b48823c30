"""The quality reads that enumerate a customer's model versions by a skip scan of the version index (issue 16)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy.orm import Session

from optiinfra.enums import AgentType
from optiinfra.quality import repository
from tests.factories import assign, make_agent, make_customer, make_quality_baseline, make_quality_metric


def test_model_versions_of_lists_each_version_with_records_or_a_baseline_once_sorted_and_only_the_customers(
    session: Session,
) -> None:
    customer, other = make_customer(session), make_customer(session)
    agent = make_agent(session, type=AgentType.APPLICATION)
    for model, version in [("b", "v2"), ("a", "v1"), ("b", "v10"), ("a", "v1"), ("b", "v2"), ("a", "v0")]:
        make_quality_metric(session, customer, agent, model_name=model, model_version=version)
    make_quality_metric(session, other, agent, model_name="z", model_version="v9")
    make_quality_baseline(session, customer, agent, model_name="c", model_version="v1")
    make_quality_baseline(session, customer, agent, model_name="a", model_version="v1")

    assert repository.model_versions_of(session, customer.id) == [
        ("a", "v0"),
        ("a", "v1"),
        ("b", "v10"),
        ("b", "v2"),
        ("c", "v1"),
    ]
    assert repository.model_versions_of(session, make_customer(session).id) == []


def test_default_agent_is_the_serving_application_agent_with_the_newest_record_over_all_versions(
    session: Session,
) -> None:
    customer = make_customer(session)
    older, newer, unassigned = (make_agent(session, type=AgentType.APPLICATION) for _ in range(3))
    cost = make_agent(session, type=AgentType.COST)
    for agent in (older, newer, cost):
        assign(session, agent, customer)
    now = datetime.now(UTC)
    make_quality_metric(
        session, customer, older, model_name="a", model_version="v1", timestamp=now - timedelta(hours=1)
    )
    make_quality_metric(
        session, customer, newer, model_name="b", model_version="v1", timestamp=now - timedelta(hours=2)
    )
    # Newer records by agents that are not serving application agents do not count.
    make_quality_metric(session, customer, unassigned, model_name="a", model_version="v1", timestamp=now)
    make_quality_metric(session, customer, cost, model_name="c", model_version="v1", timestamp=now)

    assert repository.default_application_agent(session, customer.id) == older.id

    make_quality_metric(session, customer, newer, model_name="b", model_version="v2", timestamp=now)
    assert repository.default_application_agent(session, customer.id) == newer.id


def test_default_agent_without_records_is_the_most_recently_alive_serving_application_agent(session: Session) -> None:
    customer = make_customer(session)
    assert repository.default_application_agent(session, customer.id) is None
    quiet = make_agent(session, type=AgentType.APPLICATION, last_heartbeat=datetime.now(UTC) - timedelta(hours=1))
    alive = make_agent(session, type=AgentType.APPLICATION, last_heartbeat=datetime.now(UTC))
    for agent in (quiet, alive):
        assign(session, agent, customer)

    assert repository.default_application_agent(session, customer.id) == alive.id
