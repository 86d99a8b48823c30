"""`/metrics`: OptiInfra's counters and gauges, read from PostgreSQL at scrape time.

Everything here is the database's truth, so the API and every worker process report the same values, and any of
them may be scraped:

- counters are the sums of `metric_counters` (`optiinfra.metrics.counters`), added to in the transactions of the
  work they count;
- gauges are cheap aggregate queries (agents by health, open regressions by severity, the job queues, the alert
  outbox, live workers).

Every declared label value is reported, 0 when nothing has happened or is in that state. Labels are bounded: no
customer id, unless the operator sets `OPTIINFRA_METRICS_CUSTOMER_LABELS=1` (then counters and open regressions
carry `customer_id`). Request counts and latencies (`optiinfra_http_*`) are per process: see docs/alerts.md.
"""

from __future__ import annotations

import enum
import itertools
import json
import logging
import os
from collections.abc import Iterator, Sequence
from typing import Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy import Connection, Engine, func, select, text
from sqlalchemy.exc import SQLAlchemyError

from optiinfra.metrics.counters import COUNTERS
from optiinfra.models import (
    Agent,
    AgentStatus,
    MetricCounter,
    Optimization,
    OptimizationStatus,
    QualityRegression,
    Recommendation,
    RecommendationStatus,
    RegressionSeverity,
)

logger = logging.getLogger("optiinfra.metrics")
CUSTOMER_LABELS_ENV = "OPTIINFRA_METRICS_CUSTOMER_LABELS"
QUEUES = ("workflows", "alerts")
ALERT_STATES = ("pending", "sending", "failed")

_QUEUE_SQL = text(
    "SELECT j.queue_name, count(*), "
    "EXTRACT(EPOCH FROM now() - min(coalesce(j.scheduled_at, "
    "(SELECT min(e.at) FROM procrastinate_events AS e WHERE e.job_id = j.id AND e.type = 'deferred')))) "
    "FROM procrastinate_jobs AS j WHERE j.status = 'todo' AND (j.scheduled_at IS NULL OR j.scheduled_at <= now()) "
    "GROUP BY j.queue_name"
)
_WORKERS_SQL = text(
    "SELECT count(*) FROM procrastinate_workers WHERE last_heartbeat > now() - make_interval(secs => :seconds)"
)
_OUTBOX_SQL = text(
    "SELECT status, count(*), EXTRACT(EPOCH FROM now() - min(next_attempt_at) FILTER (WHERE next_attempt_at <= now())) "
    "FROM alert_outbox WHERE status IN ('pending', 'sending', 'failed') GROUP BY status"
)


def customer_labels_enabled() -> bool:
    return os.environ.get(CUSTOMER_LABELS_ENV, "").strip().lower() in {"1", "true", "yes", "on"}


def _by_status(
    connection: Connection, name: str, documentation: str, column: Any, values: Sequence[enum.Enum]
) -> GaugeMetricFamily:
    counts = {
        str(status): int(count) for status, count in connection.execute(select(column, func.count()).group_by(column))
    }
    gauge = GaugeMetricFamily(name, documentation, labels=["status"])
    for value in values:
        gauge.add_metric([str(value.value)], counts.get(str(value.value), 0))
    return gauge


