"""The dashboard's pages. Each page resolves the caller from the session cookie and calls the same services as the
API, so a customer sees exactly what its API key would show, and an operator sees every tenant."""

from __future__ import annotations

import hashlib
import hmac
import inspect
import secrets
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from importlib import resources
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, FastAPI, Form, Request
from fastapi.responses import FileResponse, HTMLResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from markupsafe import Markup
from sqlalchemy.orm import Session
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from optiinfra.agent_state import service as agent_state
from optiinfra.agents import service as agent_service
from optiinfra.api.strict import StrictRoute
from optiinfra.auth.keys import key_digest
from optiinfra.auth.principal import Principal, Role
from optiinfra.auth.service import authenticate
from optiinfra.customers import service as customer_service
from optiinfra.dashboard.charts import LineChart, Marker, render
from optiinfra.db.engine import unit_of_work
from optiinfra.errors import OptiInfraError
from optiinfra.events import schemas as event_schemas
from optiinfra.events import service as event_service
from optiinfra.models import (
    EventSeverity,
    OptimizationStatus,
    RecommendationStatus,
    RegressionSeverity,
    WorkflowStatus,
)
from optiinfra.otlp import service as otlp_service
from optiinfra.quality import repository as quality_repository
from optiinfra.quality import schemas as quality_schemas
from optiinfra.quality import service as quality_service
from optiinfra.recommendations import schemas as rec_schemas
from optiinfra.recommendations import service as recommendations
from optiinfra.workflows import service as workflow_service

COOKIE = "optiinfra_key"
PAGE_SIZE = 25

templates = Jinja2Templates(directory=str(resources.files("optiinfra") / "dashboard" / "templates"))
router = APIRouter(include_in_schema=False, route_class=StrictRoute)


def _actor_name(data: dict[str, Any]) -> str:
    """Who an event names as its actor (a dict from the services, a plain string in older rows)."""
    actor = data.get("actor")
    if isinstance(actor, dict):
        return str(actor.get("name", ""))
    return str(actor or "")


templates.env.filters["actor"] = _actor_name


def _about_recommendation(data: dict[str, Any], recommendation_id: str) -> bool:
    subject = data.get("subject") or {}
    return recommendation_id in {subject.get("recommendation_id"), data.get("recommendation_id")}


class NotSignedInError(Exception):
    pass


class CsrfError(Exception):
    pass


def _csrf_token(request: Request, key: str) -> str:
    """Bound to the signed-in key and this server's secret: a form from another site cannot carry it."""
    secret: bytes = request.app.state.dashboard_secret
    return hmac.new(secret, key_digest(key).encode(), hashlib.sha256).hexdigest()


@contextmanager
def _caller(request: Request) -> Iterator[tuple[Session, Principal]]:
    key = request.cookies.get(COOKIE)
    if not key:
        raise NotSignedInError
    with unit_of_work(request.app.state.session_factory) as session:
        try:
            principal = authenticate(session, key, request.app.state.operator_key_digest)
        except OptiInfraError:
            raise NotSignedInError from None
        if principal.role is Role.AGENT:
            raise NotSignedInError  # the dashboard is for people: operator and customers
        yield session, principal


def _check_csrf(request: Request, token: str) -> None:
    key = request.cookies.get(COOKIE) or ""
    if not key or not hmac.compare_digest(token, _csrf_token(request, key)):
        raise CsrfError


def _page(request: Request, template: str, principal: Principal, **context: Any) -> HTMLResponse:
    key = request.cookies.get(COOKIE, "")
    return templates.TemplateResponse(
        request,
        template,
        {"principal": principal, "csrf": _csrf_token(request, key), "now": datetime.now(UTC), **context},
    )


def _back(request: Request, path: str, message: str | None = None, error: str | None = None) -> RedirectResponse:
    note = {"message": message} if message else {"error": error} if error else {}
    separator = "&" if "?" in path else "?"
    return RedirectResponse(f"{path}{separator}{urlencode(note)}" if note else path, status_code=303)


