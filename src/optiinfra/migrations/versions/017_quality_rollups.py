"""Hourly quality rollups, kept exact by triggers on quality_metrics (issue 16).

`quality_rollups` holds, per (customer, model, version, route, hour), the counts, sums and sums of squares of every
score, the hallucination and toxic counts, token sums and a latency histogram. The dashboard's charts, fleet
summaries and time-of-day reads sum these hours instead of reading every record (a week of one version's chart is
about 170 rollup rows, whatever the traffic).

How they are maintained, and why so: statement-level AFTER triggers with transition tables on quality_metrics
aggregate the rows a statement inserted, deleted or updated and add (or subtract) them in the same transaction.

- Exact at every commit, with no watermark to keep: a late record (an old timestamp sent today) lands in its own
  hour; a batch rolled back leaves no trace; a deletion (an agent's, a customer's records) subtracts; an update
  (OTLP evaluations arriving for a stored span, the scoring worker's scores) moves the record from unscored to
  scored.
- Whatever writes quality_metrics (the API's COPY, INSERT ... ON CONFLICT, OTLP, the CLI import, a raw SQL
  insert) is counted, with no code path to remember; an INSERT ... ON CONFLICT DO NOTHING sees only the rows it
  stored.
- The cost is one grouped query and one upsert per (model version, route, hour) a statement touches: a few
  milliseconds per 5,000-record batch. Concurrent batches of the same version and hour wait for each other on the
  rollup row until commit (ingest transactions are short; rows are upserted in key order, so no deadlock).
- Dropping or detaching a partition of quality_metrics (retention) fires no trigger: rollups outlive the raw rows
  by design (charts of older weeks stay cheap); deleting a customer removes its rollups by the foreign key.

The upgrade rolls up the records already stored (minutes at 10,000,000 rows). The latency histogram's bins are
those of `optiinfra.models.application_schema` (LATENCY_BINS, LATENCY_GROWTH), written here as numbers so this
revision never changes.

Revision ID: 017_quality_rollups
Revises: 016_quality_partitions
"""

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "017_quality_rollups"
down_revision: str | None = "016_quality_partitions"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TIMESTAMP = postgresql.TIMESTAMP(timezone=True)
BINS = 146
KEY = ("customer_id", "model_name", "model_version", "route", "hour_start")

# (column, aggregate over the changed rows, each with `sign` +1 or -1 and `scored`).
TOTALS: tuple[tuple[str, str], ...] = (
    ("record_count", "sum(sign)"),
    ("scored_count", "sum(sign) FILTER (WHERE scored)"),
    ("overall_sum", "sum(sign * overall_quality_score) FILTER (WHERE scored)"),
    ("overall_sum_squares", "sum(sign * overall_quality_score * overall_quality_score) FILTER (WHERE scored)"),
    ("hallucination_count", "sum(sign) FILTER (WHERE scored AND hallucination_detected)"),
    ("toxic_count", "sum(sign) FILTER (WHERE toxicity_score >= 0.5)"),
    *(
        item
        for name in ("relevance", "coherence", "factuality", "toxicity")
        for item in (
            (f"{name}_count", f"sum(sign) FILTER (WHERE {name}_score IS NOT NULL)"),
            (f"{name}_sum", f"sum(sign * {name}_score)"),
            (f"{name}_sum_squares", f"sum(sign * {name}_score * {name}_score)"),
        )
    ),
    ("latency_count", "sum(sign) FILTER (WHERE latency_ms IS NOT NULL)"),
    ("latency_sum", "sum(sign * latency_ms)"),
    ("latency_sum_squares", "sum(sign * latency_ms * latency_ms)"),
    ("prompt_tokens_sum", "sum(sign * prompt_tokens)"),
    ("completion_tokens_sum", "sum(sign * completion_tokens)"),
)
COUNT_COLUMNS = {name for name, _ in TOTALS if not name.endswith(("_sum", "_sum_squares"))} | {
    "prompt_tokens_sum",
    "completion_tokens_sum",
}


