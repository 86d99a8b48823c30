"""The FastAPI application: /api/v1, /healthz, /readyz, /metrics, and the background health sweep."""

from __future__ import annotations

import logging
import threading
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

from fastapi import APIRouter, FastAPI, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from sqlalchemy import Engine, func, select
from sqlalchemy.exc import SQLAlchemyError

from optiinfra import __version__
from optiinfra.agent_state.routes import router as agent_state_router
from optiinfra.agents import service as agent_service
from optiinfra.agents.routes import router as agents_router
from optiinfra.api.errors import ERROR_RESPONSES, install_error_handlers
from optiinfra.api.middleware import BodySizeLimit, RequestMetrics
from optiinfra.api.strict import StrictRoute
from optiinfra.auth.limiter import AuthFailureLimiter
from optiinfra.config import load_settings
from optiinfra.customers.routes import router as customers_router
from optiinfra.dashboard.routes import install_dashboard
from optiinfra.db import migrations
from optiinfra.db.engine import make_session_factory, unit_of_work
from optiinfra.events.routes import router as events_router
from optiinfra.models import Agent, Optimization, QualityRegression, Recommendation
from optiinfra.otlp.routes import router as otlp_router
from optiinfra.quality.routes import router as quality_router
from optiinfra.recommendations.routes import router as recommendations_router
from optiinfra.resources.routes import router as resources_router
from optiinfra.workflows.routes import router as workflows_router
from optiinfra.workflows.service import build_runner

logger = logging.getLogger("optiinfra.api")

DEFAULT_MAX_BODY_BYTES = 16 * 1024 * 1024


@dataclass(frozen=True)
class AppConfig:
    engine: Engine
    operator_key_digest: str
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    health_sweep_seconds: float = 10.0
    data_dir: Path | None = None  # where workflow artifacts and the rollout simulator live; default: settings
    auth_failures_per_minute: int = 30  # per client address, then 429


class DomainCollector(Collector):
    """Domain gauges read from the database at scrape time: agents, recommendations, optimizations by status."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def collect(self) -> Iterator[GaugeMetricFamily]:
        families = [
            ("optiinfra_agents", "Agents by status.", Agent.status),
            ("optiinfra_recommendations", "Recommendations by status.", Recommendation.status),
            ("optiinfra_optimizations", "Optimizations by status.", Optimization.status),
        ]
        try:
            with self.engine.connect() as connection:
                for name, documentation, column in families:
                    gauge = GaugeMetricFamily(name, documentation, labels=["status"])
                    for status, count in connection.execute(select(column, func.count()).group_by(column)):
                        gauge.add_metric([str(status)], count)
                    yield gauge
                open_regressions = connection.execute(
                    select(func.count()).select_from(QualityRegression).where(QualityRegression.resolved_at.is_(None))
                ).scalar_one()
                yield GaugeMetricFamily(
                    "optiinfra_open_regressions", "Quality regressions not yet resolved.", value=open_regressions
                )
        except SQLAlchemyError:
            logger.warning("metrics: database unavailable, domain gauges skipped")


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

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
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
    )
    app.state.engine = config.engine
    app.state.session_factory = make_session_factory(config.engine)
    app.state.operator_key_digest = config.operator_key_digest
    app.state.auth_limiter = AuthFailureLimiter(config.auth_failures_per_minute)
    data_dir = config.data_dir or load_settings().data_dir
    app.state.workflow_runner = build_runner(app.state.session_factory, data_dir)
    registry = CollectorRegistry()
    registry.register(DomainCollector(config.engine))
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
    ):
        api.include_router(router)
    app.include_router(api)
    app.include_router(otlp_router)  # /v1/traces and /v1/logs (OTLP/HTTP), /api/v1/otlp

    @app.get("/healthz", tags=["operations"])
    def healthz() -> dict[str, str]:
        """The process is up."""
        return {"status": "ok"}

    @app.get("/readyz", tags=["operations"], responses={503: {"description": "Not ready"}})
    def readyz() -> JSONResponse:
        """The database is reachable and its schema is at head."""
        try:
            revision = migrations.current_revision(config.engine)
        except SQLAlchemyError:
            return JSONResponse(status_code=503, content={"status": "unavailable", "reason": "database unreachable"})
        head = migrations.head_revision()
        if revision != head:
            return JSONResponse(
                status_code=503,
                content={"status": "unavailable", "reason": f"schema at {revision}, head is {head}"},
            )
        return JSONResponse(content={"status": "ready", "revision": revision})

    @app.get("/metrics", tags=["operations"], response_class=Response)
    def metrics() -> Response:
        """Prometheus text format: request counts and latencies, and domain gauges."""
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    install_dashboard(app)
    app.add_middleware(RequestMetrics, registry=registry)
    app.add_middleware(BodySizeLimit, limit=config.max_body_bytes)
    return app
