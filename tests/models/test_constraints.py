"""Values outside their domain are refused by PostgreSQL itself, whatever client writes them."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from tests.factories import (
    make_agent,
    make_agent_capability,
    make_agent_config,
    make_agent_state,
    make_customer,
    make_optimization,
    make_quality_baseline,
    make_quality_metric,
    make_recommendation,
    make_workflow_step,
)
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.orm import Session

from optiinfra.models import AgentType

CHECK_VIOLATION = "23514"
UNIQUE_VIOLATION = "23505"
INVALID_TEXT_REPRESENTATION = "22P02"


@contextmanager
def refused(session: Session, sqlstate: str, constraint: str | None = None) -> Iterator[None]:
    """Expect the block's writes to be refused with `sqlstate` (and by `constraint`), inside a savepoint."""
    with pytest.raises(DBAPIError) as raised, session.begin_nested():
        yield
        session.flush()
    diagnostics = raised.value.orig.diag  # type: ignore[union-attr]
    assert raised.value.orig.sqlstate == sqlstate  # type: ignore[union-attr]
    if constraint is not None:
        assert diagnostics.constraint_name == constraint


@pytest.mark.parametrize("score", [1.5, -0.1, 1.0000001])
def test_confidence_score_outside_unit_interval_is_refused(session: Session, score: float) -> None:
    with refused(session, CHECK_VIOLATION, "check_confidence_range"):
        make_recommendation(session, confidence_score=score)


@pytest.mark.parametrize("score", [0.0, 0.5, 1.0])
def test_confidence_score_inside_unit_interval_is_accepted(session: Session, score: float) -> None:
    recommendation = make_recommendation(session, confidence_score=score)

    stored = session.scalar(
        text("SELECT confidence_score FROM recommendations WHERE id = :id"), {"id": recommendation.id}
    )
    assert stored == score


@pytest.mark.parametrize("progress", [101, -1])
def test_progress_outside_0_to_100_is_refused(session: Session, progress: int) -> None:
    recommendation = make_recommendation(session)

    with refused(session, CHECK_VIOLATION, "check_progress_range"):
        make_optimization(session, recommendation=recommendation, progress=progress)


@pytest.mark.parametrize("progress", [0, 100])
def test_progress_at_its_bounds_is_accepted(session: Session, progress: int) -> None:
    assert make_optimization(session, progress=progress).progress == progress


QUALITY_SCORE_COLUMNS: list[tuple[Callable[..., Any], str]] = [
    (make_quality_metric, "relevance_score"),
    (make_quality_metric, "coherence_score"),
    (make_quality_metric, "factuality_score"),
    (make_quality_metric, "toxicity_score"),
    (make_quality_metric, "overall_quality_score"),
    (make_quality_baseline, "avg_relevance_score"),
    (make_quality_baseline, "avg_coherence_score"),
    (make_quality_baseline, "avg_factuality_score"),
    (make_quality_baseline, "avg_overall_score"),
]


@pytest.mark.parametrize("value", [-0.01, 1.01])
@pytest.mark.parametrize(
    ("factory", "column"), QUALITY_SCORE_COLUMNS, ids=[column for _, column in QUALITY_SCORE_COLUMNS]
)
def test_quality_score_outside_unit_interval_is_refused(
    session: Session, factory: Callable[..., Any], column: str, value: float
) -> None:
    customer, agent = make_customer(session), make_agent(session, type=AgentType.APPLICATION)

    with refused(session, CHECK_VIOLATION):
        factory(session, customer=customer, agent=agent, **{column: value})


def test_quality_scores_at_the_bounds_are_accepted(session: Session) -> None:
    metric = make_quality_metric(session, relevance_score=0.0, toxicity_score=1.0, overall_quality_score=1.0)

    assert (metric.relevance_score, metric.toxicity_score) == (0.0, 1.0)


NON_NEGATIVE_COLUMNS: list[tuple[Callable[..., Any], str]] = [
    (make_quality_metric, "prompt_tokens"),
    (make_quality_metric, "completion_tokens"),
    (make_quality_metric, "latency_ms"),
    (make_quality_baseline, "p95_latency_ms"),
]


@pytest.mark.parametrize(
    ("factory", "column"), NON_NEGATIVE_COLUMNS, ids=[column for _, column in NON_NEGATIVE_COLUMNS]
)
def test_negative_token_count_or_latency_is_refused(
    session: Session, factory: Callable[..., Any], column: str
) -> None:
    customer, agent = make_customer(session), make_agent(session, type=AgentType.APPLICATION)

    with refused(session, CHECK_VIOLATION):
        factory(session, customer=customer, agent=agent, **{column: -1})


