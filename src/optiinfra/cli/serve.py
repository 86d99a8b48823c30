"""`optiinfra serve`: the API (and, later, the dashboard) on one port."""

from __future__ import annotations

import os
from typing import Annotated

import typer
import uvicorn

from optiinfra.api.app import AppConfig, create_app
from optiinfra.api.logs import uvicorn_log_config
from optiinfra.auth.operator_key import ADMIN_KEY_ENV, DIGEST_FILE, load_operator_key
from optiinfra.auth.principal import Principal
from optiinfra.cli.context import console, reports_errors
from optiinfra.config import load_settings
from optiinfra.customers import service as customer_service
from optiinfra.db import migrations
from optiinfra.db.engine import make_engine, make_session_factory, resolve_database_url, unit_of_work
from optiinfra.db.seed import demo_id, seed_demo_data
from optiinfra.workflows import queue
from optiinfra.workflows.service import build_runner


@reports_errors
def serve(
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.", min=1, max=65535)] = 8000,
    demo: Annotated[bool, typer.Option("--demo", help="Also load the demo data (idempotent).")] = False,
    with_worker: Annotated[
        bool,
        typer.Option(
            "--worker/--no-worker",
            help="Also run a workflow worker in this process (start `optiinfra worker` processes to scale out).",
        ),
    ] = True,
) -> None:
    """Run the OptiInfra server: the API under /api/v1, /healthz, /readyz and /metrics."""
    settings = load_settings()
    embedded = settings.database_url is None
    if embedded:
        console.print(f"[dim]Using the embedded PostgreSQL in {settings.data_dir / 'pgdata'}[/dim]")
    engine = make_engine(resolve_database_url(settings))
    if embedded:
        # The embedded database is ours: keep it at head without asking.
        migrations.upgrade(engine)
    else:
        migrations.require_current_schema(engine)
    demo_key: str | None = None
    if demo:
        report = seed_demo_data(engine)
        console.print(f"Demo data: {sum(added for added, _ in report.values())} rows added.")
        # The demo customers' keys are unknown on purpose; issue a fresh one for Acme so the dashboard can be walked
        # as a customer too (approving a recommendation is the customer's decision).
        with unit_of_work(make_session_factory(engine)) as session:
            demo_key = customer_service.rotate_key(session, Principal.operator(), demo_id("customers:acme")).api_key
    operator_key = load_operator_key(settings.data_dir)
    if operator_key.new_key:
        console.print(
            f"[bold]Operator API key[/bold] (shown once; only its digest is kept in "
            f"{settings.data_dir / DIGEST_FILE}):\n  [bold green]{operator_key.new_key}[/bold green]",
            soft_wrap=True,
        )
    elif not os.environ.get(ADMIN_KEY_ENV):
        console.print(
            f"Operator key: the one printed when {settings.data_dir / DIGEST_FILE} was created "
            f"(delete that file and restart to get a new one, or set {ADMIN_KEY_ENV}).",
            soft_wrap=True,
        )
    if demo_key:
        console.print(
            f"[bold]Demo customer key[/bold] (Acme Analytics; a new one at every --demo start):\n"
            f"  [bold green]{demo_key}[/bold green]",
            soft_wrap=True,
        )
    app = create_app(AppConfig(engine=engine, operator_key_digest=operator_key.digest))
    if with_worker:
        factory = make_session_factory(engine)
        runner = build_runner(factory, settings.data_dir)
        queue.Worker(
            engine.url, runner.advance, factory, concurrency=2, name="optiinfra-serve-worker"
        ).start_in_thread()
        console.print(
            "[dim]A workflow worker runs in this process (--no-worker to leave runs to `optiinfra worker`).[/dim]"
        )
    console.print(f"OptiInfra on [bold]http://{host}:{port}/[/bold]  (API docs: http://{host}:{port}/docs)")
    uvicorn.run(app, host=host, port=port, log_level="info", log_config=uvicorn_log_config(), proxy_headers=False)
