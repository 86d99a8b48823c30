"""The Alembic chain: its shape, what each revision creates and removes, and data surviving a round trip.

Tests that migrate build their own database (`empty_engine`, or one module-scoped database for the
step-by-step walk); read-only checks of the head schema use the shared `migrated_engine`.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import Connection, Engine, create_engine, text

from optiinfra.db.migrations import (
    QUEUE_PREFIX,
    current_revision,
    downgrade,
    head_revision,
    known_revisions,
    schema_differences,
    script_directory,
    upgrade,
)
from optiinfra.models import QUALITY_PARTITION_PREFIX

pytestmark = pytest.mark.migrations

REVISIONS = [
    "001_core_schema",
    "002_agent_state_tables",
    "003_workflow_history",
    "004_resource_schema",
    "005_application_schema",
]

TABLES_BY_REVISION: dict[str, set[str]] = {
    "001_core_schema": {"customers", "agents", "events", "recommendations", "approvals", "optimizations"},
    "002_agent_state_tables": {"agent_configs", "agent_states", "agent_capabilities", "agent_metrics"},
    "003_workflow_history": {"workflow_executions", "workflow_steps", "workflow_artifacts"},
    "004_resource_schema": {"resource_metrics", "scaling_events"},
    "005_application_schema": {"quality_metrics", "quality_baselines", "quality_regressions"},
    "009_agent_customers": {"agent_customers"},
    "011_hardening": {"dashboard_sessions"},
    "013_scorers": {"scoring_texts"},
    "014_alerts": {"alert_routes", "alert_outbox", "alert_deliveries", "metric_counters"},
    "016_quality_partitions": {"quality_request_keys"},
    "017_quality_rollups": {"quality_rollups"},
    "018_prometheus_sources": {"prometheus_sources"},
}
ALL_TABLES = set().union(*TABLES_BY_REVISION.values())

ENUMS: dict[str, list[str]] = {
    "customerplan": ["free", "startup", "enterprise"],
    "customerstatus": ["active", "suspended", "churned"],
    "agenttype": ["orchestrator", "cost", "performance", "resource", "application"],
    "agentstatus": ["starting", "healthy", "degraded", "failed", "stopped"],
    "eventseverity": ["info", "warning", "error", "critical"],
    "recommendationpriority": ["low", "medium", "high", "critical"],
    "recommendationstatus": [
        "pending",
        "approved",
        "rejected",
        "executing",
        "completed",
        "failed",
        "rolled_back",
    ],
    "approvalstatus": ["pending", "approved", "rejected"],
    "optimizationstatus": ["queued", "executing", "completed", "failed", "rolled_back"],
    "configtype": ["string", "integer", "float", "boolean", "json"],
    "agentstatusdetail": ["idle", "busy", "processing", "waiting", "error"],
    "metrictype": ["counter", "gauge", "histogram"],
    "workflow_type": [
        "cost_analysis",
        "performance_tuning",
        "resource_optimization",
        "quality_check",
        "scaling_decision",
        "configuration_update",
        "health_check",
        "anomaly_detection",
    ],
    "workflow_status": [
        "pending",
        "running",
        "completed",
        "failed",
        "cancelled",
        "timeout",
        "waiting",
        "paused",
        "cancelling",
    ],
    "step_status": ["pending", "running", "completed", "failed", "skipped", "retrying", "waiting", "paused"],
    "artifact_type": ["report", "config", "log", "recommendation", "chart", "metrics", "alert", "diagnostic"],
    "resource_type": ["gpu", "cpu", "memory", "disk", "network"],
    "scaling_event_type": ["scale_up", "scale_down", "auto_scale_triggered", "manual_scale", "scale_cancelled"],
    "baseline_type": ["initial", "updated", "rollback"],
    "regression_type": ["quality_drop", "latency_increase", "hallucination_spike", "toxicity_increase"],
    "regression_severity": ["low", "medium", "high", "critical"],
    "regression_action": ["alert_only", "rollback_triggered", "manual_review", "auto_fixed"],
}

ENUMS_BY_REVISION: dict[str, set[str]] = {
    "001_core_schema": {
        "customerplan",
        "customerstatus",
        "agenttype",
        "agentstatus",
        "eventseverity",
        "recommendationpriority",
        "recommendationstatus",
        "approvalstatus",
        "optimizationstatus",
    },
    "002_agent_state_tables": {"configtype", "agentstatusdetail", "metrictype"},
    "003_workflow_history": {"workflow_type", "workflow_status", "step_status", "artifact_type"},
    "004_resource_schema": {"resource_type", "scaling_event_type"},
    "005_application_schema": {"baseline_type", "regression_type", "regression_severity", "regression_action"},
}

# Indexes the seeds name, with the columns they name. ix_quality_regressions_unresolved is checked apart:
# SCHEMA.md lets an index be made smarter, and that one serves "open regressions" lookups.
SEED_NAMED_INDEXES: dict[str, tuple[str, list[str]]] = {
    "idx_agent_type": ("agents", ["type"]),
    "idx_agent_status": ("agents", ["status"]),
    "idx_agent_heartbeat": ("agents", ["last_heartbeat"]),
    "idx_approval_rec": ("approvals", ["recommendation_id"]),
    "idx_approval_status": ("approvals", ["status"]),
    "idx_opt_rec": ("optimizations", ["recommendation_id"]),
    "idx_opt_customer": ("optimizations", ["customer_id"]),
    "idx_opt_agent": ("optimizations", ["agent_id"]),
    "idx_opt_status": ("optimizations", ["status"]),
    "idx_opt_customer_status": ("optimizations", ["customer_id", "status"]),
    "ix_quality_baselines_agent_model": ("quality_baselines", ["agent_id", "model_name"]),
    "ix_quality_baselines_customer_model": ("quality_baselines", ["customer_id", "model_name"]),
    "ix_quality_regressions_agent_severity": ("quality_regressions", ["agent_id", "severity"]),
    "ix_quality_regressions_customer_type": ("quality_regressions", ["customer_id", "regression_type"]),
}

# quality_metrics deviates from the seeds (issue 16, migration 015): it keeps only the indexes its reads need
# (benchmarks/quality_scale.py EXPLAINs them); the seeds' other ten are dropped, and the downgrade restores them.
QUALITY_METRICS_015_INDEXES: dict[str, tuple[str, list[str]]] = {
    "pk_quality_metrics": ("btree", ["id"]),
    "uq_quality_metrics_customer_request": ("btree", ["customer_id", "request_id"]),
    "ix_quality_metrics_customer_model_version_timestamp": (
        "btree",
        ["customer_id", "model_name", "model_version", "timestamp"],
    ),
    "ix_quality_metrics_timestamp_brin": ("brin", ["timestamp"]),
}
# Migration 016 partitions the table by timestamp: the primary key takes the partition key, and the idempotency key
# (customer_id, request_id) moves to quality_request_keys.
QUALITY_METRICS_INDEXES: dict[str, tuple[str, list[str]]] = {
    "pk_quality_metrics": ("btree", ["id", "timestamp"]),
    "ix_quality_metrics_customer_model_version_timestamp": (
        "btree",
        ["customer_id", "model_name", "model_version", "timestamp"],
    ),
    "ix_quality_metrics_timestamp_brin": ("brin", ["timestamp"]),
}
SEED_QUALITY_METRICS_INDEXES: dict[str, list[str]] = {
    "ix_quality_metrics_agent_id": ["agent_id"],
    "ix_quality_metrics_agent_model": ["agent_id", "model_name"],
    "ix_quality_metrics_customer_id": ["customer_id"],
    "ix_quality_metrics_customer_model": ["customer_id", "model_name"],
    "ix_quality_metrics_hallucination_detected": ["hallucination_detected"],
    "ix_quality_metrics_model_name": ["model_name"],
    "ix_quality_metrics_model_timestamp": ["model_name", "timestamp"],
    "ix_quality_metrics_overall_quality_score": ["overall_quality_score"],
    "ix_quality_metrics_request_id": ["request_id"],
    "ix_quality_metrics_timestamp": ["timestamp"],
}

# Indexes asked for by column (the seeds' `index=True`, SCHEMA.md's lists for 0.2b-0.2d), whatever their name.
INDEXED_COLUMNS: list[tuple[str, tuple[str, ...]]] = [
    *(("customers", (column,)) for column in ("email", "api_key", "status")),
    *(("events", (column,)) for column in ("customer_id", "agent_id", "event_type", "severity", "created_at")),
    *(
        ("recommendations", (column,))
        for column in ("customer_id", "agent_id", "type", "priority", "status", "created_at")
    ),
    ("agent_configs", ("agent_id",)),
    ("agent_configs", ("config_key",)),
    ("agent_states", ("agent_id",)),
    ("agent_states", ("current_status",)),
    ("agent_states", ("last_activity",)),
    ("agent_states", ("current_workflow_id",)),
    ("agent_capabilities", ("capability_name",)),
    ("agent_capabilities", ("enabled",)),
    ("agent_metrics", ("agent_id", "metric_name")),
    ("agent_metrics", ("agent_id", "recorded_at")),
    ("agent_metrics", ("metric_name",)),
    ("agent_metrics", ("recorded_at",)),
    *(
        ("workflow_executions", (column,))
        for column in ("agent_id", "customer_id", "workflow_type", "status", "started_at")
    ),
    ("workflow_executions", ("agent_id", "status")),
    ("workflow_executions", ("customer_id", "workflow_type")),
    ("workflow_steps", ("workflow_execution_id", "step_order")),
    ("workflow_steps", ("workflow_execution_id", "status")),
    ("workflow_steps", ("step_name", "status")),
    ("workflow_steps", ("status",)),
    ("workflow_artifacts", ("workflow_execution_id", "artifact_type")),
    ("workflow_artifacts", ("workflow_step_id", "artifact_type")),
    ("resource_metrics", ("customer_id", "resource_type")),
    ("resource_metrics", ("agent_id", "instance_id")),
    ("resource_metrics", ("instance_id", "timestamp")),
    ("resource_metrics", ("resource_type", "metric_name")),
    ("resource_metrics", ("timestamp",)),
    ("scaling_events", ("agent_id", "event_type")),
    ("scaling_events", ("customer_id", "success")),
    ("scaling_events", ("workflow_execution_id",)),
    ("scaling_events", ("executed_at",)),
    *(
        ("quality_baselines", (column,))
        for column in ("agent_id", "customer_id", "model_name", "baseline_type", "established_at")
    ),
    *(
        ("quality_regressions", (column,))
        for column in (
            "agent_id",
            "customer_id",
            "baseline_id",
            "workflow_execution_id",
            "regression_type",
            "severity",
            "detected_at",
            "action_taken",
        )
    ),
]

TIMESTAMP_COLUMN_NAMES = {"timestamp", "last_heartbeat", "last_activity", "valid_until"}


def table_names(engine: Engine) -> set[str]:
    with engine.connect() as connection:
        names = set(connection.scalars(text("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")))
    # The job queue's own tables (procrastinate, migration 008) are not OptiInfra's data model, and quality_metrics'
    # partitions (016) are parts of one table.
    return {name for name in names if not name.startswith((QUEUE_PREFIX, QUALITY_PARTITION_PREFIX))}


def enum_types(engine: Engine) -> dict[str, list[str]]:
    """Every enum type in the public schema with its labels in declaration order (types without labels too)."""
    with engine.connect() as connection:
        rows = connection.execute(
            text(
                "SELECT t.typname, e.enumlabel FROM pg_type t "
                "JOIN pg_namespace n ON n.oid = t.typnamespace "
                "LEFT JOIN pg_enum e ON e.enumtypid = t.oid "
                "WHERE n.nspname = 'public' AND t.typtype = 'e' "
                "ORDER BY t.typname, e.enumsortorder"
            )
        )
        labels: dict[str, list[str]] = defaultdict(list)
        for type_name, label in rows:
            if type_name.startswith(QUEUE_PREFIX):
                continue
            labels[type_name].extend([label] if label is not None else [])
        return dict(labels)


def column_names(engine: Engine, table: str) -> set[str]:
    with engine.connect() as connection:
        return set(
            connection.scalars(
                text(
                    "SELECT column_name FROM information_schema.columns "
                    "WHERE table_schema = 'public' AND table_name = :table"
                ),
                {"table": table},
            )
        )


def index_rows(engine: Engine) -> list[dict[str, Any]]:
    """Every index in the public schema: table, name, key columns in order, predicate, definition parts."""
    with engine.connect() as connection:
        rows = connection.execute(
            text(
                "SELECT t.relname AS table_name, i.relname AS index_name, am.amname AS method, "
                "x.indkey::text AS indkey, x.indclass::text AS indclass, x.indoption::text AS indoption, "
                "x.indcollation::text AS indcollation, "
                "pg_get_expr(x.indexprs, x.indrelid) AS expressions, "
                "pg_get_expr(x.indpred, x.indrelid) AS predicate, "
                "ARRAY(SELECT a.attname FROM unnest(x.indkey::int2[]) WITH ORDINALITY AS k(attnum, position) "
                "      JOIN pg_attribute a ON a.attrelid = x.indrelid AND a.attnum = k.attnum "
                "      ORDER BY k.position) AS columns "
                "FROM pg_index x "
                "JOIN pg_class t ON t.oid = x.indrelid "
                "JOIN pg_class i ON i.oid = x.indexrelid "
                "JOIN pg_am am ON am.oid = i.relam "
                "JOIN pg_namespace n ON n.oid = t.relnamespace "
                "WHERE n.nspname = 'public'"
            )
        )
        return [dict(row._mapping) for row in rows]


def insert_returning_id(connection: Connection, statement: str, **values: Any) -> Any:
    return connection.execute(text(statement), values).scalar_one()


@pytest.fixture(scope="module")
def stepping_engine(create_database: Any) -> Iterator[Engine]:
    """One database for the step-by-step walk; every test leaves it at head."""
    engine = create_engine(create_database())
    upgrade(engine)
    yield engine
    engine.dispose()


def test_chain_is_linear_with_one_head_and_starts_with_the_five_foundation_revisions() -> None:
    scripts = script_directory()
    chain = known_revisions()

    assert chain[: len(REVISIONS)] == REVISIONS
    assert scripts.get_heads() == [chain[-1]]
    assert head_revision() == chain[-1]
    for previous, revision in zip([None, *chain], chain, strict=False):
        script = scripts.get_revision(revision)
        assert script is not None
        assert script.down_revision == previous
        assert not script.is_branch_point
        assert not script.is_merge_point
    # Later changes are new revisions numbered on from 006.
    assert [revision[:4] for revision in chain] == [f"{number:03d}_" for number in range(1, len(chain) + 1)]


def test_every_revision_explains_itself_and_has_a_downgrade() -> None:
    for revision in known_revisions():
        script = script_directory().get_revision(revision)
        assert script is not None
        assert (script.module.__doc__ or "").strip(), f"{revision} has no docstring"
        assert callable(getattr(script.module, "downgrade", None))


def test_upgrade_head_creates_exactly_the_28_tables_and_22_enum_types(empty_engine: Engine) -> None:
    assert current_revision(empty_engine) is None
    assert table_names(empty_engine) == set()

    upgrade(empty_engine)

    assert current_revision(empty_engine) == head_revision()
    assert table_names(empty_engine) == ALL_TABLES | {"alembic_version"}
    assert len(ALL_TABLES) == 28
    assert enum_types(empty_engine) == ENUMS
    assert len(ENUMS) == 22


def test_models_match_the_migrated_schema(migrated_engine: Engine) -> None:
    assert schema_differences(migrated_engine) == []


def test_downgrade_to_base_removes_every_table_and_enum_type_and_upgrade_works_again(
    empty_engine: Engine,
) -> None:
    upgrade(empty_engine)

    downgrade(empty_engine, "base")

    assert current_revision(empty_engine) is None
    assert table_names(empty_engine) == {"alembic_version"}
    assert enum_types(empty_engine) == {}

    upgrade(empty_engine)

    assert current_revision(empty_engine) == head_revision()
    assert table_names(empty_engine) == ALL_TABLES | {"alembic_version"}
    assert enum_types(empty_engine) == ENUMS
    assert schema_differences(empty_engine) == []


@pytest.mark.parametrize("revision", REVISIONS)
def test_stepping_down_one_revision_removes_exactly_its_own_tables_and_stepping_up_restores_them(
    stepping_engine: Engine, revision: str
) -> None:
    upgrade(stepping_engine)
    downgrade(stepping_engine, revision)
    tables_before = table_names(stepping_engine)
    enums_before = enum_types(stepping_engine)
    agent_state_columns_before = column_names(stepping_engine, "agent_states")
    previous = REVISIONS[REVISIONS.index(revision) - 1] if revision != REVISIONS[0] else None

    downgrade(stepping_engine, "-1")

    assert current_revision(stepping_engine) == previous
    assert tables_before - table_names(stepping_engine) == TABLES_BY_REVISION[revision]
    assert table_names(stepping_engine) <= tables_before
    assert set(enums_before) - set(enum_types(stepping_engine)) == ENUMS_BY_REVISION[revision]
    if revision == "003_workflow_history":
        # 003 also owns the agent_states column pointing at workflow_executions.
        assert column_names(stepping_engine, "agent_states") == agent_state_columns_before - {"current_workflow_id"}

    upgrade(stepping_engine, "+1")

    assert current_revision(stepping_engine) == revision
    assert table_names(stepping_engine) == tables_before
    assert enum_types(stepping_engine) == enums_before
    assert column_names(stepping_engine, "agent_states") == agent_state_columns_before
    upgrade(stepping_engine)


def test_walking_the_whole_chain_down_to_base_and_up_one_step_at_a_time_ends_without_drift(
    stepping_engine: Engine,
) -> None:
    chain = known_revisions()

    visited_down = []
    for _ in chain:
        downgrade(stepping_engine, "-1")
        visited_down.append(current_revision(stepping_engine))
    visited_up = []
    for _ in chain:
        upgrade(stepping_engine, "+1")
        visited_up.append(current_revision(stepping_engine))

    assert visited_down == [*reversed(chain[:-1]), None]
    assert visited_up == chain
    assert schema_differences(stepping_engine) == []


def test_downgrading_to_core_with_data_present_keeps_the_core_rows(empty_engine: Engine) -> None:
    upgrade(empty_engine, "001_core_schema")
    with empty_engine.begin() as connection:
        customer_id = insert_returning_id(
            connection,
            "INSERT INTO customers (name, email, api_key) VALUES (:name, :email, :api_key) RETURNING id",
            name="Acme",
            email="ops@acme.example",
            api_key="a" * 64,
        )
        agent_id = insert_returning_id(
            connection,
            "INSERT INTO agents (type, name) VALUES (:type, :name) RETURNING id",
            type="cost",
            name="cost-1",
        )
        event_id = insert_returning_id(
            connection,
            "INSERT INTO events (customer_id, agent_id, event_type, data) "
            "VALUES (:customer_id, :agent_id, :event_type, CAST(:data AS jsonb)) RETURNING id",
            customer_id=customer_id,
            agent_id=agent_id,
            event_type="agent.registered",
            data='{"region": "eu-west-1"}',
        )
        recommendation_id = insert_returning_id(
            connection,
            "INSERT INTO recommendations (customer_id, agent_id, type, title, confidence_score, status) "
            "VALUES (:customer_id, :agent_id, :type, :title, :confidence, :status) RETURNING id",
            customer_id=customer_id,
            agent_id=agent_id,
            type="spot_migration",
            title="Use spot instances",
            confidence=0.75,
            status="rolled_back",
        )

    upgrade(empty_engine, "002_agent_state_tables")
    with empty_engine.begin() as connection:
        connection.execute(text("INSERT INTO agent_states (agent_id) VALUES (:agent_id)"), {"agent_id": agent_id})
        connection.execute(
            text("INSERT INTO agent_configs (agent_id, config_key, config_value) VALUES (:agent_id, :k, :v)"),
            {"agent_id": agent_id, "k": "poll_seconds", "v": "30"},
        )

    upgrade(empty_engine, "003_workflow_history")
    with empty_engine.begin() as connection:
        workflow_id = insert_returning_id(
            connection,
            "INSERT INTO workflow_executions (agent_id, customer_id, workflow_type) "
            "VALUES (:agent_id, :customer_id, :workflow_type) RETURNING id",
            agent_id=agent_id,
            customer_id=customer_id,
            workflow_type="cost_analysis",
        )
        connection.execute(
            text("UPDATE agent_states SET current_workflow_id = :workflow_id WHERE agent_id = :agent_id"),
            {"workflow_id": workflow_id, "agent_id": agent_id},
        )

    upgrade(empty_engine, "004_resource_schema")
    with empty_engine.begin() as connection:
        connection.execute(
            text(
                "INSERT INTO scaling_events (agent_id, customer_id, workflow_execution_id, event_type, "
                "trigger_reason, before_state, after_state, executed_at) VALUES (:agent_id, :customer_id, "
                ":workflow_id, :event_type, :reason, CAST(:before AS jsonb), CAST(:after AS jsonb), now())"
            ),
            {
                "agent_id": agent_id,
                "customer_id": customer_id,
                "workflow_id": workflow_id,
                "event_type": "scale_up",
                "reason": "utilization",
                "before": '{"instance_count": 1}',
                "after": '{"instance_count": 2}',
            },
        )

    upgrade(empty_engine, "005_application_schema")
    with empty_engine.begin() as connection:
        connection.execute(
            text(
                "INSERT INTO quality_metrics (agent_id, customer_id, request_id, model_name, model_version, "
                "overall_quality_score, timestamp) "
                "VALUES (:agent_id, :customer_id, :request_id, :model, :version, :score, now())"
            ),
            {
                "agent_id": agent_id,
                "customer_id": customer_id,
                "request_id": "req-1",
                "model": "llama-3-70b",
                "version": "v1",
                "score": 0.9,
            },
        )

    downgrade(empty_engine, "001_core_schema")

    assert current_revision(empty_engine) == "001_core_schema"
    assert table_names(empty_engine) == TABLES_BY_REVISION["001_core_schema"] | {"alembic_version"}
    core_rows_query = text(
        "SELECT c.id, a.id, e.id, e.agent_id, e.data, r.id, r.confidence_score, r.status::text "
        "FROM customers c JOIN events e ON e.customer_id = c.id JOIN agents a ON a.id = e.agent_id "
        "JOIN recommendations r ON r.customer_id = c.id AND r.agent_id = a.id "
        "WHERE e.event_type = 'agent.registered'"  # 009 logs the agent's assignment to the customer as well
    )
    expected_core_rows = [
        (
            customer_id,
            agent_id,
            event_id,
            agent_id,
            {"region": "eu-west-1"},
            recommendation_id,
            0.75,
            "rolled_back",
        )
    ]
    with empty_engine.connect() as connection:
        assert [tuple(row) for row in connection.execute(core_rows_query)] == expected_core_rows

    upgrade(empty_engine)

    assert current_revision(empty_engine) == head_revision()
    with empty_engine.connect() as connection:
        assert [tuple(row) for row in connection.execute(core_rows_query)] == expected_core_rows
        assert connection.scalar(text("SELECT count(*) FROM agent_states")) == 0
        assert connection.scalar(text("SELECT count(*) FROM quality_metrics")) == 0


def test_009_assigns_each_agent_to_the_customers_it_has_rows_for(empty_engine: Engine) -> None:
    """An upgrade keeps working agents working: each is assigned to the customers it did work for, and each such
    assignment is in the event log for the operator to review. An event naming a customer is not evidence."""
    upgrade(empty_engine, "008_durable_workflows")
    with empty_engine.begin() as connection:

        def row(statement: str, **values: Any) -> Any:
            return insert_returning_id(connection, statement + " RETURNING id", **values)

        customer_sql = "INSERT INTO customers (name, email, api_key) VALUES (:name, :email, :key)"
        tenant_a = row(customer_sql, name="A", email="a@a.example", key="a" * 64)
        tenant_b = row(customer_sql, name="B", email="b@b.example", key="b" * 64)
        agent_sql = "INSERT INTO agents (type, name) VALUES (:type, :name)"
        cost = row(agent_sql, type="cost", name="cost-1")
        application = row(agent_sql, type="application", name="application-1")
        resource = row(agent_sql, type="resource", name="resource-1")
        bystander = row(agent_sql, type="performance", name="performance-1")
        row(
            "INSERT INTO recommendations (customer_id, agent_id, type, title, confidence_score) "
            "VALUES (:customer, :agent, 'spot_migration', 'Use spot', 0.7)",
            customer=tenant_a,
            agent=cost,
        )
        row(
            "INSERT INTO workflow_executions (agent_id, customer_id, workflow_type) "
            "VALUES (:agent, :customer, 'cost_analysis')",
            agent=cost,
            customer=tenant_a,
        )
        for customer in (tenant_a, tenant_b):
            row(
                "INSERT INTO quality_metrics (agent_id, customer_id, request_id, model_name, model_version, "
                "overall_quality_score, timestamp) VALUES (:agent, :customer, :request, 'm', 'v1', 0.9, now())",
                agent=application,
                customer=customer,
                request=f"req-{customer}",
            )
        row(
            "INSERT INTO resource_metrics (agent_id, customer_id, instance_id, resource_type, metric_name, "
            "metric_value, unit, timestamp) VALUES (:agent, :customer, 'gpu-0', 'gpu', 'utilization', 50, "
            "'percent', now())",
            agent=resource,
            customer=tenant_b,
        )
        row(
            "INSERT INTO events (customer_id, agent_id, event_type) VALUES (:customer, :agent, 'probe')",
            customer=tenant_a,
            agent=bystander,
        )

    upgrade(empty_engine, "009_agent_customers")

    expected = {(cost, tenant_a), (application, tenant_a), (application, tenant_b), (resource, tenant_b)}
    with empty_engine.connect() as connection:
        assigned = {tuple(row) for row in connection.execute(text("SELECT agent_id, customer_id FROM agent_customers"))}
        logged = connection.execute(
            text("SELECT agent_id, customer_id, data FROM events WHERE event_type = 'agent.customer_assigned'")
        ).all()
    assert assigned == expected
    assert {(agent, customer) for agent, customer, _ in logged} == expected
    assert all(data["actor"]["name"] == "system:migration-009" for _, _, data in logged)

    downgrade(empty_engine, "008_durable_workflows")
    assert "agent_customers" not in table_names(empty_engine)
    upgrade(empty_engine)
    assert current_revision(empty_engine) == head_revision()


def test_every_timestamp_column_has_a_time_zone(migrated_engine: Engine) -> None:
    with migrated_engine.connect() as connection:
        columns = connection.execute(
            text(
                "SELECT table_name, column_name, data_type FROM information_schema.columns "
                "WHERE table_schema = 'public'"
            )
        ).all()
    timestamp_like = [
        (table, column, data_type)
        for table, column, data_type in columns
        if data_type.startswith("timestamp") or column.endswith("_at") or column in TIMESTAMP_COLUMN_NAMES
    ]

    assert len(timestamp_like) > 40
    assert [row for row in timestamp_like if row[2] != "timestamp with time zone"] == []


def test_no_table_has_two_indexes_with_the_same_definition(migrated_engine: Engine) -> None:
    by_definition: dict[tuple[Any, ...], list[str]] = defaultdict(list)
    for row in index_rows(migrated_engine):
        # Uniqueness is left out on purpose: a plain index on the columns of a unique one is still a duplicate.
        key = tuple(
            row[part]
            for part in (
                "table_name",
                "method",
                "indkey",
                "indclass",
                "indoption",
                "indcollation",
                "expressions",
                "predicate",
            )
        )
        by_definition[key].append(row["index_name"])

    duplicates = {key[0]: sorted(names) for key, names in by_definition.items() if len(names) > 1}
    assert duplicates == {}


def test_every_index_the_seeds_name_exists_on_the_named_columns(migrated_engine: Engine) -> None:
    indexes = {row["index_name"]: row for row in index_rows(migrated_engine)}

    found = {
        name: (indexes[name]["table_name"], list(indexes[name]["columns"]))
        for name in SEED_NAMED_INDEXES
        if name in indexes
    }
    assert found == SEED_NAMED_INDEXES

    unresolved = indexes["ix_quality_regressions_unresolved"]
    assert unresolved["table_name"] == "quality_regressions"
    assert "resolved_at" in unresolved["columns"] or "resolved_at IS NULL" in (unresolved["predicate"] or "")


def test_every_index_asked_for_by_column_exists(migrated_engine: Engine) -> None:
    existing = {(row["table_name"], tuple(row["columns"])) for row in index_rows(migrated_engine)}

    assert [wanted for wanted in INDEXED_COLUMNS if wanted not in existing] == []


def test_hardening_clamps_stored_instants_outside_1970_to_2200(empty_engine: Engine) -> None:
    """Rows stored before the API checked instants (year 0001 at +14:00 is year 0 in UTC, unreadable) are clamped
    into the accepted range by 011_hardening; rows inside it are untouched."""
    upgrade(empty_engine, "010_quality_monitoring")
    with empty_engine.begin() as connection:
        customer_id = insert_returning_id(
            connection,
            "INSERT INTO customers (name, email, api_key) VALUES ('Acme', 'ops@acme.example', :key) RETURNING id",
            key="b" * 64,
        )
        agent_id = insert_returning_id(
            connection, "INSERT INTO agents (type, name) VALUES ('application', 'app-1') RETURNING id"
        )
        for request_id, moment in (
            ("ancient", "0001-01-01T00:00:00+14:00"),
            ("far-future", "9999-12-31T23:00:00+00:00"),
            ("normal", "2026-11-30T12:00:00+00:00"),
        ):
            connection.execute(
                text(
                    "INSERT INTO quality_metrics (agent_id, customer_id, request_id, model_name, model_version, "
                    "overall_quality_score, timestamp) "
                    "VALUES (:agent_id, :customer_id, :request_id, 'm', 'v1', 0.9, CAST(:moment AS timestamptz))"
                ),
                {"agent_id": agent_id, "customer_id": customer_id, "request_id": request_id, "moment": moment},
            )
    upgrade(empty_engine, "011_hardening")
    with empty_engine.connect() as connection:
        stored = dict(
            connection.execute(
                text(
                    "SELECT request_id, to_char(timestamp AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI') "
                    "FROM quality_metrics"
                )
            ).all()
        )
    assert stored == {"ancient": "1970-01-01 00:00", "far-future": "2200-12-31 23:59", "normal": "2026-11-30 12:00"}


def _quality_metrics_indexes(engine: Engine) -> dict[str, tuple[str, list[str]]]:
    return {
        row["index_name"]: (row["method"], list(row["columns"]))
        for row in index_rows(engine)
        if row["table_name"] == "quality_metrics"
    }


def test_quality_metrics_has_exactly_the_indexes_its_reads_need(migrated_engine: Engine) -> None:
    assert _quality_metrics_indexes(migrated_engine) == QUALITY_METRICS_INDEXES


def test_015_drops_the_unused_seed_indexes_with_rows_in_place_and_its_downgrade_restores_them(
    empty_engine: Engine,
) -> None:
    upgrade(empty_engine, "014_alerts")
    seeds = {name: ("btree", columns) for name, columns in SEED_QUALITY_METRICS_INDEXES.items()}
    lean_btrees = {name: shape for name, shape in QUALITY_METRICS_015_INDEXES.items() if shape[0] == "btree"}
    assert _quality_metrics_indexes(empty_engine) == {**lean_btrees, **seeds}
    with empty_engine.begin() as connection:
        customer_id = insert_returning_id(
            connection,
            "INSERT INTO customers (name, email, api_key) VALUES ('Acme', 'ops@acme.example', :key) RETURNING id",
            key="c" * 64,
        )
        agent_id = insert_returning_id(
            connection, "INSERT INTO agents (type, name) VALUES ('application', 'app-1') RETURNING id"
        )
        connection.execute(
            text(
                "INSERT INTO quality_metrics (agent_id, customer_id, request_id, model_name, model_version, "
                "overall_quality_score, timestamp) SELECT :agent_id, :customer_id, 'r-' || i, 'm', 'v1', 0.9, "
                "now() - i * interval '1 minute' FROM generate_series(1, 500) AS i"
            ),
            {"agent_id": agent_id, "customer_id": customer_id},
        )

    upgrade(empty_engine, "015_quality_index_diet")
    assert _quality_metrics_indexes(empty_engine) == QUALITY_METRICS_015_INDEXES
    with empty_engine.begin() as connection:
        assert connection.scalar(text("SELECT count(*) FROM quality_metrics")) == 500
        # The unique key still makes ingest idempotent.
        with pytest.raises(Exception, match="uq_quality_metrics_customer_request"), connection.begin_nested():
            connection.execute(
                text(
                    "INSERT INTO quality_metrics (agent_id, customer_id, request_id, model_name, model_version, "
                    "overall_quality_score, timestamp) VALUES (:agent_id, :customer_id, 'r-1', 'm', 'v1', 0.5, "
                    "now())"
                ),
                {"agent_id": agent_id, "customer_id": customer_id},
            )

    downgrade(empty_engine, "014_alerts")
    assert _quality_metrics_indexes(empty_engine) == {**lean_btrees, **seeds}
    with empty_engine.connect() as connection:
        assert connection.scalar(text("SELECT count(*) FROM quality_metrics")) == 500


def _partitions(engine: Engine) -> dict[str, str]:
    """quality_metrics' partitions: name -> bound."""
    with engine.connect() as connection:
        rows = connection.execute(
            text(
                "SELECT c.relname, pg_get_expr(c.relpartbound, c.oid) FROM pg_inherits AS i "
                "JOIN pg_class AS c ON c.oid = i.inhrelid WHERE i.inhparent = 'quality_metrics'::regclass"
            )
        ).all()
    return {row[0]: row[1] for row in rows}


