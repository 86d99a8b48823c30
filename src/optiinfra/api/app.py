"""The FastAPI application: /api/v1, /healthz, /readyz, /metrics, and the background health sweep."""

from __future__ import annotations

import asyncio
import logging
import os
import sys
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import psycopg
from anyio import to_thread
from fastapi import APIRouter, FastAPI, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.pool import QueuePool

from optiinfra import __version__
from optiinfra.agent_state.routes import router as agent_state_router
from optiinfra.agents import service as agent_service
from optiinfra.agents.routes import router as agents_router
from optiinfra.alerts.routes import router as alerts_router
from optiinfra.api.admission import AdmissionControl, configured_max_in_flight
from optiinfra.api.errors import ERROR_RESPONSES, install_error_handlers
from optiinfra.api.forwarded import TrustedProxies
from optiinfra.api.middleware import BodySizeLimit, RequestMetrics
from optiinfra.api.openapi import install_openapi, operation_id
from optiinfra.api.strict import StrictRoute
from optiinfra.auth.limiter import AuthFailureLimiter
from optiinfra.collectors.routes import router as collectors_router
from optiinfra.config import load_settings
from optiinfra.customers.routes import router as customers_router
from optiinfra.dashboard.routes import install_dashboard
from optiinfra.db import migrations
from optiinfra.db.engine import make_session_factory, unit_of_work
from optiinfra.events.routes import router as events_router
from optiinfra.metrics.collector import DatabaseCollector
from optiinfra.otlp.routes import router as otlp_router
from optiinfra.quality.routes import router as quality_router
from optiinfra.recommendations.routes import router as recommendations_router
from optiinfra.resources.routes import router as resources_router
from optiinfra.workflows import queue
from optiinfra.workflows.routes import router as workflows_router
from optiinfra.workflows.service import build_runner

logger = logging.getLogger("optiinfra.api")

DEFAULT_MAX_BODY_BYTES = 16 * 1024 * 1024
# Pooled connections kept for work outside requests: the health sweep, the workflow runner's background threads and
# a /metrics scrape.
RESERVED_CONNECTIONS = 4
# Worker threads beyond the admission limit: static files and the background work above use threads too.
SPARE_THREADS = 8
READY_TIMEOUT_SECONDS = 2.0
SECURE_COOKIES_ENV = "OPTIINFRA_SECURE_COOKIES"
# How long a thread holding the interpreter lock keeps it when another wants it: shorter than Python's 5 ms, so the
# event loop (accepting connections, answering /healthz, refusing surplus requests) gets its turn soon.
SWITCH_INTERVAL_SECONDS = 0.001


def admission_limit(config: AppConfig) -> int:
    """How many requests the server works on at once: as configured, within what the pool can serve."""
    wanted = config.max_in_flight if config.max_in_flight is not None else configured_max_in_flight()
    return max(1, min(wanted, pool_capacity(config.engine) - RESERVED_CONNECTIONS))


def pool_capacity(engine: Engine) -> int:
    """How many connections the engine's pool can hand out at once (its size plus its overflow)."""
    pool = engine.pool
    if isinstance(pool, QueuePool):
        # SQLAlchemy exposes the overflow only as a private attribute.
        return pool.size() + max(0, pool._max_overflow)
    return RESERVED_CONNECTIONS + 16


@dataclass(frozen=True)
class AppConfig:
    engine: Engine
    operator_key_digest: str
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    health_sweep_seconds: float = 10.0
    data_dir: Path | None = None  # where workflow artifacts and the rollout simulator live; default: settings
    auth_failures_per_minute: int = 30  # failures per client address or key prefix, then 429
    # Requests worked on at once; None: OPTIINFRA_MAX_IN_FLIGHT, else DEFAULT_MAX_IN_FLIGHT; never more than the
    # engine's pool can serve beside RESERVED_CONNECTIONS.
    max_in_flight: int | None = None
    # Of those, requests with a large body (ingest batches); None: half of max_in_flight.
    max_heavy_in_flight: int | None = None
    # Proxies whose X-Forwarded-For / X-Forwarded-Proto are believed; None: OPTIINFRA_TRUSTED_PROXIES.
    trusted_proxies: TrustedProxies | None = None
    # Mark dashboard cookies Secure even when no request says it came over TLS; None: OPTIINFRA_SECURE_COOKIES.
    secure_cookies: bool | None = None
    # How long a request's statement may wait for a row lock before it fails with 409 (retry).
    lock_timeout_ms: int = 5_000


class HealthSweeper:
    """Marks agents degraded or failed when their heartbeats stop, every few seconds, in a daemon thread."""

    def __init__(self, app: FastAPI, interval: float) -> None:
        self.app = app
        self.interval = interval
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._run, name="optiinfra-health-sweep", daemon=True)

    def _run(self) -> None:
        while not self.stopped.wait(self.interval):
            try:
                with unit_of_work(self.app.state.session_factory) as session:
                    agent_service.sweep_health(session)
            except SQLAlchemyError:
                logger.warning("health sweep skipped: database unavailable")

    def start(self) -> None:
        if self.interval > 0:
            self.thread.start()

    def stop(self) -> None:
        self.stopped.set()