# --- sign-in -------------------------------------------------------------------------------------------------


@router.get("/login", response_class=HTMLResponse)
def login_form(request: Request) -> HTMLResponse:
    return templates.TemplateResponse(request, "login.html", {"error": request.query_params.get("error")})


@router.post("/login")
def login(request: Request, api_key: Annotated[str, Form(max_length=200)]) -> Response:
    client = request.client.host if request.client else "unknown"
    request.app.state.auth_limiter.check(client)
    with unit_of_work(request.app.state.session_factory) as session:
        try:
            principal = authenticate(session, api_key.strip(), request.app.state.operator_key_digest)
        except OptiInfraError:
            principal = None
    if principal is None or principal.role is Role.AGENT:
        request.app.state.auth_limiter.record_failure(client)
        return templates.TemplateResponse(
            request, "login.html", {"error": "That key is not an operator or customer key."}, status_code=401
        )
    response = RedirectResponse("/", status_code=303)
    response.set_cookie(
        COOKIE,
        api_key.strip(),
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
        max_age=12 * 3600,
        path="/",
    )
    return response


@router.post("/logout")
def logout(request: Request, csrf: Annotated[str, Form()] = "") -> Response:
    _check_csrf(request, csrf)
    response = RedirectResponse("/login", status_code=303)
    response.delete_cookie(COOKIE, path="/")
    return response


# --- overview ------------------------------------------------------------------------------------------------


def _customer_ids(session: Session, principal: Principal) -> list[uuid.UUID]:
    if principal.role is Role.CUSTOMER:
        assert principal.customer_id is not None
        return [principal.customer_id]
    page = customer_service.list_customers(session, principal, status=None, cursor=None, limit=100)
    return [c.id for c in page.items]


@router.get("/", response_class=HTMLResponse)
def overview(request: Request) -> HTMLResponse:
    with _caller(request) as (session, principal):
        summaries = [recommendations.summary(session, principal, cid) for cid in _customer_ids(session, principal)]
        names = {}
        for summary in summaries:
            names[summary.customer_id] = customer_service.get_customer(session, principal, summary.customer_id).name
        open_regressions = quality_service.list_regressions(
            session, principal, customer_id=None, model_name=None, is_open=True, cursor=None, limit=500
        ).items
        agents = agent_service.list_agents(session, principal, agent_type=None, status=None, cursor=None, limit=500)
        recent = event_service.list_events(session, principal, event_schemas.EventFilters(), cursor=None, limit=12)
        return _page(
            request,
            "overview.html",
            principal,
            summaries=summaries,
            names=names,
            pending=sum((s.estimated_savings_pending for s in summaries), start=0),
            realised=sum((s.actual_savings_realised for s in summaries), start=0),
            regressions_by_severity=Counter(str(r.severity) for r in open_regressions),
            severities=[str(s) for s in RegressionSeverity],
            agents_by_status=Counter(str(a.status) for a in agents.items),
            events=recent.items,
        )


# --- recommendations -----------------------------------------------------------------------------------------


@router.get("/recommendations", response_class=HTMLResponse)
def recommendation_queue(request: Request, status: str | None = None, cursor: str | None = None) -> HTMLResponse:
    with _caller(request) as (session, principal):
        chosen = RecommendationStatus(status) if status in set(RecommendationStatus) else None
        page = recommendations.list_recommendations(
            session,
            principal,
            customer_id=None,
            agent_id=None,
            status=chosen,
            priority=None,
            recommendation_type=None,
            cursor=cursor,
            limit=PAGE_SIZE,
        )
        return _page(
            request,
            "recommendations.html",
            principal,
            page=page,
            status=status or "",
            statuses=[str(s) for s in RecommendationStatus],
        )


