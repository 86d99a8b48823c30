"""The migrated schema against the contract in SCHEMA.md and the seeds, read from the PostgreSQL catalogs."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import Engine, Enum, text

from optiinfra.models import Base

TABLES = {
    "customers",
    "agents",
    "events",
    "recommendations",
    "approvals",
    "optimizations",
    "agent_configs",
    "agent_states",
    "agent_capabilities",
    "agent_metrics",
    "workflow_executions",
    "workflow_steps",
    "workflow_artifacts",
    "resource_metrics",
    "scaling_events",
    "quality_metrics",
    "quality_baselines",
    "quality_regressions",
    "dashboard_sessions",
    "alert_routes",
    "alert_outbox",
    "alert_deliveries",
    "metric_counters",
    "agent_customers",
    "scoring_texts",
    "prometheus_sources",
    "quality_rollups",
}
# Tables keyed otherwise than by `id` (docs/schema.md): the idempotency keys of quality records (migration 016).
NATURAL_KEY_TABLES = {"quality_request_keys": ["customer_id", "request_id"]}
# quality_metrics is partitioned by timestamp (migration 016): its primary key includes the partition key.
PRIMARY_KEYS = {**{key: ["id"] for key in TABLES}, "quality_metrics": ["id", "timestamp"], **NATURAL_KEY_TABLES}
# A foreign key to quality_metrics names the partition key too.
COMPOSITE_FOREIGN_KEYS = {("scoring_texts", "quality_metric_id"): ["quality_metric_id", "quality_metric_timestamp"]}
NOT_PARTITIONS = "AND {column} NOT LIKE 'quality\\_metrics\\_p\\_%'"

CASCADE = "CASCADE"
SET_NULL = "SET NULL"

# (table, column, referenced table, ON DELETE rule); every reference is to the referenced table's id.
FOREIGN_KEYS: list[tuple[str, str, str, str]] = [
    ("events", "customer_id", "customers", CASCADE),
    ("events", "agent_id", "agents", SET_NULL),
    ("recommendations", "customer_id", "customers", CASCADE),
    ("recommendations", "agent_id", "agents", CASCADE),
    ("approvals", "recommendation_id", "recommendations", CASCADE),
    ("optimizations", "recommendation_id", "recommendations", CASCADE),
    ("optimizations", "customer_id", "customers", CASCADE),
    ("optimizations", "agent_id", "agents", CASCADE),
    ("agent_configs", "agent_id", "agents", CASCADE),
    ("agent_states", "agent_id", "agents", CASCADE),
    ("agent_states", "current_workflow_id", "workflow_executions", SET_NULL),
    ("agent_capabilities", "agent_id", "agents", CASCADE),
    ("agent_metrics", "agent_id", "agents", CASCADE),
    ("workflow_executions", "agent_id", "agents", CASCADE),
    ("workflow_executions", "customer_id", "customers", CASCADE),
    ("workflow_steps", "workflow_execution_id", "workflow_executions", CASCADE),
    ("workflow_artifacts", "workflow_execution_id", "workflow_executions", CASCADE),
    ("workflow_artifacts", "workflow_step_id", "workflow_steps", CASCADE),
    ("resource_metrics", "agent_id", "agents", CASCADE),
    ("resource_metrics", "customer_id", "customers", CASCADE),
    ("scaling_events", "agent_id", "agents", CASCADE),
    ("scaling_events", "customer_id", "customers", CASCADE),
    ("scaling_events", "workflow_execution_id", "workflow_executions", SET_NULL),
    ("quality_metrics", "agent_id", "agents", CASCADE),
    ("quality_metrics", "customer_id", "customers", CASCADE),
    ("quality_baselines", "agent_id", "agents", CASCADE),
    ("quality_baselines", "customer_id", "customers", CASCADE),
    ("quality_regressions", "agent_id", "agents", CASCADE),
    ("quality_regressions", "customer_id", "customers", CASCADE),
    ("quality_regressions", "baseline_id", "quality_baselines", CASCADE),
    ("quality_regressions", "workflow_execution_id", "workflow_executions", SET_NULL),
    ("dashboard_sessions", "customer_id", "customers", CASCADE),
    ("alert_routes", "customer_id", "customers", CASCADE),
    ("prometheus_sources", "customer_id", "customers", CASCADE),
    ("alert_outbox", "route_id", "alert_routes", CASCADE),
    ("alert_outbox", "customer_id", "customers", CASCADE),
    ("alert_outbox", "event_id", "events", SET_NULL),
    ("alert_deliveries", "outbox_id", "alert_outbox", CASCADE),
    ("agent_customers", "agent_id", "agents", CASCADE),
    ("agent_customers", "customer_id", "customers", CASCADE),
    ("scoring_texts", "quality_metric_id", "quality_metrics", CASCADE),
    ("scoring_texts", "customer_id", "customers", CASCADE),
    ("quality_request_keys", "customer_id", "customers", CASCADE),
    ("quality_rollups", "customer_id", "customers", CASCADE),
]

ON_DELETE_RULES = {"a": "NO ACTION", "r": "RESTRICT", "c": CASCADE, "n": SET_NULL, "d": "SET DEFAULT"}

NAMED_UNIQUE_CONSTRAINTS: list[tuple[str, str, list[str]]] = [
    ("agents", "uq_agent_type_name", ["type", "name"]),
    ("agent_configs", "uq_agent_config", ["agent_id", "config_key"]),
    ("agent_capabilities", "uq_agent_capability", ["agent_id", "capability_name"]),
]

UNIQUE_COLUMN_SETS: list[tuple[str, list[str]]] = [
    ("agent_states", ["agent_id"]),
    ("customers", ["email"]),
    ("customers", ["api_key"]),
]

TABLES_WITH_METADATA = {
    "customers",
    "agents",
    "agent_states",
    "workflow_executions",
    "workflow_steps",
    "workflow_artifacts",
    "resource_metrics",
    "scaling_events",
    "quality_metrics",
    "quality_baselines",
    "quality_regressions",
}


def _query(engine: Engine, sql: str, **params: Any) -> list[Any]:
    with engine.connect() as connection:
        return list(connection.execute(text(sql), params))


def foreign_keys(engine: Engine) -> dict[tuple[str, str], tuple[str, str, str]]:
    """(table, column) -> (referenced table, referenced column, ON DELETE rule) for every public FK."""
    rows = _query(
        engine,
        "SELECT c.conrelid::regclass::text, a.attname, c.confrelid::regclass::text, fa.attname, "
        "c.confdeltype::text, ARRAY(SELECT ka.attname FROM unnest(c.conkey) WITH ORDINALITY AS k(num, position) "
        "JOIN pg_attribute AS ka ON ka.attrelid = c.conrelid AND ka.attnum = k.num ORDER BY k.position) "
        "FROM pg_constraint c "
        "JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = c.conkey[1] "
        "JOIN pg_attribute fa ON fa.attrelid = c.confrelid AND fa.attnum = c.confkey[1] "
        "JOIN pg_namespace n ON n.oid = c.connamespace "
        "WHERE c.contype = 'f' AND n.nspname = 'public' "
        "AND c.conparentid = 0 "  # not PostgreSQL's clones of a partitioned table's foreign key (one a partition)
        "AND c.conrelid::regclass::text NOT LIKE 'procrastinate\\_%'",  # the job queue's own tables
    )
    columns = {(row[0], row[1]): list(row[5]) for row in rows}
    assert columns == {key: COMPOSITE_FOREIGN_KEYS.get(key, [key[1]]) for key in columns}, (
        "every foreign key is on a single column, except those to the partitioned quality_metrics"
    )
    return {
        (table, column): (target, target_column, ON_DELETE_RULES[rule])
        for table, column, target, target_column, rule, _ in rows
    }


def unique_indexes(engine: Engine) -> list[tuple[str, str, list[str]]]:
    """(table, index name, columns) of every unique, non-primary index; unique constraints have one too."""
    rows = _query(
        engine,
        "SELECT t.relname, i.relname, "
        "ARRAY(SELECT a.attname FROM unnest(x.indkey::int2[]) WITH ORDINALITY AS k(attnum, position) "
        "      JOIN pg_attribute a ON a.attrelid = x.indrelid AND a.attnum = k.attnum "
        "      ORDER BY k.position) "
        "FROM pg_index x JOIN pg_class t ON t.oid = x.indrelid JOIN pg_class i ON i.oid = x.indexrelid "
        "JOIN pg_namespace n ON n.oid = t.relnamespace "
        "WHERE n.nspname = 'public' AND x.indisunique AND NOT x.indisprimary AND x.indpred IS NULL",
    )
    return [(table, name, list(columns)) for table, name, columns in rows]


def _model_enum_columns() -> list[tuple[str, str, Enum]]:
    return [
        (table.name, column.name, column.type)
        for table in Base.metadata.sorted_tables
        for column in table.columns
        if isinstance(column.type, Enum)
    ]


MODEL_ENUM_COLUMNS = _model_enum_columns()


@pytest.mark.parametrize(
    ("table", "column", "referenced_table", "on_delete"),
    FOREIGN_KEYS,
    ids=[f"{table}.{column}" for table, column, _, _ in FOREIGN_KEYS],
)
def test_foreign_key_targets_and_on_delete_rule(
    migrated_engine: Engine, table: str, column: str, referenced_table: str, on_delete: str
) -> None:
    assert foreign_keys(migrated_engine).get((table, column)) == (referenced_table, "id", on_delete)


def test_there_are_no_foreign_keys_beyond_the_contract(migrated_engine: Engine) -> None:
    assert set(foreign_keys(migrated_engine)) == {(table, column) for table, column, _, _ in FOREIGN_KEYS}


def test_set_null_foreign_key_columns_are_nullable(migrated_engine: Engine) -> None:
    set_null_columns = [(table, column) for table, column, _, rule in FOREIGN_KEYS if rule == SET_NULL]
    nullability = {
        (table, column): is_nullable
        for table, column, is_nullable in _query(
            migrated_engine,
            "SELECT table_name, column_name, is_nullable FROM information_schema.columns WHERE table_schema = 'public'",
        )
    }

    assert {key: nullability[key] for key in set_null_columns} == dict.fromkeys(set_null_columns, "YES")


@pytest.mark.parametrize(("table", "name", "columns"), NAMED_UNIQUE_CONSTRAINTS)
def test_named_unique_constraint_exists_on_its_columns(
    migrated_engine: Engine, table: str, name: str, columns: list[str]
) -> None:
    rows = _query(
        migrated_engine,
        "SELECT c.conrelid::regclass::text, "
        "ARRAY(SELECT a.attname FROM unnest(c.conkey) WITH ORDINALITY AS k(attnum, position) "
        "      JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = k.attnum ORDER BY k.position) "
        "FROM pg_constraint c WHERE c.contype = 'u' AND c.conname = :name",
        name=name,
    )

    assert [(found_table, list(found_columns)) for found_table, found_columns in rows] == [(table, columns)]


@pytest.mark.parametrize(("table", "columns"), UNIQUE_COLUMN_SETS, ids=lambda value: str(value))
def test_columns_are_unique(migrated_engine: Engine, table: str, columns: list[str]) -> None:
    assert (table, columns) in [(t, c) for t, _, c in unique_indexes(migrated_engine)]


def test_quality_metrics_request_id_is_unique_per_customer_not_globally(migrated_engine: Engine) -> None:
    assert ("quality_metrics", ["request_id"]) not in [(t, c) for t, _, c in unique_indexes(migrated_engine)]


@pytest.mark.parametrize(
    ("table", "name", "columns_mentioned"),
    [
        ("recommendations", "check_confidence_range", "confidence_score"),
        ("optimizations", "check_progress_range", "progress"),
    ],
)
def test_check_constraint_exists_by_its_exact_name(
    migrated_engine: Engine, table: str, name: str, columns_mentioned: str
) -> None:
    rows = _query(
        migrated_engine,
        "SELECT conrelid::regclass::text, pg_get_constraintdef(oid) FROM pg_constraint "
        "WHERE contype = 'c' AND conname = :name",
        name=name,
    )

    assert [found_table for found_table, _ in rows] == [table]
    assert columns_mentioned in rows[0][1]


def test_every_table_has_a_uuid_primary_key_id_generated_by_the_server(migrated_engine: Engine) -> None:
    id_columns = _query(
        migrated_engine,
        "SELECT c.table_name, c.data_type, c.column_default "
        "FROM information_schema.columns c "
        "WHERE c.table_schema = 'public' AND c.column_name = 'id' "
        "AND c.table_name NOT LIKE 'procrastinate\\_%' "  # the job queue's own tables
        + NOT_PARTITIONS.format(column="c.table_name"),
    )
    primary_keys = _query(
        migrated_engine,
        "SELECT t.relname, ARRAY(SELECT a.attname FROM unnest(x.indkey::int2[]) WITH ORDINALITY AS k(attnum, position) "
        "JOIN pg_attribute a ON a.attrelid = x.indrelid AND a.attnum = k.attnum ORDER BY k.position) "
        "FROM pg_index x JOIN pg_class t ON t.oid = x.indrelid JOIN pg_namespace n ON n.oid = t.relnamespace "
        "WHERE x.indisprimary AND n.nspname = 'public' AND t.relname NOT LIKE 'procrastinate\\_%' "
        "AND t.relname <> 'alembic_version' " + NOT_PARTITIONS.format(column="t.relname"),
    )

    assert {row[0]: tuple(row[1:]) for row in id_columns} == dict.fromkeys(TABLES, ("uuid", "gen_random_uuid()"))
    assert {row[0]: list(row[1]) for row in primary_keys} == PRIMARY_KEYS


def test_every_metadata_column_is_jsonb(migrated_engine: Engine) -> None:
    rows = _query(
        migrated_engine,
        "SELECT table_name, data_type FROM information_schema.columns "
        "WHERE table_schema = 'public' AND column_name = 'metadata' " + NOT_PARTITIONS.format(column="table_name"),
    )

    assert dict(rows) == dict.fromkeys(TABLES_WITH_METADATA, "jsonb")


def test_every_model_maps_the_metadata_column_to_the_same_attribute_name() -> None:
    attribute_names = {
        mapper.local_table.name: mapper.get_property_by_column(mapper.local_table.c.metadata).key
        for mapper in Base.registry.mappers
        if "metadata" in mapper.local_table.c
    }

    assert attribute_names == dict.fromkeys(TABLES_WITH_METADATA, "metadata_")


@pytest.mark.parametrize(
    ("table", "column", "enum_type"),
    MODEL_ENUM_COLUMNS,
    ids=[f"{table}.{column}" for table, column, _ in MODEL_ENUM_COLUMNS],
)
def test_model_enum_type_name_and_values_match_the_migrated_column(
    migrated_engine: Engine, table: str, column: str, enum_type: Enum
) -> None:
    migrated_type = _query(
        migrated_engine,
        "SELECT udt_name FROM information_schema.columns "
        "WHERE table_schema = 'public' AND table_name = :table AND column_name = :column",
        table=table,
        column=column,
    )
    labels = _query(
        migrated_engine,
        "SELECT e.enumlabel FROM pg_enum e JOIN pg_type t ON t.oid = e.enumtypid "
        "WHERE t.typname = :name ORDER BY e.enumsortorder",
        name=enum_type.name,
    )

    assert [row[0] for row in migrated_type] == [enum_type.name]
    assert [row[0] for row in labels] == list(enum_type.enums)


def test_the_models_declare_22_enum_types_all_native() -> None:
    assert len({enum_type.name for _, _, enum_type in MODEL_ENUM_COLUMNS}) == 22
    assert all(enum_type.native_enum for _, _, enum_type in MODEL_ENUM_COLUMNS)