def _aggregated(source: str) -> str:
    """The signed aggregates per rollup key of `source` (a constant: the transition tables, or the whole table)."""
    key = ", ".join(KEY)
    totals = ", ".join(f"coalesce({expression}, 0) AS {name}" for name, expression in TOTALS)
    return (
        f"WITH changed AS (SELECT *, coalesce(metadata->>'route', '') AS route, "  # noqa: S608 (constant SQL)
        f"date_trunc('hour', \"timestamp\", 'UTC') AS hour_start, NOT (metadata ? 'scores_pending') AS scored, "
        f"quality_latency_bin(latency_ms) AS latency_bin FROM ({source}) AS s), "
        f"bins AS (SELECT {key}, latency_bin, sum(sign) AS n FROM changed WHERE latency_ms IS NOT NULL "
        f"GROUP BY {key}, latency_bin), "
        f"histograms AS (SELECT {key}, quality_latency_histogram(array_agg(latency_bin), array_agg(n)) AS h "
        f"FROM bins GROUP BY {key}), "
        f"totals AS (SELECT {key}, {totals} FROM changed GROUP BY {key}) "
        f"SELECT t.*, coalesce(h.h, quality_latency_histogram('{{}}', '{{}}')) AS latency_histogram "
        f"FROM totals AS t LEFT JOIN histograms AS h USING ({key})"
    )


def _merge(source: str) -> str:
    """Add the aggregates of `source` to the rollups, in key order (concurrent writers lock rows in one order)."""
    columns = [*KEY, *(name for name, _ in TOTALS), "latency_histogram"]
    updates = ", ".join(
        [
            *(f"{name} = quality_rollups.{name} + excluded.{name}" for name, _ in TOTALS),
            "latency_histogram = quality_rollup_add(quality_rollups.latency_histogram, excluded.latency_histogram)",
            "updated_at = now()",
        ]
    )
    # A record deleted with its customer subtracts from rollups the same cascade removes: never insert those.
    return (
        f"INSERT INTO quality_rollups ({', '.join(columns)}) SELECT {', '.join(columns)} "  # noqa: S608 (constant)
        f"FROM ({_aggregated(source)}) "
        f"AS a WHERE EXISTS (SELECT 1 FROM customers AS c WHERE c.id = a.customer_id) ORDER BY {', '.join(KEY)} "
        f"ON CONFLICT ON CONSTRAINT uq_quality_rollups_key DO UPDATE SET {updates}"
    )


def _drop_empty(source: str) -> str:
    """Remove the rollups of the keys `source` touched that no longer count any record."""
    return (
        f"DELETE FROM quality_rollups AS r USING (SELECT DISTINCT customer_id, model_name, model_version, "  # noqa: S608
        f"coalesce(metadata->>'route', '') AS route, date_trunc('hour', \"timestamp\", 'UTC') AS hour_start "
        f"FROM ({source}) AS s) AS k WHERE ({', '.join(f'r.{c}' for c in KEY)}) = ({', '.join(f'k.{c}' for c in KEY)}) "
        f"AND r.record_count <= 0"
    )


INSERTED = "SELECT 1 AS sign, * FROM new_rows"
DELETED = "SELECT -1 AS sign, * FROM old_rows"
UPDATED = "SELECT -1 AS sign, * FROM old_rows UNION ALL SELECT 1 AS sign, * FROM new_rows"