@router.get("/recommendations/{recommendation_id}", response_class=HTMLResponse)
def recommendation_detail(request: Request, recommendation_id: uuid.UUID) -> HTMLResponse:
    with _caller(request) as (session, principal):
        detail = recommendations.get_recommendation(session, principal, recommendation_id)
        history = event_service.list_events(
            session, principal, event_schemas.EventFilters(customer_id=detail.customer_id), cursor=None, limit=200
        ).items
        wanted = str(recommendation_id)
        related = [e for e in history if _about_recommendation(e.data, wanted)]
        return _page(
            request,
            "recommendation.html",
            principal,
            rec=detail,
            events=related,
            message=request.query_params.get("message"),
            error=request.query_params.get("error"),
            rollbackable={str(OptimizationStatus.EXECUTING), str(OptimizationStatus.COMPLETED)},
        )


def _act(request: Request, csrf: str, back: str, action: Callable[[Session, Principal], str]) -> Response:
    _check_csrf(request, csrf)
    try:
        with _caller(request) as (session, principal):
            message = action(session, principal)
    except OptiInfraError as error:
        return _back(request, back, error=error.message)
    return _back(request, back, message=message)


@router.post("/recommendations/{recommendation_id}/decision")
def decide(
    request: Request,
    recommendation_id: uuid.UUID,
    decision: Annotated[str, Form(pattern="^(approve|reject)$")],
    comment: Annotated[str, Form(max_length=5000)] = "",
    csrf: Annotated[str, Form()] = "",
) -> Response:
    def run(session: Session, principal: Principal) -> str:
        result = recommendations.decide(
            session,
            principal,
            recommendation_id,
            rec_schemas.Decision(decision=decision, comment=comment or None),  # type: ignore[arg-type]
        )
        return f"Recommendation {result.recommendation.status}."

    return _act(request, csrf, f"/recommendations/{recommendation_id}", run)


@router.post("/optimizations/{optimization_id}/rollback")
def rollback(
    request: Request,
    optimization_id: uuid.UUID,
    reason: Annotated[str, Form(min_length=1, max_length=5000)],
    recommendation_id: Annotated[uuid.UUID, Form()],
    csrf: Annotated[str, Form()] = "",
) -> Response:
    def run(session: Session, principal: Principal) -> str:
        recommendations.rollback_optimization(session, principal, optimization_id, rec_schemas.Rollback(reason=reason))
        return "Optimization rolled back."

    return _act(request, csrf, f"/recommendations/{recommendation_id}", run)


# --- quality -------------------------------------------------------------------------------------------------


def _quality_charts(
    session: Session, principal: Principal, customer_id: uuid.UUID, model: str, version: str, days: int
) -> dict[str, str]:
    since = datetime.now(UTC) - timedelta(days=days)
    series = quality_repository.bucketed_series(session, customer_id, model, version, since, timedelta(hours=1))
    baseline = quality_repository.active_baseline(session, customer_id, model, version, datetime.now(UTC))
    regressions = quality_service.list_regressions(
        session, principal, customer_id=customer_id, model_name=model, is_open=None, cursor=None, limit=200
    ).items
    markers = [
        Marker(r.detected_at, f"{r.metric_name} ({r.severity})", "regression")
        for r in regressions
        if r.model_version == version and r.detected_at >= since
    ]
    rollbacks = event_service.list_events(
        session,
        principal,
        event_schemas.EventFilters(customer_id=customer_id, event_type="optimization.rolled_back", since=since),
        cursor=None,
        limit=50,
    ).items
    markers += [Marker(e.created_at, "rollback", "rollback") for e in rollbacks]
    band = None
    mean = None
    if baseline is not None:
        overall = baseline.metadata_.get("components", {}).get("overall_quality_score", {})
        mean = overall.get("mean")
        if mean is not None and overall.get("std") is not None:
            band = (mean - overall["std"], mean + overall["std"])
    points = [(p.bucket, p.overall) for p in series if p.overall is not None]
    return {
        "overall": render(LineChart("Overall quality score per hour", "score", points, band, mean, markers)),
        "latency": render(
            LineChart(
                "p95 latency per hour",
                "ms",
                [(p.bucket, p.p95_latency_ms) for p in series if p.p95_latency_ms is not None],
                baseline=baseline.p95_latency_ms if baseline else None,
                markers=markers,
            )
        ),
        "hallucination": render(
            LineChart(
                "Hallucination rate per hour",
                "rate",
                [(p.bucket, p.hallucination_rate) for p in series],
                markers=markers,
                y_min=0,
            )
        ),
    }


