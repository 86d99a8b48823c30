"""Query models (optiinfra.listing): each filter field names a real column of the table its list reads, and given
fields become exactly the conditions they declare."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pytest
from sqlalchemy.orm import InstrumentedAttribute

from optiinfra import models
from optiinfra.agent_state.schemas import AgentMetricQuery
from optiinfra.agents.schemas import AgentFilters
from optiinfra.alerts.schemas import AlertFilters, AlertRouteFilters
from optiinfra.collectors.schemas import PrometheusSourceFilters
from optiinfra.customers.schemas import CustomerFilters
from optiinfra.events.schemas import EventFilters
from optiinfra.listing import Condition, FilterModel, ListQuery
from optiinfra.quality.schemas import BaselineFilters, RegressionFilters
from optiinfra.recommendations.schemas import OptimizationFilters, RecommendationFilters
from optiinfra.resources.schemas import ResourceMetricQuery, ScalingEventFilters
from optiinfra.workflows.schemas import ExecutionFilters

# Every query model and the table its repository reads.
QUERY_MODELS: list[tuple[type[FilterModel], type[object]]] = [
    (AgentFilters, models.Agent),
    (CustomerFilters, models.Customer),
    (EventFilters, models.Event),
    (RecommendationFilters, models.Recommendation),
    (OptimizationFilters, models.Optimization),
    (AlertRouteFilters, models.AlertRoute),
    (AlertFilters, models.AlertOutbox),
    (PrometheusSourceFilters, models.PrometheusSource),
    (ExecutionFilters, models.WorkflowExecution),
    (ScalingEventFilters, models.ScalingEvent),
    (ResourceMetricQuery, models.ResourceMetric),
    (AgentMetricQuery, models.AgentMetric),
    (BaselineFilters, models.QualityBaseline),
    (RegressionFilters, models.QualityRegression),
]


def _every_field_given(model: type[FilterModel]) -> FilterModel:
    """The model with a (type-blind) value in every field, so that each filter yields its condition."""
    return model.model_construct(**{name: object() for name in model.model_fields})


@pytest.mark.parametrize(("model", "table"), QUERY_MODELS, ids=lambda item: getattr(item, "__name__", ""))
def test_every_filter_names_a_column_of_its_table(model: type[FilterModel], table: type[object]) -> None:
    conditions = list(_every_field_given(model).conditions())
    assert conditions, f"{model.__name__} filters nothing"
    for condition in conditions:
        assert isinstance(getattr(table, condition.column, None), InstrumentedAttribute), condition.column
    if issubclass(model, ListQuery):  # a list is ordered and paged on these
        assert isinstance(getattr(table, "created_at", None), InstrumentedAttribute)
        assert isinstance(getattr(table, "id", None), InstrumentedAttribute)


def test_only_given_filters_become_conditions_with_their_declared_operator() -> None:
    since = datetime(2026, 1, 1, tzinfo=UTC)
    agent_id = uuid.uuid4()
    filters = ScalingEventFilters(agent_id=agent_id, success=False, since=since, limit=10, cursor="abc")
    assert list(filters.conditions()) == [
        Condition("agent_id", "==", agent_id),
        Condition("success", "==", False),  # False is a filter; only None means "any"
        Condition("executed_at", ">=", since),
    ]
    assert list(RegressionFilters(open=False).conditions()) == [Condition("resolved_at", "is null", False)]
    assert list(EventFilters().conditions()) == []


def test_query_models_accept_the_parameters_accepted_before() -> None:
    """Unknown query parameters were ignored by the routes, and still are (no extra="forbid")."""
    assert AgentFilters.model_validate({"type": "cost", "unknown": "1"}).type == "cost"