def test_zero_tokens_and_latency_are_accepted(session: Session) -> None:
    metric = make_quality_metric(session, prompt_tokens=0, completion_tokens=0, latency_ms=0.0)

    assert (metric.prompt_tokens, metric.completion_tokens, metric.latency_ms) == (0, 0, 0.0)


def test_negative_retry_count_is_refused(session: Session) -> None:
    step = make_workflow_step(session)

    with refused(session, CHECK_VIOLATION):
        session.execute(text("UPDATE workflow_steps SET retry_count = -1 WHERE id = :id"), {"id": step.id})


def test_negative_retry_count_is_refused_through_the_orm(session: Session) -> None:
    step = make_workflow_step(session)

    with refused(session, CHECK_VIOLATION):
        step.retry_count = -1


def test_agent_with_the_same_type_and_name_is_refused(session: Session) -> None:
    agent = make_agent(session, type=AgentType.COST)

    with refused(session, UNIQUE_VIOLATION, "uq_agent_type_name"):
        make_agent(session, type=AgentType.COST, name=agent.name)


def test_agent_with_the_same_name_but_another_type_is_accepted(session: Session) -> None:
    agent = make_agent(session, type=AgentType.COST)

    assert make_agent(session, type=AgentType.PERFORMANCE, name=agent.name).name == agent.name


def test_duplicate_config_key_for_one_agent_is_refused(session: Session) -> None:
    config = make_agent_config(session)

    with refused(session, UNIQUE_VIOLATION, "uq_agent_config"):
        make_agent_config(session, agent_id=config.agent_id, config_key=config.config_key)


def test_duplicate_capability_for_one_agent_is_refused(session: Session) -> None:
    capability = make_agent_capability(session)

    with refused(session, UNIQUE_VIOLATION, "uq_agent_capability"):
        make_agent_capability(session, agent_id=capability.agent_id, capability_name=capability.capability_name)


def test_second_state_row_for_one_agent_is_refused(session: Session) -> None:
    state = make_agent_state(session)

    with refused(session, UNIQUE_VIOLATION):
        make_agent_state(session, agent_id=state.agent_id)


@pytest.mark.parametrize("column", ["email", "api_key"])
def test_duplicate_customer_email_or_api_key_is_refused(session: Session, column: str) -> None:
    customer = make_customer(session)

    with refused(session, UNIQUE_VIOLATION):
        make_customer(session, **{column: getattr(customer, column)})


def test_duplicate_request_id_for_the_same_customer_is_refused(session: Session) -> None:
    metric = make_quality_metric(session)

    with refused(session, UNIQUE_VIOLATION):
        make_quality_metric(session, customer_id=metric.customer_id, request_id=metric.request_id)


def test_same_request_id_for_another_customer_is_accepted(session: Session) -> None:
    metric = make_quality_metric(session)

    other = make_quality_metric(session, request_id=metric.request_id)

    assert other.request_id == metric.request_id
    assert other.customer_id != metric.customer_id


@pytest.mark.parametrize(
    ("table", "column", "value"),
    [
        ("customers", "plan", "platinum"),
        ("customers", "plan", "FREE"),
        ("customers", "status", "deleted"),
    ],
)
def test_invalid_enum_value_through_raw_sql_is_refused(
    session: Session, table: str, column: str, value: str
) -> None:
    customer = make_customer(session)
    statements = {
        ("customers", "plan"): "UPDATE customers SET plan = :value WHERE id = :id",
        ("customers", "status"): "UPDATE customers SET status = :value WHERE id = :id",
    }

    with refused(session, INVALID_TEXT_REPRESENTATION):
        session.execute(text(statements[(table, column)]), {"value": value, "id": customer.id})


def test_the_seed_typo_none_is_not_a_recommendation_status_but_rolled_back_is(session: Session) -> None:
    recommendation = make_recommendation(session)
    update = text("UPDATE recommendations SET status = :status WHERE id = :id")

    with refused(session, INVALID_TEXT_REPRESENTATION):
        session.execute(update, {"status": "none", "id": recommendation.id})
    session.execute(update, {"status": "rolled_back", "id": recommendation.id})

    status = session.scalar(text("SELECT status::text FROM recommendations WHERE id = :id"), {"id": recommendation.id})
    assert status == "rolled_back"
