"""`optiinfra worker`: the background process: workflow runs and periodic quality monitoring."""

from __future__ import annotations

import time
from typing import Annotated

import typer

from optiinfra.auth.principal import Principal
from optiinfra.cli.context import console, open_engine, reports_errors
from optiinfra.config import load_settings
from optiinfra.db import migrations
from optiinfra.db.engine import make_session_factory
from optiinfra.quality.worker import run_monitoring_pass
from optiinfra.workflows.service import build_runner


@reports_errors
def worker(
    interval: Annotated[float, typer.Option(help="Seconds between monitoring passes.", min=1)] = 60,
    once: Annotated[bool, typer.Option("--once", help="Run one pass and exit.")] = False,
) -> None:
    """Run continuous quality monitoring (docs/quality.md) for every model version with recent traffic, and
    recover workflow runs interrupted by a crash."""
    engine = open_engine()
    migrations.require_current_schema(engine)
    factory = make_session_factory(engine)
    runner = build_runner(factory, load_settings().data_dir)
    while True:
        recovered = runner.recover_stale(Principal.system("worker"))
        if recovered:
            console.print(f"recovered {len(recovered)} interrupted workflow run(s)")
        report = run_monitoring_pass(factory)
        console.print(
            f"pass: {report.judged} judged, {report.skipped_busy} busy elsewhere, {report.baselines} baselines, "
            f"{report.regressions} regressions opened, {report.updated} updated, {report.resolved} resolved, "
            f"{report.rollbacks} rollbacks {report.verdicts}"
        )
        if once:
            return
        time.sleep(interval)
