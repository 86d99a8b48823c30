"""`optiinfra worker`: the background process: it runs workflow runs from the job queue, recovers those of dead
workers, and runs continuous quality monitoring and the Prometheus collector periodically."""

from __future__ import annotations

import logging
from typing import Annotated

import typer

from optiinfra import background
from optiinfra.cli.context import console, open_engine, reports_errors
from optiinfra.config import load_settings
from optiinfra.db import migrations
from optiinfra.db.engine import make_session_factory
from optiinfra.workflows import queue
from optiinfra.workflows.service import build_runner


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

    periodic = background.periodic_work(
        factory,
        monitor_seconds=interval,
        collect_seconds=collect_interval,
        say=lambda line: console.print(line, soft_wrap=True),
    )
    if interval:
        console.print(f"worker: {concurrency} workflow job(s) at once; quality monitoring every {interval:g} s")
    queue.Worker(engine.url, runner.advance, factory, concurrency=concurrency, periodic=periodic).run(once=once)
