"""`optiinfra quality backtest`: recorded traffic replayed through exactly the worker's monitoring.

The records go into a scratch database (created on the same PostgreSQL server for this run, built by the
migrations, dropped afterwards), never into live data. A scratch customer owns them, with the settings given. Then
`monitoring_pass.run_monitoring_pass(factory, now)` runs at the worker's interval on record time, from the first
record's minute to one interval after the last record: the same baseline policy, judge, incident rule and actions as
the worker. What the scratch database's regressions table holds at the end is the report.
"""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
from psycopg import sql
from sqlalchemy import create_engine, select, text
from sqlalchemy.engine import URL

from optiinfra.auth.keys import generate_key, key_digest
from optiinfra.auth.principal import Principal, Role
from optiinfra.db import migrations
from optiinfra.db.engine import make_session_factory, unit_of_work
from optiinfra.errors import InvalidInputError
from optiinfra.models import Agent, AgentCustomer, AgentType, Customer, QualityRegression
from optiinfra.quality import schemas as quality_schemas
from optiinfra.quality import service
from optiinfra.quality.detection import Rollback
from optiinfra.quality.monitoring_pass import MonitoringCache, run_monitoring_pass
from optiinfra.quality.monitoring_store import WindowCache
from optiinfra.quality.settings import QualitySettings, store_settings

Progress = Callable[[str, int, int], None]  # (stage, done, total)
PASSES_PER_COMMIT = 60  # passes of record time per transaction
READ_AHEAD_MINUTES = 1440  # minutes of later passes whose window aggregates one query reads


@dataclass
class BacktestResult:
    days: float
    records: int
    passes: int
    regressions: list[dict[str, Any]]
    summary: list[dict[str, Any]]

    def to_json(self) -> dict[str, Any]:
        """Exactly the documented shape: {"days", "regressions": [...]} (the per-day summary is printed as a table)."""
        return {"days": self.days, "regressions": self.regressions}


def _admin(url: URL) -> str:
    return url.set(drivername="postgresql", database="postgres").render_as_string(hide_password=False)


def run_backtest(
    records: Sequence[dict[str, Any]],
    settings: QualitySettings,
    server: URL,
    *,
    rollback: Rollback,
    progress: Progress | None = None,
) -> BacktestResult:
    """Replay `records` (quality import records) in a scratch database on `server`; see the module's docstring.
    `rollback` is what the monitoring may do to an attributable optimization (the scratch database holds none)."""
    if not records:
        raise InvalidInputError("The file holds no records.")
    validated = service.validate_file_records(list(records), datetime.now(UTC) + timedelta(days=36_500))
    name = f"optiinfra_backtest_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(_admin(server), autocommit=True) as connection:
        connection.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    engine = create_engine(server.set(database=name))
    try:
        migrations.upgrade(engine)
        factory = make_session_factory(engine)
        with unit_of_work(factory) as session:
            customer = Customer(
                name="backtest",
                email=f"backtest-{uuid.uuid4().hex[:8]}@backtest.invalid",
                api_key=key_digest(generate_key(Role.CUSTOMER)),  # never shown: nobody signs in to a scratch database
            )
            store_settings(customer, settings)
            agent = Agent(type=AgentType.APPLICATION, name="backtest")
            session.add_all([customer, agent])
            session.flush()
            session.add(AgentCustomer(agent_id=agent.id, customer_id=customer.id))  # the agent serves the customer
            customer_id = customer.id
        for offset in range(0, len(records), quality_schemas.MAX_BATCH):
            batch = list(records[offset : offset + quality_schemas.MAX_BATCH])
            with unit_of_work(factory) as session:
                service.ingest(session, Principal.operator(), batch, customer_id=customer_id, agent_id=None)
            if progress:
                progress("loading", min(offset + len(batch), len(records)), len(records))
        with engine.begin() as connection:
            connection.execute(text("ANALYZE quality_metrics"))  # the planner's statistics of the loaded records
        first = min(record.timestamp for record in validated)
        last = max(record.timestamp for record in validated)
        interval = timedelta(seconds=settings.monitoring.interval_seconds)
        moment = first.astimezone(UTC).replace(second=0, microsecond=0) + interval
        stop = last + interval
        total = int((stop - moment) / interval) + 1
        passes = 0
        # The data no longer changes: passes share a read-ahead of their windows' aggregates, and PASSES_PER_COMMIT
        # of them share one transaction (the worker commits after each version of each pass).
        step = interval.total_seconds()
        cache = MonitoringCache(
            windows=WindowCache(ahead_minutes=READ_AHEAD_MINUTES, anchor=moment, step_seconds=int(step))
            if step.is_integer()
            else None
        )
        while moment <= stop:
            with unit_of_work(factory) as session:
                for _ in range(PASSES_PER_COMMIT):
                    if moment > stop:
                        break
                    run_monitoring_pass(factory, moment, rollback=rollback, cache=cache, session=session)
                    passes += 1
                    moment += interval
            if progress:
                progress("replaying", passes, total)
        with unit_of_work(factory) as session:
            rows = session.scalars(
                select(QualityRegression).order_by(QualityRegression.detected_at, QualityRegression.metric_name)
            ).all()
            regressions = [
                {
                    "detected_at": row.detected_at.astimezone(UTC).isoformat(),
                    "resolved_at": row.resolved_at.astimezone(UTC).isoformat() if row.resolved_at else None,
                    "model_name": row.model_name,
                    "model_version": row.model_version,
                    "regression_type": str(row.regression_type),
                    "metric_name": row.metric_name,
                    "severity": str(row.severity),
                    "action": str(row.action_taken),
                }
                for row in rows
            ]
    finally:
        engine.dispose()
        with psycopg.connect(_admin(server), autocommit=True) as connection:
            connection.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
    days = (last - first).total_seconds() / 86_400
    return BacktestResult(
        days=round(days, 4),
        records=len(records),
        passes=passes,
        regressions=regressions,
        summary=summarize(regressions, validated),
    )


def summarize(
    regressions: list[dict[str, Any]], records: Sequence[quality_schemas.QualityRecord]
) -> list[dict[str, Any]]:
    """Per model version and UTC day: records, regressions opened, by severity."""
    volume = Counter((r.model_name, r.model_version, r.timestamp.astimezone(UTC).date().isoformat()) for r in records)
    opened: dict[tuple[str, str, str], Counter[str]] = {}
    for regression in regressions:
        key = (regression["model_name"], regression["model_version"], regression["detected_at"][:10])
        opened.setdefault(key, Counter())[regression["severity"]] += 1
    out = []
    for key in sorted(set(volume) | set(opened)):
        severities = opened.get(key, Counter())
        out.append(
            {
                "model_name": key[0],
                "model_version": key[1],
                "day": key[2],
                "records": volume.get(key, 0),
                "regressions": sum(severities.values()),
                "by_severity": dict(severities),
            }
        )
    return out
