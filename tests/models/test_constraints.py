"""Values outside their domain are refused by PostgreSQL itself, whatever client writes them."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

from optiinfra.enums import AgentType
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

CHECK_VIOLATION = "23514"
UNIQUE_VIOLATION = "23505"
INVALID_TEXT_REPRESENTATION = "22P02"


def assert_refused(session: Session, write: Callable[[], object], sqlstate: str, constraint: str | None = None) -> None:
    """Run `write` and flush inside a savepoint; PostgreSQL must refuse it with `sqlstate` (by `constraint`)."""

    def write_in_savepoint() -> None:
        with session.begin_nested():
            write()
            session.flush()

    with pytest.raises(DBAPIError) as raised:
        write_in_savepoint()

    error = raised.value.orig
    assert error is not None
    assert error.sqlstate == sqlstate  # type: ignore[attr-defined]
    if constraint is not None:
        assert error.diag.constraint_name == constraint  # type: ignore[attr-defined]


@pytest.mark.parametrize("score", [1.5, -0.1, 1.0000001])
def test_confidence_score_outside_unit_interval_is_refused(session: Session, score: float) -> None:
    assert_refused(
        session, lambda: make_recommendation(session, confidence_score=score), CHECK_VIOLATION, "check_confidence_range"
    )


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

    assert_refused(
        session,
        lambda: make_optimization(session, recommendation=recommendation, progress=progress),
        CHECK_VIOLATION,
        "check_progress_range",
    )


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

    assert_refused(
        session, lambda: factory(session, customer=customer, agent=agent, **{column: value}), CHECK_VIOLATION
    )


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
def test_negative_token_count_or_latency_is_refused(session: Session, factory: Callable[..., Any], column: str) -> None:
    customer, agent = make_customer(session), make_agent(session, type=AgentType.APPLICATION)

    assert_refused(session, lambda: factory(session, customer=customer, agent=agent, **{column: -1}), CHECK_VIOLATION)


def test_zero_tokens_and_latency_are_accepted(session: Session) -> None:
    metric = make_quality_metric(session, prompt_tokens=0, completion_tokens=0, latency_ms=0.0)

    assert (metric.prompt_tokens, metric.completion_tokens, metric.latency_ms) == (0, 0, 0.0)


def test_negative_retry_count_is_refused(session: Session) -> None:
    step = make_workflow_step(session)

    assert_refused(
        session,
        lambda: session.execute(text("UPDATE workflow_steps SET retry_count = -1 WHERE id = :id"), {"id": step.id}),
        CHECK_VIOLATION,
    )


def test_negative_retry_count_is_refused_through_the_orm(session: Session) -> None:
    step = make_workflow_step(session)

    assert_refused(session, lambda: setattr(step, "retry_count", -1), CHECK_VIOLATION)


def test_agent_with_the_same_type_and_name_is_refused(session: Session) -> None:
    agent = make_agent(session, type=AgentType.COST)

    assert_refused(
        session,
        lambda: make_agent(session, type=AgentType.COST, name=agent.name),
        UNIQUE_VIOLATION,
        "uq_agent_type_name",
    )


def test_agent_with_the_same_name_but_another_type_is_accepted(session: Session) -> None:
    agent = make_agent(session, type=AgentType.COST)

    assert make_agent(session, type=AgentType.PERFORMANCE, name=agent.name).name == agent.name


def test_duplicate_config_key_for_one_agent_is_refused(session: Session) -> None:
    config = make_agent_config(session)

    assert_refused(
        session,
        lambda: make_agent_config(session, agent_id=config.agent_id, config_key=config.config_key),
        UNIQUE_VIOLATION,
        "uq_agent_config",
    )


def test_duplicate_capability_for_one_agent_is_refused(session: Session) -> None:
    capability = make_agent_capability(session)

    assert_refused(
        session,
        lambda: make_agent_capability(
            session, agent_id=capability.agent_id, capability_name=capability.capability_name
        ),
        UNIQUE_VIOLATION,
        "uq_agent_capability",
    )


def test_second_state_row_for_one_agent_is_refused(session: Session) -> None:
    state = make_agent_state(session)

    assert_refused(session, lambda: make_agent_state(session, agent_id=state.agent_id), UNIQUE_VIOLATION)


@pytest.mark.parametrize("column", ["email", "api_key"])
def test_duplicate_customer_email_or_api_key_is_refused(session: Session, column: str) -> None:
    customer = make_customer(session)

    assert_refused(session, lambda: make_customer(session, **{column: getattr(customer, column)}), UNIQUE_VIOLATION)


def test_duplicate_request_id_for_the_same_customer_is_refused(session: Session) -> None:
    metric = make_quality_metric(session)

    assert_refused(
        session,
        lambda: make_quality_metric(session, customer_id=metric.customer_id, request_id=metric.request_id),
        UNIQUE_VIOLATION,
    )


def test_same_request_id_for_another_customer_is_accepted(session: Session) -> None:
    metric = make_quality_metric(session)

    other = make_quality_metric(session, request_id=metric.request_id)

    assert other.request_id == metric.request_id
    assert other.customer_id != metric.customer_id


@pytest.mark.parametrize(
    ("statement", "value"),
    [
        ("UPDATE customers SET plan = :value WHERE id = :id", "platinum"),
        ("UPDATE customers SET plan = :value WHERE id = :id", "FREE"),
        ("UPDATE customers SET status = :value WHERE id = :id", "deleted"),
        ("INSERT INTO agents (type, name) VALUES (:value, CAST(:id AS text))", "gpu"),
    ],
    ids=["unknown-plan", "enum-name-instead-of-value", "unknown-status", "unknown-agent-type-on-insert"],
)
def test_invalid_enum_value_through_raw_sql_is_refused(session: Session, statement: str, value: str) -> None:
    customer = make_customer(session)

    assert_refused(
        session,
        lambda: session.execute(text(statement), {"value": value, "id": customer.id}),
        INVALID_TEXT_REPRESENTATION,
    )


def test_the_seed_typo_none_is_not_a_recommendation_status_but_rolled_back_is(session: Session) -> None:
    recommendation = make_recommendation(session)
    update = text("UPDATE recommendations SET status = :status WHERE id = :id")

    assert_refused(
        session,
        lambda: session.execute(update, {"status": "none", "id": recommendation.id}),
        INVALID_TEXT_REPRESENTATION,
    )
    session.execute(update, {"status": "rolled_back", "id": recommendation.id})

    status = session.scalar(text("SELECT status::text FROM recommendations WHERE id = :id"), {"id": recommendation.id})
    assert status == "rolled_back"
