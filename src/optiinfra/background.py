"""The periodic work beside the job queue, the same in `optiinfra worker` and in `optiinfra serve`'s worker process:

- quality_metrics' partitions made ahead of time, retention, and requested deletions (docs/scale.md), every
  PARTITION_INTERVAL seconds: without partitions ahead, new records land in the default partition;
- the quality monitoring pass (docs/quality.md), which may roll back an attributable optimization with the
  lifecycle's rollback;
- the Prometheus collector (docs/collectors.md).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from optiinfra.collectors.collector import collect_all
from optiinfra.quality import partitions
from optiinfra.quality.monitoring_pass import MonitoringCache, run_monitoring_pass
from optiinfra.recommendations.service import rollback_for_quality

logger = logging.getLogger(__name__)

PARTITION_INTERVAL = 600.0  # seconds between passes over quality_metrics' partitions
MONITOR_INTERVAL = 60.0  # seconds between quality monitoring passes
COLLECT_INTERVAL = 60.0  # seconds between collections from the Prometheus sources

Periodic = list[tuple[float, Callable[[], Any]]]


def periodic_work(
    factory: sessionmaker[Session],
    *,
    monitor_seconds: float = MONITOR_INTERVAL,
    collect_seconds: float = COLLECT_INTERVAL,
    say: Callable[[str], Any] = logger.info,
) -> Periodic:
    """(interval, function) pairs for queue.Worker's `periodic`; an interval of 0 leaves that work out (partition
    upkeep always runs). `say` receives one line per pass that did something."""
    cache = MonitoringCache()  # what the passes read of each baseline, kept between them

    def monitor() -> None:
        report = run_monitoring_pass(factory, rollback=rollback_for_quality, cache=cache)
        say(
            f"pass: {report.judged} judged, {report.skipped_busy} busy elsewhere, {report.baselines} baselines, "
            f"{report.regressions} regressions opened, {report.updated} updated, {report.resolved} resolved, "
            f"{report.rollbacks} rollbacks {report.verdicts}"
        )

    def collect() -> None:
        for report in collect_all(factory):
            if report.ok:
                say(f"collect {report.name}: {report.resource_rows} resource rows, {report.agent_rows} serving rows")
            else:
                say(f"collect {report.name}: failed: {report.error}")

    def maintain_partitions() -> None:
        report = partitions.maintain(factory)
        if report.created or report.retention.dropped or report.retention.deleted or report.deleted_on_request:
            say(
                f"quality records: {len(report.created)} partitions created, {len(report.retention.dropped)} dropped, "
                f"{report.retention.deleted} records past retention deleted, {report.deleted_on_request} deleted "
                "on request"
            )

    work: Periodic = [(PARTITION_INTERVAL, maintain_partitions)]
    if monitor_seconds > 0:
        work.append((monitor_seconds, monitor))
    if collect_seconds > 0:
        work.append((collect_seconds, collect))
    return work