def test_016_partitions_quality_metrics_with_rows_in_place_and_its_downgrade_unpartitions_them(
    empty_engine: Engine,
) -> None:
    upgrade(empty_engine, "015_quality_index_diet")
    with empty_engine.begin() as connection:
        customer_id = insert_returning_id(
            connection,
            "INSERT INTO customers (name, email, api_key) VALUES ('Acme', 'ops@acme.example', :key) RETURNING id",
            key="c" * 64,
        )
        agent_id = insert_returning_id(
            connection, "INSERT INTO agents (type, name) VALUES ('application', 'app-1') RETURNING id"
        )
        values = {"agent_id": agent_id, "customer_id": customer_id}
        connection.execute(
            text(
                "INSERT INTO quality_metrics (agent_id, customer_id, request_id, model_name, model_version, "
                "overall_quality_score, timestamp) SELECT :agent_id, :customer_id, 'r-' || i, 'm', 'v1', 0.9, "
                "now() - i * interval '1 hour' FROM generate_series(1, 500) AS i"
            ),
            values,
        )
        # A clamped far-future instant (011) lies beyond the days the migration partitions.
        connection.execute(
            text(
                "INSERT INTO quality_metrics (agent_id, customer_id, request_id, model_name, model_version, "
                "overall_quality_score, timestamp) VALUES (:agent_id, :customer_id, 'future', 'm', 'v1', 0.5, "
                "'2200-12-31T00:00:00Z')"
            ),
            values,
        )
        metric_id = connection.scalar(text("SELECT id FROM quality_metrics WHERE request_id = 'r-1'"))
        connection.execute(
            text(
                "INSERT INTO scoring_texts (quality_metric_id, customer_id, prompt, response, expires_at) "
                "VALUES (:metric_id, :customer_id, 'p', 'a', now() + interval '1 day')"
            ),
            {"metric_id": metric_id, "customer_id": customer_id},
        )

    upgrade(empty_engine, "016_quality_partitions")

    partitions = _partitions(empty_engine)
    (legacy,) = [name for name in partitions if name.startswith("quality_metrics_p_before_")]
    assert partitions[legacy].startswith("FOR VALUES FROM (MINVALUE) TO (")
    assert partitions["quality_metrics_p_default"] == "DEFAULT"
    assert len(partitions) == 2 + 7  # the old rows, the default, and a week of days ahead
    with empty_engine.begin() as connection:
        assert connection.scalar(text(f'SELECT count(*) FROM "{legacy}"')) == 500
        assert connection.scalar(text("SELECT request_id FROM quality_metrics_p_default")) == "future"
        assert connection.scalar(text("SELECT count(*) FROM quality_request_keys")) == 501
        assert connection.scalar(
            text("SELECT quality_metric_timestamp IS NOT NULL FROM scoring_texts WHERE quality_metric_id = :id"),
            {"id": metric_id},
        )
        # Idempotency survives: the same request id again, even dated in another partition, is refused.
        with pytest.raises(Exception, match="pk_quality_request_keys"), connection.begin_nested():
            connection.execute(
                text(
                    "INSERT INTO quality_metrics (agent_id, customer_id, request_id, model_name, model_version, "
                    "overall_quality_score, timestamp) VALUES (:agent_id, :customer_id, 'r-1', 'm', 'v1', 0.5, "
                    "now() + interval '2 days')"
                ),
                values,
            )
        # Deleting a record deletes its key and (foreign key to the partitioned table) its text.
        connection.execute(text("DELETE FROM quality_metrics WHERE request_id = 'r-1'"))
        assert connection.scalar(text("SELECT count(*) FROM quality_request_keys")) == 500
        assert connection.scalar(text("SELECT count(*) FROM scoring_texts")) == 0

    downgrade(empty_engine, "015_quality_index_diet")

    assert "quality_request_keys" not in table_names(empty_engine)
    assert not any(name.startswith("quality_metrics_p_") for name in table_names(empty_engine))
    assert _quality_metrics_indexes(empty_engine) == QUALITY_METRICS_015_INDEXES
    with empty_engine.connect() as connection:
        assert connection.scalar(text("SELECT count(*) FROM quality_metrics")) == 500
    upgrade(empty_engine)
    assert schema_differences(empty_engine) == []