class DatabaseCollector(Collector):
    """Collects every OptiInfra metric that lives in the database, at each scrape."""

    def __init__(self, engine: Engine, stalled_worker_seconds: float = 30.0) -> None:
        self.engine = engine
        self.stalled_worker_seconds = stalled_worker_seconds

    def collect(self) -> Iterator[Metric]:
        with_customer = customer_labels_enabled()
        try:
            with self.engine.connect() as connection:
                families: list[Metric] = [
                    *self._counters(connection, with_customer),
                    *self._gauges(connection, with_customer),
                ]
        except SQLAlchemyError:
            logger.warning("metrics: database unavailable, database metrics skipped", exc_info=True)
            return
        yield from families

    def _counters(self, connection: Connection, with_customer: bool) -> list[CounterMetricFamily]:
        columns = [MetricCounter.name, MetricCounter.labels]
        if with_customer:
            columns.append(MetricCounter.customer_key)
        rows = connection.execute(select(*columns, func.sum(MetricCounter.value)).group_by(*columns)).all()
        values: dict[str, dict[tuple[str, ...], float]] = {}
        for row in rows:
            name, labels = str(row[0]), json.loads(row[1])
            spec = COUNTERS.get(name)
            if spec is None:
                continue
            key = tuple(str(labels.get(label, "")) for label in spec[1])
            if with_customer:
                key += (str(row[2]),)
            values.setdefault(name, {})
            values[name][key] = values[name].get(key, 0) + float(row[-1])
        families = []
        for name, (documentation, label_values) in COUNTERS.items():
            label_names = list(label_values) + (["customer_id"] if with_customer else [])
            family = CounterMetricFamily(name, documentation, labels=label_names)
            seen = dict(values.get(name, {}))
            if not with_customer:
                for combination in itertools.product(*label_values.values()):
                    seen.setdefault(tuple(combination), 0)
            for key, value in sorted(seen.items()):
                family.add_metric(list(key), value)
            families.append(family)
        return families

    def _gauges(self, connection: Connection, with_customer: bool) -> list[GaugeMetricFamily]:
        families = [
            _by_status(connection, "optiinfra_agents", "Agents by health.", Agent.status, list(AgentStatus)),
            _by_status(
                connection,
                "optiinfra_recommendations",
                "Recommendations by status.",
                Recommendation.status,
                list(RecommendationStatus),
            ),
            _by_status(
                connection,
                "optiinfra_optimizations",
                "Optimizations by status.",
                Optimization.status,
                list(OptimizationStatus),
            ),
        ]
        columns: list[Any] = [QualityRegression.severity]
        if with_customer:
            columns.append(QualityRegression.customer_id)
        open_rows = connection.execute(
            select(*columns, func.count()).where(QualityRegression.resolved_at.is_(None)).group_by(*columns)
        ).all()
        regressions = GaugeMetricFamily(
            "optiinfra_open_regressions",
            "Quality regressions (incidents, one per model version and metric) not yet resolved, by severity.",
            labels=["severity", "customer_id"] if with_customer else ["severity"],
        )
        if with_customer:
            for row in open_rows:
                regressions.add_metric([str(row[0]), str(row[1])], int(row[2]))
        else:
            counts = {str(row[0]): int(row[1]) for row in open_rows}
            for severity in RegressionSeverity:
                regressions.add_metric([severity.value], counts.get(severity.value, 0))
        families.append(regressions)

        queued = {str(row[0]): (int(row[1]), float(row[2] or 0.0)) for row in connection.execute(_QUEUE_SQL)}
        depth = GaugeMetricFamily(
            "optiinfra_queue_depth", "Jobs due and waiting for a worker, by queue.", labels=["queue"]
        )
        age = GaugeMetricFamily(
            "optiinfra_queue_oldest_age_seconds",
            "How long the oldest job due in the queue has waited (0 when none waits).",
            labels=["queue"],
        )
        for queue in QUEUES:
            count, oldest = queued.get(queue, (0, 0.0))
            depth.add_metric([queue], count)
            age.add_metric([queue], max(0.0, oldest))
        families += [depth, age]

        workers = connection.execute(_WORKERS_SQL, {"seconds": self.stalled_worker_seconds}).scalar_one()
        families.append(
            GaugeMetricFamily(
                "optiinfra_workers", "Workers whose heartbeat is recent (0: nothing runs jobs).", value=int(workers)
            )
        )

        outbox = {str(row[0]): (int(row[1]), float(row[2] or 0.0)) for row in connection.execute(_OUTBOX_SQL)}
        alerts = GaugeMetricFamily(
            "optiinfra_alerts", "Alerts not delivered: waiting, being sent, or failed (given up).", labels=["status"]
        )
        for state in ALERT_STATES:
            alerts.add_metric([state], outbox.get(state, (0, 0.0))[0])
        oldest = max((outbox[s][1] for s in ("pending", "sending") if s in outbox), default=0.0)
        families.append(alerts)
        families.append(
            GaugeMetricFamily(
                "optiinfra_alerts_oldest_due_age_seconds",
                "How long the oldest alert due for delivery has waited (0 when none waits).",
                value=max(0.0, oldest),
            )
        )
        return families