@router.get("/quality", response_class=HTMLResponse)
def quality(
    request: Request, customer: uuid.UUID | None = None, model: str | None = None, days: int = 7
) -> HTMLResponse:
    with _caller(request) as (session, principal):
        customers = _customer_ids(session, principal)
        customer_id = principal.customer_id or customer or (customers[0] if customers else None)
        if customer_id is not None and customer_id not in customers:
            customer_id = None
        versions = quality_repository.model_versions_of(session, customer_id) if customer_id else []
        chosen = (
            model
            if model in {f"{m}:{v}" for m, v in versions}
            else (f"{versions[0][0]}:{versions[0][1]}" if versions else None)
        )
        charts: dict[str, str] = {}
        baselines: list[quality_schemas.Baseline] = []
        if customer_id is not None and chosen:
            name, version = chosen.split(":", 1)
            charts = {
                k: Markup(v)  # noqa: S704 (charts.render escapes every text it embeds)
                for k, v in _quality_charts(
                    session, principal, customer_id, name, version, max(1, min(days, 60))
                ).items()
            }
            baselines = quality_service.list_baselines(
                session,
                principal,
                customer_id=customer_id,
                model_name=name,
                model_version=version,
                cursor=None,
                limit=20,
            ).items
        names = {cid: customer_service.get_customer(session, principal, cid).name for cid in customers}
        not_understood = (
            otlp_service.not_understood(session, principal, customer_id, max(1, min(days, 60)), 50).items
            if customer_id is not None
            else []
        )
        return _page(
            request,
            "quality.html",
            principal,
            customers=names,
            customer_id=customer_id,
            versions=versions,
            chosen=chosen,
            charts=charts,
            baselines=baselines,
            not_understood=not_understood,
            days=days,
            message=request.query_params.get("message"),
            error=request.query_params.get("error"),
        )


@router.post("/quality/baselines")
def establish_baseline(
    request: Request,
    customer_id: Annotated[uuid.UUID, Form()],
    model: Annotated[str, Form(max_length=160)],
    last_n: Annotated[int, Form(ge=1, le=1_000_000)] = 1000,
    csrf: Annotated[str, Form()] = "",
) -> Response:
    name, _, version = model.partition(":")

    def run(session: Session, principal: Principal) -> str:
        baseline = quality_service.establish_baseline(
            session,
            principal,
            quality_schemas.BaselineCreate(
                customer_id=customer_id,
                model_name=name,
                model_version=version,
                window=quality_schemas.BaselineWindow(last_n=last_n),
            ),
        )
        return f"Baseline ({baseline.baseline_type}) established from {baseline.sample_size} records."

    return _act(request, csrf, f"/quality?customer={customer_id}&model={model}", run)


@router.get("/regressions", response_class=HTMLResponse)
def regressions(request: Request, show: str = "open", cursor: str | None = None) -> HTMLResponse:
    with _caller(request) as (session, principal):
        page = quality_service.list_regressions(
            session,
            principal,
            customer_id=None,
            model_name=None,
            is_open=True if show == "open" else None,
            cursor=cursor,
            limit=PAGE_SIZE,
        )
        return _page(
            request,
            "regressions.html",
            principal,
            page=page,
            show=show,
            message=request.query_params.get("message"),
            error=request.query_params.get("error"),
        )


