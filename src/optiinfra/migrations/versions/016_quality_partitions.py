"""Scale (issue 16): quality_metrics partitioned by day, with its idempotency key in a table of its own.

quality_metrics receives one row per LLM request. Partitioned by range of `timestamp`, one partition a day, old data
goes by dropping a whole partition (instant, no dead rows, no vacuum) instead of deleting rows one by one, and each
window read touches only the days it covers.

A unique key of a partitioned table must include the partition key, so (customer_id, request_id) can no longer be
unique in quality_metrics itself. It moves to `quality_request_keys` (primary key (customer_id, request_id), pointing
at the record's id and timestamp), kept by two statement-level triggers on quality_metrics: after an insert (INSERT
or COPY, from any writer) the new rows' keys are inserted there, and a key already present fails the statement with
a unique violation, exactly as the old unique constraint did; after a delete (including the cascades from customers
and agents) their keys are deleted. Dropping a partition fires no trigger: retention deletes its keys first
(`optiinfra.quality.partitions`). The per-partition (customer_id, request_id) index is gone: lookups by request id
go through the keys table to one partition.

Conversion in place: the existing table becomes the partition `quality_metrics_p_before_<day>` holding everything
before tomorrow (UTC), with no row copied (its primary key index is rebuilt on (id, timestamp), its other indexes
and constraints are adopted by the new parent). Rows dated tomorrow or later move to the default partition, which
catches anything outside the daily partitions (the worker creates those ahead). The keys table is filled from the
rows. `scoring_texts` gets `quality_metric_timestamp` so that its foreign key can point at the partitioned table's
primary key.

The downgrade copies every row back into one unpartitioned table (it rebuilds the 015 shape).

Revision ID: 016_quality_partitions
Revises: 015_quality_index_diet
"""

from collections.abc import Sequence
from datetime import UTC, timedelta

import sqlalchemy as sa
from alembic import op

revision: str = "016_quality_partitions"
down_revision: str | None = "015_quality_index_diet"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

PREFIX = "quality_metrics_p_"
DAYS_AHEAD = 7  # daily partitions created at once; the worker keeps creating them ahead of time
VERSION_INDEX = "ix_quality_metrics_customer_model_version_timestamp"
BRIN = "ix_quality_metrics_timestamp_brin"

# The statement triggers that keep quality_request_keys (their functions are created and dropped here).
KEY_FUNCTIONS = """
CREATE FUNCTION quality_metrics_add_keys() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO quality_request_keys (customer_id, request_id, quality_metric_id, quality_metric_timestamp)
    SELECT customer_id, request_id, id, "timestamp" FROM inserted_rows;
    RETURN NULL;
END $$;
CREATE FUNCTION quality_metrics_drop_keys() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM quality_request_keys AS k USING deleted_rows AS d
    WHERE k.customer_id = d.customer_id AND k.request_id = d.request_id AND k.quality_metric_id = d.id;
    RETURN NULL;
END $$;
CREATE TRIGGER quality_metrics_add_keys AFTER INSERT ON quality_metrics
    REFERENCING NEW TABLE AS inserted_rows FOR EACH STATEMENT EXECUTE FUNCTION quality_metrics_add_keys();
CREATE TRIGGER quality_metrics_drop_keys AFTER DELETE ON quality_metrics
    REFERENCING OLD TABLE AS deleted_rows FOR EACH STATEMENT EXECUTE FUNCTION quality_metrics_drop_keys();
"""


def _day(sql_instant: str) -> str:
    """SQL for the UTC midnight starting the day of an instant."""
    return f"(date_trunc('day', ({sql_instant}) AT TIME ZONE 'UTC') AT TIME ZONE 'UTC')"