def create_app(config: AppConfig) -> FastAPI:
    """Build the application around an engine whose schema is at head."""
    max_in_flight = admission_limit(config)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # Every admitted request can have a worker thread at once, so none waits for a thread while it holds a
        # connection (the lock-up of issue 12).
        limiter = to_thread.current_default_thread_limiter()
        limiter.total_tokens = max(limiter.total_tokens, max_in_flight + SPARE_THREADS)
        sys.setswitchinterval(min(sys.getswitchinterval(), SWITCH_INTERVAL_SECONDS))
        # Workflow runs are advanced (and recovered) by workers of the job queue, never by the API process.
        sweeper = HealthSweeper(app, config.health_sweep_seconds)
        sweeper.start()
        yield
        sweeper.stop()

    app = FastAPI(
        title="OptiInfra",
        version=__version__,
        description="Control plane for LLM infrastructure optimization. Every /api/v1 call needs "
        "`Authorization: Bearer <key>` with an operator, customer or agent key.",
        lifespan=lifespan,
        responses=ERROR_RESPONSES,
        generate_unique_id_function=operation_id,
    )
    app.state.engine = config.engine
    app.state.session_factory = make_session_factory(config.engine)
    app.state.lock_timeout_ms = config.lock_timeout_ms
    app.state.operator_key_digest = config.operator_key_digest
    app.state.auth_limiter = AuthFailureLimiter(config.auth_failures_per_minute)
    app.state.trusted_proxies = config.trusted_proxies or TrustedProxies.from_environment()
    app.state.secure_cookies = (
        config.secure_cookies
        if config.secure_cookies is not None
        else os.environ.get(SECURE_COOKIES_ENV, "").strip().lower() in {"1", "true", "yes"}
    )
    data_dir = config.data_dir or load_settings().data_dir
    app.state.workflow_runner = build_runner(app.state.session_factory, data_dir)
    registry = CollectorRegistry()
    registry.register(DatabaseCollector(config.engine, queue.STALLED_WORKER_SECONDS))
    app.state.metrics_registry = registry
    install_error_handlers(app)

    api = APIRouter(prefix="/api/v1", route_class=StrictRoute)
    for router in (
        customers_router,
        agents_router,
        agent_state_router,
        events_router,
        recommendations_router,
        quality_router,
        resources_router,
        workflows_router,
        alerts_router,
        collectors_router,
    ):
        api.include_router(router)
    app.include_router(api)
    app.include_router(otlp_router)  # /v1/traces and /v1/logs (OTLP/HTTP), /api/v1/otlp

    conninfo = config.engine.url.set(drivername="postgresql").render_as_string(hide_password=False)
    head = migrations.head_revision()

    @app.get(
        "/healthz",
        tags=["operations"],
        responses={503: {"description": "No API process is running (`optiinfra serve` is restarting it)"}},
    )
    async def healthz() -> dict[str, str]:
        """The server is up. `optiinfra serve` answers it in its front process (optiinfra.api.front), without an API
        process; here, on a connection that is already an API process's, it is answered on the event loop, without
        the database or a worker thread."""
        return {"status": "ok"}

    @app.get("/readyz", tags=["operations"], responses={503: {"description": "Not ready"}})
    async def readyz() -> JSONResponse:
        """The database is reachable and its schema is at head; answered within about two seconds, on a connection
        of its own, so a busy pool cannot delay it."""
        try:
            revision = await asyncio.wait_for(
                migrations.current_revision_quickly(conninfo, READY_TIMEOUT_SECONDS), timeout=READY_TIMEOUT_SECONDS + 1
            )
        except (psycopg.Error, OSError, TimeoutError):
            return JSONResponse(status_code=503, content={"status": "unavailable", "reason": "database unreachable"})
        if revision != head:
            return JSONResponse(
                status_code=503,
                content={"status": "unavailable", "reason": f"schema at {revision}, head is {head}"},
            )
        return JSONResponse(content={"status": "ready", "revision": revision})

    @app.get("/metrics", tags=["operations"], response_class=Response)
    def metrics() -> Response:
        """Prometheus text format: OptiInfra's counters and gauges from the database (the same from every process),
        and this process's request counts and latencies (docs/alerts.md)."""
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    install_dashboard(app)
    install_openapi(app)
    # Innermost of the three, so that the request metrics count its refusals.
    app.add_middleware(AdmissionControl, limit=max_in_flight, heavy_limit=config.max_heavy_in_flight)
    app.state.max_in_flight = max_in_flight
    app.state.max_body_bytes = config.max_body_bytes
    app.add_middleware(RequestMetrics, registry=registry)
    app.add_middleware(BodySizeLimit, limit=config.max_body_bytes)
    return app