FUNCTIONS = f"""
CREATE FUNCTION quality_latency_bin(latency double precision) RETURNS integer
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
  SELECT CASE WHEN latency IS NULL THEN NULL WHEN latency < 1 THEN 0
  ELSE least({BINS - 1}, 1 + floor(ln(latency) / ln(1.1))::integer) END
$$;
CREATE FUNCTION quality_latency_histogram(bins integer[], counts bigint[]) RETURNS integer[]
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
  SELECT array_agg(coalesce(u.n, 0)::integer ORDER BY g.bin)
  FROM generate_series(0, {BINS - 1}) AS g(bin) LEFT JOIN unnest(bins, counts) AS u(bin, n) ON u.bin = g.bin
$$;
CREATE FUNCTION quality_rollup_add(a integer[], b integer[]) RETURNS integer[]
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
  SELECT array_agg(coalesce(x, 0) + coalesce(y, 0) ORDER BY i) FROM unnest(a, b) WITH ORDINALITY AS t(x, y, i)
$$;
CREATE FUNCTION quality_rollups_on_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF TG_OP = 'INSERT' THEN
    {_merge(INSERTED)};
  ELSIF TG_OP = 'DELETE' THEN
    {_merge(DELETED)};
    {_drop_empty("SELECT * FROM old_rows")};
  ELSE
    {_merge(UPDATED)};
    {_drop_empty("SELECT * FROM old_rows")};
  END IF;
  RETURN NULL;
END
$$;
CREATE TRIGGER quality_rollups_insert AFTER INSERT ON quality_metrics
  REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION quality_rollups_on_change();
CREATE TRIGGER quality_rollups_delete AFTER DELETE ON quality_metrics
  REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION quality_rollups_on_change();
CREATE TRIGGER quality_rollups_update AFTER UPDATE ON quality_metrics
  REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION quality_rollups_on_change();
"""  # noqa: S608 (constant SQL, built from the constants above)


def _count(name: str) -> sa.Column[Any]:
    return sa.Column(name, sa.BigInteger(), server_default="0", nullable=False)


def _sum(name: str) -> sa.Column[Any]:
    return sa.Column(name, sa.Float(), server_default="0", nullable=False)


def upgrade() -> None:
    op.create_table(
        "quality_rollups",
        sa.Column("id", sa.UUID(), server_default=sa.text("gen_random_uuid()"), nullable=False),
        sa.Column("customer_id", sa.UUID(), nullable=False),
        sa.Column("model_name", sa.String(length=100), nullable=False),
        sa.Column("model_version", sa.String(length=50), nullable=False),
        sa.Column("route", sa.Text(), server_default="", nullable=False),
        sa.Column("hour_start", TIMESTAMP, nullable=False),
        *(_count(name) if name in COUNT_COLUMNS else _sum(name) for name, _ in TOTALS),
        sa.Column("latency_histogram", postgresql.ARRAY(sa.Integer()), nullable=False),
        sa.Column("created_at", TIMESTAMP, server_default=sa.text("now()"), nullable=False),
        sa.Column("updated_at", TIMESTAMP, server_default=sa.text("now()"), nullable=False),
        sa.ForeignKeyConstraint(
            ["customer_id"], ["customers.id"], name="fk_quality_rollups_customer_id_customers", ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name="pk_quality_rollups"),
        sa.UniqueConstraint(
            "customer_id", "model_name", "model_version", "hour_start", "route", name="uq_quality_rollups_key"
        ),
    )
    op.create_index("ix_quality_rollups_hour_start", "quality_rollups", ["hour_start"])
    op.execute(FUNCTIONS)
    # The records already stored, rolled up once (a plain INSERT: the table is new and empty).
    op.execute(_merge("SELECT 1 AS sign, * FROM quality_metrics"))


def downgrade() -> None:
    for name in ("insert", "delete", "update"):
        op.execute(f"DROP TRIGGER quality_rollups_{name} ON quality_metrics")
    op.execute("DROP FUNCTION quality_rollups_on_change()")
    op.execute("DROP FUNCTION quality_rollup_add(integer[], integer[])")
    op.execute("DROP FUNCTION quality_latency_histogram(integer[], bigint[])")
    op.execute("DROP FUNCTION quality_latency_bin(double precision)")
    op.drop_index("ix_quality_rollups_hour_start", table_name="quality_rollups")
    op.drop_table("quality_rollups")