def upgrade() -> None:
    bind = op.get_bind()
    boundary = bind.execute(sa.text(f"SELECT {_day('now()')} + interval '1 day'")).scalar_one().astimezone(UTC)
    legacy = f"{PREFIX}before_{boundary:%Y%m%d}"

    op.drop_constraint("fk_scoring_texts_quality_metric_id_quality_metrics", "scoring_texts", type_="foreignkey")

    # The old table becomes a partition: free the names its parent will take, key it by (id, timestamp).
    op.rename_table("quality_metrics", legacy)
    op.drop_constraint("uq_quality_metrics_customer_request", legacy, type_="unique")
    op.drop_constraint("pk_quality_metrics", legacy, type_="primary")
    op.execute(f'ALTER INDEX {VERSION_INDEX} RENAME TO "{legacy}_version_idx"')
    op.execute(f'ALTER INDEX {BRIN} RENAME TO "{legacy}_brin_idx"')
    # A constraint, not only a unique index: the parent's primary key adopts only a partition's own constraint.
    op.execute(f'ALTER TABLE "{legacy}" ADD CONSTRAINT "{legacy}_pkey" PRIMARY KEY (id, "timestamp")')

    op.execute(
        f'CREATE TABLE quality_metrics (LIKE "{legacy}" INCLUDING DEFAULTS INCLUDING CONSTRAINTS) '
        'PARTITION BY RANGE ("timestamp")'
    )
    op.create_primary_key("pk_quality_metrics", "quality_metrics", ["id", "timestamp"])
    op.create_foreign_key(
        "fk_quality_metrics_agent_id_agents", "quality_metrics", "agents", ["agent_id"], ["id"], ondelete="CASCADE"
    )
    op.create_foreign_key(
        "fk_quality_metrics_customer_id_customers",
        "quality_metrics",
        "customers",
        ["customer_id"],
        ["id"],
        ondelete="CASCADE",
    )
    op.create_index(VERSION_INDEX, "quality_metrics", ["customer_id", "model_name", "model_version", "timestamp"])
    op.create_index(
        BRIN,
        "quality_metrics",
        ["timestamp"],
        postgresql_using="brin",
        postgresql_with={"pages_per_range": 32, "autosummarize": "on"},
    )
    op.execute(f'CREATE TABLE "{PREFIX}default" PARTITION OF quality_metrics DEFAULT')
    # Rows dated after the old table's range (clock skew, clamped instants) go to the default partition.
    op.execute(
        sa.text(
            f'WITH moved AS (DELETE FROM "{legacy}" WHERE "timestamp" >= :boundary RETURNING *) '  # noqa: S608
            "INSERT INTO quality_metrics SELECT * FROM moved"
        ).bindparams(boundary=boundary)
    )
    # DDL takes no parameters; the bounds are instants computed above, never input.
    op.execute(
        f"ALTER TABLE quality_metrics ATTACH PARTITION \"{legacy}\" FOR VALUES FROM (MINVALUE) TO ('{boundary.isoformat()}')"
    )
    for offset in range(DAYS_AHEAD):
        day = boundary + timedelta(days=offset)
        op.execute(
            f'CREATE TABLE "{PREFIX}{day:%Y%m%d}" PARTITION OF quality_metrics '
            f"FOR VALUES FROM ('{day.isoformat()}') TO ('{(day + timedelta(days=1)).isoformat()}')"
        )

    op.create_table(
        "quality_request_keys",
        sa.Column("customer_id", sa.UUID(), nullable=False),
        sa.Column("request_id", sa.String(length=255), nullable=False),
        sa.Column("quality_metric_id", sa.UUID(), nullable=False),
        sa.Column("quality_metric_timestamp", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.ForeignKeyConstraint(
            ["customer_id"],
            ["customers.id"],
            name=op.f("fk_quality_request_keys_customer_id_customers"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("customer_id", "request_id", name=op.f("pk_quality_request_keys")),
    )
    op.execute(
        "INSERT INTO quality_request_keys (customer_id, request_id, quality_metric_id, quality_metric_timestamp) "
        'SELECT customer_id, request_id, id, "timestamp" FROM quality_metrics'
    )
    op.execute(KEY_FUNCTIONS)

    op.add_column("scoring_texts", sa.Column("quality_metric_timestamp", sa.DateTime(timezone=True), nullable=True))
    op.execute(
        "UPDATE scoring_texts AS s SET quality_metric_timestamp = k.quality_metric_timestamp "
        "FROM quality_request_keys AS k WHERE k.quality_metric_id = s.quality_metric_id"
    )
    op.alter_column("scoring_texts", "quality_metric_timestamp", nullable=False)
    op.create_foreign_key(
        "fk_scoring_texts_quality_metric_id_quality_metrics",
        "scoring_texts",
        "quality_metrics",
        ["quality_metric_id", "quality_metric_timestamp"],
        ["id", "timestamp"],
        ondelete="CASCADE",
    )


def downgrade() -> None:
    op.drop_constraint("fk_scoring_texts_quality_metric_id_quality_metrics", "scoring_texts", type_="foreignkey")
    op.drop_column("scoring_texts", "quality_metric_timestamp")

    op.execute(
        "CREATE TABLE quality_metrics_unpartitioned (LIKE quality_metrics INCLUDING DEFAULTS INCLUDING CONSTRAINTS)"
    )
    op.execute("INSERT INTO quality_metrics_unpartitioned SELECT * FROM quality_metrics")
    op.execute("DROP TABLE quality_metrics CASCADE")  # and every partition
    # Partitions detached by retention and not dropped yet (their rows were past retention).
    bind = op.get_bind()
    detached = bind.execute(
        sa.text("SELECT tablename FROM pg_tables WHERE schemaname = current_schema() AND tablename LIKE :prefix"),
        {"prefix": PREFIX.replace("_", r"\_") + "%"},
    ).scalars()
    for name in list(detached):
        op.execute(f'DROP TABLE "{name}"')
    op.execute("DROP FUNCTION quality_metrics_add_keys()")
    op.execute("DROP FUNCTION quality_metrics_drop_keys()")
    op.drop_table("quality_request_keys")

    op.rename_table("quality_metrics_unpartitioned", "quality_metrics")
    op.create_primary_key("pk_quality_metrics", "quality_metrics", ["id"])
    op.create_unique_constraint("uq_quality_metrics_customer_request", "quality_metrics", ["customer_id", "request_id"])
    op.create_foreign_key(
        "fk_quality_metrics_agent_id_agents", "quality_metrics", "agents", ["agent_id"], ["id"], ondelete="CASCADE"
    )
    op.create_foreign_key(
        "fk_quality_metrics_customer_id_customers",
        "quality_metrics",
        "customers",
        ["customer_id"],
        ["id"],
        ondelete="CASCADE",
    )
    op.create_index(VERSION_INDEX, "quality_metrics", ["customer_id", "model_name", "model_version", "timestamp"])
    op.create_index(
        BRIN,
        "quality_metrics",
        ["timestamp"],
        postgresql_using="brin",
        postgresql_with={"pages_per_range": 32, "autosummarize": "on"},
    )
    op.create_foreign_key(
        "fk_scoring_texts_quality_metric_id_quality_metrics",
        "scoring_texts",
        "quality_metrics",
        ["quality_metric_id"],
        ["id"],
        ondelete="CASCADE",
    )
