"""`optiinfra serve`: the API, the dashboard and a workflow worker, one command; several processes behind one port
(optiinfra.api.processes)."""

from __future__ import annotations

import logging
import os
import socket
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeElapsedColumn
from sqlalchemy.orm import Session, sessionmaker

from optiinfra.api.admission import configured_max_in_flight
from optiinfra.api.processes import (
    ApiProcessSpec,
    Child,
    Supervisor,
    WorkerProcessSpec,
    prepare_children,
    run_api_process,
    run_worker_process,
)
from optiinfra.auth.operator_key import ADMIN_KEY_ENV, DIGEST_FILE, load_operator_key
from optiinfra.cli.context import console, reports_errors
from optiinfra.config import load_settings
from optiinfra.db import migrations
from optiinfra.db.engine import make_engine, make_session_factory, resolve_database_url
from optiinfra.errors import ConfigurationError

if TYPE_CHECKING:
    from optiinfra.demo import driver as demo_driver

# optiinfra.otlp.grpc_receiver.DEFAULT_PORT, which the API process uses; importing that module here would load the
# whole OTLP service into the front, seconds of start-up (tests/cli/test_serve_processes.py checks they agree).
OTLP_GRPC_PORT = 4317
# uvicorn's default: connections the kernel queues while the front is busy.
LISTEN_BACKLOG = 2048


@reports_errors
def serve(
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.", min=1, max=65535)] = 8000,
    demo: Annotated[
        bool,
        typer.Option(
            "--demo",
            help="Also run the living demo: demo customers whose agents, traffic, incidents and rollouts move "
            "(idempotent; safe to restart).",
        ),
    ] = False,
    with_worker: Annotated[
        bool,
        typer.Option(
            "--worker/--no-worker",
            help="Also run a workflow worker, in a process of its own (start `optiinfra worker` processes to scale "
            "out).",
        ),
    ] = True,
    api_processes: Annotated[
        int,
        typer.Option(
            "--api-processes",
            envvar="OPTIINFRA_API_PROCESSES",
            min=1,
            max=64,
            help="API processes behind the front, which owns the port and answers /healthz (docs/reliability.md).",
        ),
    ] = 1,
    otlp_grpc_port: Annotated[
        int | None,
        typer.Option(
            "--otlp-grpc-port",
            envvar="OPTIINFRA_OTLP_GRPC_PORT",
            min=0,
            max=65535,
            show_default=False,
            help=f"Port for OTLP/gRPC (docs/otlp.md); 0 turns it off. Default: {OTLP_GRPC_PORT}, skipped with a "
            "warning when that port is taken (a port you choose must be free).",
        ),
    ] = None,
) -> None:
    """Run the OptiInfra server: the API under /api/v1, /healthz, /readyz and /metrics."""
    settings = load_settings()
    # The children's fork server imports the application (seconds of CPU) while the front starts the database.
    prepare_children()
    embedded = settings.database_url is None
    if embedded:
        console.print(f"[dim]Using the embedded PostgreSQL in {settings.data_dir / 'pgdata'}[/dim]")
    engine = make_engine(resolve_database_url(settings))
    if embedded:
        # The embedded database is ours: keep it at head without asking.
        migrations.upgrade(engine)
    else:
        migrations.require_current_schema(engine)
    factory = make_session_factory(engine)
    prepared = _prepare_demo(factory, settings.data_dir, with_worker) if demo else None
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
    if prepared is not None:
        from optiinfra.demo.story import KEY_FILE

        kept = settings.data_dir / KEY_FILE
        console.print(
            f"[bold]Demo customer key[/bold] (Acme Analytics; {'new, ' if prepared.key_is_new else ''}kept in {kept} "
            f"and the same at every start):\n  [bold green]{prepared.customer_key}[/bold green]",
            soft_wrap=True,
        )
    total_in_flight = configured_max_in_flight()
    database_url = engine.url.render_as_string(hide_password=False)
    engine.dispose()  # the children have pools of their own; the front needs no database
    listener = _listen(host, port)
    api = [
        Child(
            f"api-{number}",
            run_api_process,
            ApiProcessSpec(
                database_url=database_url,
                operator_key_digest=operator_key.digest,
                # The limit is the server's: each API process takes its share.
                max_in_flight=max(1, total_in_flight // api_processes),
                host=host,
                otlp_grpc_port=otlp_grpc_port if number == 0 else 0,  # one receiver, in the first API process
            ),
        )
        for number in range(api_processes)
    ]
    workers = []
    if with_worker:
        spec = WorkerProcessSpec(database_url, str(settings.data_dir), concurrency=2, demo=demo)
        workers.append(Child("worker", run_worker_process, spec))
        console.print(
            "[dim]A workflow worker runs in a process of its own (--no-worker to leave runs to `optiinfra worker`)."
            "[/dim]"
        )
    console.print(f"OptiInfra on [bold]http://{host}:{port}/[/bold]  (API docs: http://{host}:{port}/docs)")
    logging.basicConfig(level=logging.INFO, format="%(levelname)s:     %(message)s")
    status = Supervisor(listener, api, workers).run()
    if status:
        raise typer.Exit(status)


def _listen(host: str, port: int) -> socket.socket:
    """The server's listening socket, bound here so a port in use is reported before anything starts."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    try:
        return socket.create_server((host, port), family=family, backlog=LISTEN_BACKLOG)
    except OSError as error:
        raise ConfigurationError(
            f"Cannot listen on {host}:{port} ({error.strerror or error}).",
            fix="Choose another one with --port (or --host), or stop what uses it.",
        ) from error


def _prepare_demo(factory: sessionmaker[Session], data_dir: Path, with_worker: bool) -> demo_driver.Prepared:
    """The demo's cast and its history up to now (optiinfra.demo); what the worker then keeps moving."""
    # Imported here: the demo pulls in the quality statistics (scipy), seconds of start-up a plain `serve` does not
    # need in the front.
    from optiinfra.demo import driver as demo_driver

    with Progress(
        TextColumn("Demo traffic"), BarColumn(), TaskProgressColumn(), TimeElapsedColumn(), console=console
    ) as bar:
        task = bar.add_task("history", total=None)
        prepared = demo_driver.Demo(factory, data_dir).prepare(
            progress=lambda done, total: bar.update(task, completed=done, total=total)
        )
    created = f"created {', '.join(prepared.created_customers)}; " if prepared.created_customers else ""
    console.print(
        f"Demo: {created}{prepared.quality_records:,} quality records and {prepared.resource_samples:,} GPU samples "
        f"sent, {prepared.monitoring_passes} monitoring passes replayed.",
        soft_wrap=True,
    )
    if not with_worker:
        console.print(
            "[yellow]--no-worker: the demo's agents, traffic and rollouts stand still (they move in the server's "
            "worker process).[/yellow]",
            soft_wrap=True,
        )
    return prepared