@router.post("/regressions/{regression_id}/resolve")
def resolve(
    request: Request,
    regression_id: uuid.UUID,
    notes: Annotated[str, Form(min_length=1, max_length=5000)],
    csrf: Annotated[str, Form()] = "",
) -> Response:
    def run(session: Session, principal: Principal) -> str:
        quality_service.resolve_regression(session, principal, regression_id, notes)
        return "Regression resolved."

    return _act(request, csrf, "/regressions", run)


# --- agents, workflows, events ------------------------------------------------------------------------------


@router.get("/agents", response_class=HTMLResponse)
def agents(request: Request) -> HTMLResponse:
    with _caller(request) as (session, principal):
        listed = agent_service.list_agents(session, principal, agent_type=None, status=None, cursor=None, limit=200)
        details = []
        for agent in listed.items:
            capabilities = agent_state.list_capabilities(session, principal, agent.id)
            configs = (
                agent_state.list_configs(session, Principal.operator(), agent.id)
                if principal.role is Role.OPERATOR
                else []
            )
            details.append({"agent": agent, "capabilities": capabilities, "configs": configs})
        locks = agent_state.list_locks(session, Principal.operator()) if principal.role is Role.OPERATOR else []
        return _page(request, "agents.html", principal, agents=details, locks=locks)


@router.get("/workflows", response_class=HTMLResponse)
def workflows(request: Request, cursor: str | None = None) -> HTMLResponse:
    with _caller(request) as (session, principal):
        page = workflow_service.list_executions(
            session, principal, customer_id=None, workflow_type=None, status=None, cursor=cursor, limit=PAGE_SIZE
        )
        return _page(request, "workflows.html", principal, page=page)


@router.get("/workflows/{workflow_id}", response_class=HTMLResponse)
def workflow_detail(request: Request, workflow_id: uuid.UUID) -> HTMLResponse:
    with _caller(request) as (session, principal):
        detail = workflow_service.get_execution(session, principal, workflow_id)
        now = datetime.now(UTC)

        def ended(step: Any) -> datetime | None:
            # A running step lasts until now; a step that never finished (skipped, crashed) is drawn as a point.
            return step.completed_at or (now if step.status == "running" else step.started_at)

        spans = [(s.started_at, ended(s)) for s in detail.steps if s.started_at is not None]
        first = min((start for start, _ in spans), default=now)
        last = max((end for _, end in spans if end is not None), default=now)
        total = (last - first).total_seconds() or 1.0
        timeline = []
        for step in detail.steps:
            end = ended(step)
            if step.started_at is None or end is None:
                timeline.append({"step": step, "left": 0.0, "width": 0.0})
                continue
            left = (step.started_at - first).total_seconds() / total * 100
            width = max(0.5, (end - step.started_at).total_seconds() / total * 100)
            timeline.append({"step": step, "left": left, "width": min(width, 100 - left)})
        return _page(
            request,
            "workflow.html",
            principal,
            run=detail,
            timeline=timeline,
            running=detail.status is WorkflowStatus.RUNNING,
            phases=[
                {
                    "step": s.step_name,
                    "gate": s.output_data["gate"],
                    "control_source": s.output_data.get("control_source"),
                }
                for s in detail.steps
                if isinstance(s.output_data.get("gate"), dict) and "verdicts" in s.output_data["gate"]
            ],
        )


@router.post("/workflows/{workflow_id}/resume")
def resume_workflow(
    request: Request,
    workflow_id: uuid.UUID,
    note: Annotated[str, Form(max_length=2000)] = "",
    csrf: Annotated[str, Form()] = "",
) -> Response:
    def run(session: Session, principal: Principal) -> str:
        workflow_service.resume(session, request.app.state.workflow_runner, principal, workflow_id, note or None)
        return "Rollout resumed: the paused phase counts as passed by your decision."

    return _act(request, csrf, f"/workflows/{workflow_id}", run)


