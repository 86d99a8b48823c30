"""`optiinfra worker`: the background process: it runs workflow runs from the job queue, recovers those of dead
workers, and runs continuous quality monitoring and the Prometheus collector periodically."""

from __future__ import annotations

import logging
from typing import Annotated

import typer

from optiinfra.cli.context import console, open_engine, reports_errors
from optiinfra.collectors.collector import collect_all
from optiinfra.config import load_settings
from optiinfra.db import migrations
from optiinfra.db.engine import make_session_factory
from optiinfra.quality import partitions
from optiinfra.quality.monitoring_pass import MonitoringCache, run_monitoring_pass
from optiinfra.recommendations.service import rollback_for_quality
from optiinfra.workflows import queue
from optiinfra.workflows.service import build_runner

PARTITION_INTERVAL = 600.0  # seconds between passes over quality_metrics' partitions


@reports_errors
def worker(
    interval: Annotated[
        float, typer.Option(help="Seconds between quality monitoring passes (0: no monitoring in this worker).", min=0)
    ] = 60,
    concurrency: Annotated[int, typer.Option(help="Workflow jobs run at once by this worker.", min=1, max=64)] = 4,
    once: Annotated[bool, typer.Option("--once", help="Run every due job and one monitoring pass, then exit.")] = False,
    collect_interval: Annotated[
        float,
        typer.Option(help="Seconds between collections from the Prometheus sources (0: none in this worker).", min=0),
    ] = 60,
) -> None:
    """Run workflow runs from the queue (any number of workers, on any machines) and continuous quality monitoring
    (docs/quality.md)."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    engine = open_engine()
    migrations.require_current_schema(engine)
    factory = make_session_factory(engine)
    runner = build_runner(factory, load_settings().data_dir)

    cache = MonitoringCache()  # what it read of each baseline, between passes

    def monitor() -> None:
        report = run_monitoring_pass(factory, rollback=rollback_for_quality, cache=cache)
        console.print(
            f"pass: {report.judged} judged, {report.skipped_busy} busy elsewhere, {report.baselines} baselines, "
            f"{report.regressions} regressions opened, {report.updated} updated, {report.resolved} resolved, "
            f"{report.rollbacks} rollbacks {report.verdicts}"
        )

    def collect() -> None:
        for report in collect_all(factory):
            if report.ok:
                console.print(
                    f"collect {report.name}: {report.resource_rows} resource rows, {report.agent_rows} serving rows"
                )
            else:
                console.print(f"collect {report.name}: failed: {report.error}", soft_wrap=True)

    def maintain_partitions() -> None:
        report = partitions.maintain(factory)
        if report.created or report.retention.dropped or report.retention.deleted or report.deleted_on_request:
            console.print(
                f"quality records: {len(report.created)} partitions created, {len(report.retention.dropped)} dropped, "
                f"{report.retention.deleted} records past retention deleted, {report.deleted_on_request} deleted "
                "on request"
            )

    # quality_metrics' partitions ahead of time, retention and requested deletions (docs/scale.md), whatever the
    # monitoring interval: without partitions ahead, new records land in the default partition.
    periodic = [(PARTITION_INTERVAL, maintain_partitions), *([(interval, monitor)] if interval > 0 else [])]
    if collect_interval > 0:
        periodic.append((collect_interval, collect))
    if interval:
        console.print(f"worker: {concurrency} workflow job(s) at once; quality monitoring every {interval:g} s")
    queue.Worker(engine.url, runner.advance, factory, concurrency=concurrency, periodic=periodic).run(once=once)
