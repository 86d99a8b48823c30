"""`optiinfra serve`: the API (and, later, the dashboard) on one port."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any

import typer
import uvicorn
from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeElapsedColumn
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from optiinfra.api.app import RESERVED_CONNECTIONS, AppConfig, create_app, pool_capacity
from optiinfra.api.logs import uvicorn_log_config
from optiinfra.auth.operator_key import ADMIN_KEY_ENV, DIGEST_FILE, load_operator_key
from optiinfra.cli.context import console, reports_errors
from optiinfra.config import load_settings
from optiinfra.db import migrations
from optiinfra.db.engine import make_engine, make_session_factory, resolve_database_url
from optiinfra.demo import driver as demo_driver
from optiinfra.demo.story import KEY_FILE
from optiinfra.errors import ConfigurationError
from optiinfra.otlp.grpc_receiver import DEFAULT_PORT as OTLP_GRPC_PORT
from optiinfra.otlp.grpc_receiver import DEFAULT_WORKERS as OTLP_GRPC_WORKERS
from optiinfra.otlp.grpc_receiver import GrpcConfig, OtlpGrpcReceiver
from optiinfra.workflows import queue
from optiinfra.workflows.service import build_runner


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
            help="Also run a workflow worker in this process (start `optiinfra worker` processes to scale out).",
        ),
    ] = True,
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
        kept = settings.data_dir / KEY_FILE
        console.print(
            f"[bold]Demo customer key[/bold] (Acme Analytics; {'new, ' if prepared.key_is_new else ''}kept in {kept} "
            f"and the same at every start):\n  [bold green]{prepared.customer_key}[/bold green]",
            soft_wrap=True,
        )
    app = create_app(AppConfig(engine=engine, operator_key_digest=operator_key.digest))
    if with_worker:
        runner = build_runner(factory, settings.data_dir)
        periodic = demo_driver.periodic_work(factory, settings.data_dir) if demo else []
        queue.Worker(
            engine.url, runner.advance, factory, concurrency=2, periodic=periodic, name="optiinfra-serve-worker"
        ).start_in_thread()
        console.print(
            "[dim]A workflow worker runs in this process (--no-worker to leave runs to `optiinfra worker`).[/dim]"
        )
    receiver = _start_otlp_grpc(app.state, engine, host, otlp_grpc_port)
    console.print(f"OptiInfra on [bold]http://{host}:{port}/[/bold]  (API docs: http://{host}:{port}/docs)")
    try:
        uvicorn.run(app, host=host, port=port, log_level="info", log_config=uvicorn_log_config(), proxy_headers=False)
    finally:
        if receiver is not None:
            receiver.stop()


def _prepare_demo(factory: sessionmaker[Session], data_dir: Path, with_worker: bool) -> demo_driver.Prepared:
    """The demo's cast and its history up to now (optiinfra.demo); what the worker then keeps moving."""
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
            "worker).[/yellow]",
            soft_wrap=True,
        )
    return prepared


def _start_otlp_grpc(state: Any, engine: Engine, host: str, port: int | None) -> OtlpGrpcReceiver | None:
    """The OTLP/gRPC receiver on `port` (None: the default port if free), sharing the app's sessions, key check and
    throttle; its threads take the pooled connections the HTTP admission limit leaves."""
    if port == 0:
        return None
    workers = max(1, min(OTLP_GRPC_WORKERS, pool_capacity(engine) - RESERVED_CONNECTIONS - state.max_in_flight))
    receiver = OtlpGrpcReceiver(
        GrpcConfig(
            session_factory=state.session_factory,
            operator_key_digest=state.operator_key_digest,
            auth_limiter=state.auth_limiter,
            max_message_bytes=state.max_body_bytes,
            lock_timeout_ms=state.lock_timeout_ms,
            workers=workers,
        )
    )
    try:
        bound = receiver.start(host, OTLP_GRPC_PORT if port is None else port)
    except ConfigurationError as error:
        if port is not None:
            raise
        console.print(f"[yellow]OTLP/gRPC is not served: {error.message}[/yellow] {error.fix}", soft_wrap=True)
        return None
    console.print(f"OTLP/gRPC on [bold]{host}:{bound}[/bold] (OTLP/HTTP on the port below)")
    return receiver