@router.post("/workflows/{workflow_id}/abort")
def abort_workflow(request: Request, workflow_id: uuid.UUID, csrf: Annotated[str, Form()] = "") -> Response:
    def run(session: Session, principal: Principal) -> str:
        workflow_service.abort(session, request.app.state.workflow_runner, principal, workflow_id)
        return "Rollout aborted: its applied phases are being undone and the optimization rolled back."

    return _act(request, csrf, f"/workflows/{workflow_id}", run)


@router.get("/workflows/{workflow_id}/artifacts/{artifact_id}")
def download(request: Request, workflow_id: uuid.UUID, artifact_id: uuid.UUID) -> FileResponse:
    with _caller(request) as (session, principal):
        path, name, content_type = workflow_service.artifact_file(
            session, principal, workflow_id, artifact_id, request.app.state.workflow_runner.artifact_root
        )
    return FileResponse(path, media_type=content_type, filename=name)


@router.get("/events", response_class=HTMLResponse)
def events(
    request: Request, event_type: str | None = None, severity: str | None = None, cursor: str | None = None
) -> HTMLResponse:
    with _caller(request) as (session, principal):
        filters = event_schemas.EventFilters(
            event_type=event_type or None,
            severity=EventSeverity(severity) if severity in set(EventSeverity) else None,
        )
        page = event_service.list_events(session, principal, filters, cursor=cursor, limit=50)
        return _page(
            request,
            "events.html",
            principal,
            page=page,
            event_type=event_type or "",
            severity=severity or "",
            severities=[str(s) for s in EventSeverity],
        )


# --- wiring --------------------------------------------------------------------------------------------------

SECURITY_HEADERS = {
    # No inline script anywhere; styles come from our own stylesheet (SVG charts use presentation attributes).
    "Content-Security-Policy": "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
}


class SecurityHeaders:
    """Adds SECURITY_HEADERS to every response outside /api/ (a plain ASGI middleware: it never touches bodies)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"].startswith("/api/"):
            await self.app(scope, receive, send)
            return

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                present = {name.lower() for name, _ in message.get("headers", [])}
                extra = [
                    (name.lower().encode(), value.encode())
                    for name, value in SECURITY_HEADERS.items()
                    if name.lower().encode() not in present
                ]
                message = {**message, "headers": [*message.get("headers", []), *extra]}
            await send(message)

        await self.app(scope, receive, with_headers)


def install_dashboard(app: FastAPI) -> None:
    """Mount the dashboard's pages and static files on the app."""
    app.state.dashboard_secret = secrets.token_bytes(32)
    app.include_router(router)
    app.mount(
        "/static", StaticFiles(directory=str(resources.files("optiinfra") / "dashboard" / "static")), name="static"
    )

    api_errors = app.exception_handlers[OptiInfraError]

    @app.exception_handler(OptiInfraError)
    async def _page_error(request: Request, error: OptiInfraError) -> Response:
        # The API answers JSON; a page answers a page, with the same status and message.
        if request.url.path.startswith("/api/"):
            answer = api_errors(request, error)
            return await answer if inspect.isawaitable(answer) else answer
        return templates.TemplateResponse(
            request,
            "error.html",
            {"status": error.status_code, "message": error.message},
            status_code=error.status_code,
        )

    @app.exception_handler(NotSignedInError)
    async def _sign_in(request: Request, _: NotSignedInError) -> Response:
        response = RedirectResponse("/login", status_code=303)
        response.delete_cookie(COOKIE, path="/")
        return response

    @app.exception_handler(CsrfError)
    async def _csrf(request: Request, _: CsrfError) -> Response:
        return HTMLResponse(
            "<!doctype html><title>Refused</title><p>This form was not issued by this OptiInfra (or the server has "
            "restarted since). Go back, reload the page and try again.</p>",
            status_code=403,
        )

    app.add_middleware(SecurityHeaders)
