"""The dashboard's pages. Each page resolves the caller from the session cookie and calls the same services as the
API, so a customer sees exactly what its API key would show, and an operator sees every tenant."""

from __future__ import annotations

import hmac
import inspect
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from importlib import resources
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, FastAPI, Form, Query, Request
from fastapi.responses import FileResponse, HTMLResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from markupsafe import Markup
from sqlalchemy.orm import Session
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from optiinfra.agent_state import service as agent_state
from optiinfra.agents import service as agent_service
from optiinfra.agents.schemas import AgentFilters
from optiinfra.alerts import schemas as alert_schemas
from optiinfra.alerts import service as alert_service
from optiinfra.alerts.outbox import KINDS as ALERT_KINDS
from optiinfra.api.forwarded import TrustedProxies
from optiinfra.api.strict import StrictRoute
from optiinfra.auth.limiter import AuthFailureLimiter, attempt_buckets
from optiinfra.auth.principal import Principal, Role
from optiinfra.auth.service import authenticate
from optiinfra.customers import service as customer_service
from optiinfra.customers.schemas import CustomerFilters
from optiinfra.dashboard import sessions, wording
from optiinfra.dashboard.charts import Lane, LineChart, Marker, Span, render, render_lanes
from optiinfra.db.engine import unit_of_work
from optiinfra.enums import EventSeverity, OptimizationStatus, RecommendationStatus, RegressionSeverity, WorkflowStatus
from optiinfra.errors import OptiInfraError
from optiinfra.events import schemas as event_schemas
from optiinfra.events import service as event_service
from optiinfra.otlp import service as otlp_service
from optiinfra.quality import schemas as quality_schemas
from optiinfra.quality import service as quality_service
from optiinfra.quality.service import RouteSummary
from optiinfra.recommendations import schemas as rec_schemas
from optiinfra.recommendations import service as recommendations
from optiinfra.workflows import service as workflow_service
from optiinfra.workflows.schemas import ExecutionFilters

COOKIE = "optiinfra_session"
PAGE_SIZE = 25

# The only texts a notice can show: a page names one by its key in ?notice= (after an action) or ?refused= (the
# error code of a refused action), so no link can make the dashboard display words of the link's choosing.
NOTICES = {
    "approved": "Recommendation approved.",
    "rejected": "Recommendation rejected.",
    "rolled_back": "Optimization rolled back.",
    "baseline_established": "Baseline established.",
    "regression_resolved": "Regression resolved.",
    "incident_resolved": "Incident resolved: each of its open regressions, with your notes.",
    "rollout_resumed": "Rollout resumed: the paused phase counts as passed by your decision.",
    "rollout_aborted": "Rollout aborted: its applied phases are being undone and the optimization rolled back.",
    "test_alert_queued": "Test alert queued: a worker delivers it; its outcome shows below in a moment.",
    "alert_route_deleted": "Alert route deleted.",
    "alert_route_changed": "Alert route changed.",
    "alert_redelivered": "The alert is queued again.",
}
REFUSALS = {
    "invalid_transition": "That change is not allowed in the current state; the page shows the state now.",
    "conflict": "The change conflicts with the current state or with another change; reload and try again.",
    "not_found": "That no longer exists, or is not yours.",
    "forbidden": "Your key may not do this.",
    "invalid_input": "The form is not valid (or there is not enough data for it yet).",
    "session_ended": "Your session has ended; sign in again.",
    "invalid_key": "That key is not an operator or customer key.",
    "too_many_requests": "Too many failed sign-ins; wait a minute and try again.",
}
GENERIC_REFUSAL = "The action was refused."

templates = Jinja2Templates(directory=str(resources.files("optiinfra") / "dashboard" / "templates"))
router = APIRouter(include_in_schema=False, route_class=StrictRoute)


templates.env.filters["change"] = quality_schemas.change_words
templates.env.filters["sentence"] = wording.describe
templates.env.filters["readable"] = wording.output_lines


def _about_recommendation(data: dict[str, Any], recommendation_id: str) -> bool:
    subject = data.get("subject") or {}
    return recommendation_id in {subject.get("recommendation_id"), data.get("recommendation_id")}


class NotSignedInError(Exception):
    def __init__(self, *, ended: bool = False) -> None:
        super().__init__()
        self.ended = ended  # a cookie was presented, but its session has ended (or never existed)


class CsrfError(Exception):
    pass


def _client_address(request: Request) -> str:
    proxies: TrustedProxies = request.app.state.trusted_proxies
    return proxies.client_address(request)


@contextmanager
def _caller(request: Request, csrf: str | None = None) -> Iterator[tuple[Session, Principal]]:
    """The signed-in caller, in one unit of work; with `csrf`, the form's token is checked against the session's."""
    token = request.cookies.get(COOKIE)
    if not token:
        raise NotSignedInError
    factory = request.app.state.session_factory
    with unit_of_work(factory) as session:
        active = sessions.resolve(session, token, request.app.state.operator_key_digest, datetime.now(UTC))
        if active is not None:
            if csrf is not None and not hmac.compare_digest(csrf.encode(), active.csrf_token.encode()):
                raise CsrfError
            request.state.csrf = active.csrf_token
            yield session, active.principal
            return
    # The cookie opens nothing: forget its session if it had one, and count a failed attempt, like a wrong API key
    # (over the limit, the answer is 429).
    with unit_of_work(factory) as session:
        sessions.close(session, token)
    limiter: AuthFailureLimiter = request.app.state.auth_limiter
    limiter.refuse_failure(attempt_buckets(_client_address(request), None))
    raise NotSignedInError(ended=True)


def _notices(request: Request) -> dict[str, str | None]:
    notice = request.query_params.get("notice")
    refused = request.query_params.get("refused")
    return {
        "message": NOTICES.get(notice) if notice else None,
        "error": REFUSALS.get(refused, GENERIC_REFUSAL) if refused else None,
    }


def _page(request: Request, template: str, principal: Principal, **context: Any) -> HTMLResponse:
    return templates.TemplateResponse(
        request,
        template,
        {
            "principal": principal,
            "csrf": getattr(request.state, "csrf", ""),
            "now": datetime.now(UTC),
            **_notices(request),
            **context,
        },
    )


def _with_query(path: str, **query: object) -> str:
    """`path` with `query` appended, every name and value URL-encoded."""
    given = {name: str(value) for name, value in query.items() if value is not None}
    if not given:
        return path
    return f"{path}{'&' if '?' in path else '?'}{urlencode(given)}"


def _back(path: str, notice: str | None = None, refused: str | None = None) -> RedirectResponse:
    return RedirectResponse(_with_query(path, notice=notice, refused=refused), status_code=303)


def _cookie_is_secure(request: Request) -> bool:
    proxies: TrustedProxies = request.app.state.trusted_proxies
    return bool(request.app.state.secure_cookies) or proxies.is_https(request)


# --- sign-in -------------------------------------------------------------------------------------------------


@router.get("/login", response_class=HTMLResponse)
def login_form(request: Request) -> HTMLResponse:
    return templates.TemplateResponse(request, "login.html", _notices(request))


@router.post("/login")
def login(request: Request, api_key: Annotated[str, Form(max_length=200)]) -> Response:
    key = api_key.strip()
    with unit_of_work(request.app.state.session_factory) as session:
        try:
            principal: Principal | None = authenticate(session, key, request.app.state.operator_key_digest)
        except OptiInfraError:
            principal = None
        if principal is not None and principal.role is not Role.AGENT:
            opened = sessions.open_session(session, principal, key, datetime.now(UTC))
        else:
            principal = None
    if principal is None:
        # Counted like a wrong key on the API; a right key is never refused.
        limiter: AuthFailureLimiter = request.app.state.auth_limiter
        limiter.refuse_failure(attempt_buckets(_client_address(request), key))
        return templates.TemplateResponse(request, "login.html", {"error": REFUSALS["invalid_key"]}, status_code=401)
    response = RedirectResponse("/", status_code=303)
    response.set_cookie(
        COOKIE,
        opened.token,
        httponly=True,
        samesite="strict",
        secure=_cookie_is_secure(request),
        max_age=int(sessions.LIFETIME.total_seconds()),
        path="/",
    )
    return response


@router.post("/logout")
def logout(request: Request, csrf: Annotated[str, Form()] = "") -> Response:
    with _caller(request, csrf):
        pass
    with unit_of_work(request.app.state.session_factory) as session:
        sessions.close(session, request.cookies.get(COOKIE, ""))
    response = RedirectResponse("/login", status_code=303)
    response.delete_cookie(COOKIE, path="/", httponly=True, samesite="strict", secure=_cookie_is_secure(request))
    return response


# --- overview ------------------------------------------------------------------------------------------------


def _customer_ids(session: Session, principal: Principal) -> list[uuid.UUID]:
    if principal.role is Role.CUSTOMER:
        assert principal.customer_id is not None
        return [principal.customer_id]
    page = customer_service.list_customers(session, principal, CustomerFilters(limit=100))
    return [c.id for c in page.items]


@router.get("/", response_class=HTMLResponse)
def overview(request: Request) -> HTMLResponse:
    with _caller(request) as (session, principal):
        summaries = [recommendations.summary(session, principal, cid) for cid in _customer_ids(session, principal)]
        names = {}
        for summary in summaries:
            names[summary.customer_id] = customer_service.get_customer(session, principal, summary.customer_id).name
        open_incidents = quality_service.list_incidents(session, principal, customer_id=None, is_open=True)
        agents = agent_service.list_agents(session, principal, AgentFilters(limit=500))
        recent = event_service.list_events(session, principal, event_schemas.EventFilters(limit=12))
        return _page(
            request,
            "overview.html",
            principal,
            summaries=summaries,
            names=names,
            pending=sum((s.estimated_savings_pending for s in summaries), start=0),
            realised=sum((s.actual_savings_realised for s in summaries), start=0),
            incidents_by_severity=Counter(str(i.severity) for i in open_incidents),
            severities=[str(s) for s in RegressionSeverity],
            agents_by_status=Counter(str(a.status) for a in agents.items),
            events=recent.items,
        )


# --- recommendations -----------------------------------------------------------------------------------------


@router.get("/recommendations", response_class=HTMLResponse)
def recommendation_queue(request: Request, status: str | None = None, cursor: str | None = None) -> HTMLResponse:
    with _caller(request) as (session, principal):
        chosen = RecommendationStatus(status) if status in set(RecommendationStatus) else None
        # The cursor is checked when the list reads it (a cursor the dashboard did not issue is refused there).
        filters = rec_schemas.RecommendationFilters(status=chosen, limit=PAGE_SIZE).model_copy(
            update={"cursor": cursor}
        )
        page = recommendations.list_recommendations(session, principal, filters)
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
            session, principal, event_schemas.EventFilters(customer_id=detail.customer_id, limit=200)
        ).items
        wanted = str(recommendation_id)
        related = [e for e in history if _about_recommendation(e.data, wanted)]
        return _page(
            request,
            "recommendation.html",
            principal,
            rec=detail,
            events=related,
            rollbackable={str(OptimizationStatus.EXECUTING), str(OptimizationStatus.COMPLETED)},
        )


def _act(request: Request, csrf: str, back: str, action: Callable[[Session, Principal], str]) -> Response:
    """Run a form's action for the signed-in caller (its CSRF token checked) and go back to `back` with a notice
    from the fixed set: the action's, or the refusal's by error code."""
    try:
        with _caller(request, csrf) as (session, principal):
            notice = action(session, principal)
    except OptiInfraError as error:
        return _back(back, refused=error.code)
    return _back(back, notice=notice)


@router.post("/recommendations/{recommendation_id}/decision")
def decide(
    request: Request,
    recommendation_id: uuid.UUID,
    decision: Annotated[str, Form(pattern="^(approve|reject)$")],
    comment: Annotated[str, Form(max_length=5000)] = "",
    csrf: Annotated[str, Form()] = "",
) -> Response:
    def run(session: Session, principal: Principal) -> str:
        recommendations.decide(
            session,
            principal,
            recommendation_id,
            rec_schemas.Decision(decision=decision, comment=comment or None),  # type: ignore[arg-type]
        )
        return "approved" if decision == "approve" else "rejected"

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
        return "rolled_back"

    return _act(request, csrf, f"/recommendations/{recommendation_id}", run)


# --- quality -------------------------------------------------------------------------------------------------

# The time ranges a chart can show, with the bucket each is drawn in (points stay between 36 and 168).
RANGES = {
    "6h": (timedelta(hours=6), timedelta(minutes=10)),
    "24h": (timedelta(hours=24), timedelta(minutes=30)),
    "7d": (timedelta(days=7), timedelta(hours=1)),
    "30d": (timedelta(days=30), timedelta(hours=6)),
}
DEFAULT_RANGE = "24h"


def _range_of(chosen: str | None) -> str:
    return chosen if chosen in RANGES else DEFAULT_RANGE


def _model_markers(
    session: Session,
    principal: Principal,
    customer_id: uuid.UUID,
    model: str,
    version: str,
    since: datetime,
) -> list[Marker]:
    """The markers of one model version's charts: its regressions (each linking to its incident), and the rollbacks
    of the optimizations that concerned it (attributed by a regression of this version, or by the recommendation's
    target model). Another model's rollbacks are not drawn here."""
    regressions = quality_service.list_regressions(
        session, principal, quality_schemas.RegressionFilters(customer_id=customer_id, model_name=model, limit=200)
    ).items
    mine = [r for r in regressions if r.model_version == version]
    markers = [
        Marker(r.detected_at, f"{r.metric_name} ({r.severity})", "regression", f"/incidents/{r.id}")
        for r in mine
        if r.detected_at >= since
    ]
    attributed = {
        str(r.metadata["rolled_back_optimization_id"]) for r in mine if r.metadata.get("rolled_back_optimization_id")
    }
    for optimization, recommendation in _changes(session, principal, customer_id, since):
        if optimization.rolled_back_at is None or optimization.rolled_back_at < since:
            continue
        target = recommendation.data.get("model") if isinstance(recommendation.data, dict) else None
        if str(optimization.id) in attributed or target in {model, f"{model}:{version}"}:
            markers.append(
                Marker(
                    optimization.rolled_back_at,
                    f"rollback: {recommendation.type.replace('_', ' ')}",
                    "rollback",
                    f"/recommendations/{recommendation.id}",
                )
            )
    return markers


def _changes(
    session: Session, principal: Principal, customer_id: uuid.UUID, since: datetime
) -> list[tuple[rec_schemas.Optimization, rec_schemas.RecommendationDetail]]:
    """The customer's optimizations active at or after `since`, each with its recommendation."""
    optimizations = recommendations.list_optimizations(
        session, principal, rec_schemas.OptimizationFilters(customer_id=customer_id, limit=200)
    ).items
    found = []
    for optimization in optimizations:
        last = optimization.rolled_back_at or optimization.completed_at
        if last is not None and last < since and optimization.status is not OptimizationStatus.EXECUTING:
            continue
        found.append(
            (optimization, recommendations.get_recommendation(session, principal, optimization.recommendation_id))
        )
    return found


def _quality_charts(
    session: Session,
    principal: Principal,
    customer_id: uuid.UUID,
    model: str,
    version: str,
    chosen_range: str,
    route: str | None,
) -> dict[str, str]:
    span, bucket = RANGES[chosen_range]
    now = datetime.now(UTC)
    since = now - span
    series = quality_service.quality_series(session, principal, customer_id, model, version, since, bucket, route)
    baseline = quality_service.active_baseline(session, principal, customer_id, model, version)
    markers = _model_markers(session, principal, customer_id, model, version, since)
    band = None
    mean = None
    if baseline is not None:
        overall = baseline.metadata.get("components", {}).get("overall_quality_score", {})
        mean = overall.get("mean")
        if mean is not None and overall.get("std") is not None:
            band = (max(0.0, mean - overall["std"]), min(1.0, mean + overall["std"]))
    per = {"6h": "10 min", "24h": "30 min", "7d": "hour", "30d": "6 h"}[chosen_range]
    common = {"markers": markers, "start": since, "end": now, "bucket": bucket}
    return {
        "overall": render(
            LineChart(
                f"Overall quality score (0 to 1), mean per {per}",
                "score",
                [(p.bucket, p.overall) for p in series if p.overall is not None],
                band,
                mean,
                y_min=0.0,
                y_max=1.0,
                **common,  # type: ignore[arg-type]
            )
        ),
        "latency": render(
            LineChart(
                f"p95 latency per {per}, in ms",
                "ms",
                [(p.bucket, p.p95_latency_ms) for p in series if p.p95_latency_ms is not None],
                baseline=baseline.p95_latency_ms if baseline else None,
                y_min=0.0,
                **common,  # type: ignore[arg-type]
            )
        ),
        "hallucination": render(
            LineChart(
                f"Hallucination rate (0 to 1) per {per}",
                "rate",
                [(p.bucket, p.hallucination_rate) for p in series if p.hallucination_rate is not None],
                y_min=0.0,
                y_max=1.0,
                from_zero=True,
                **common,  # type: ignore[arg-type]
            )
        ),
    }


def _chosen_customer(
    session: Session, principal: Principal, customer: uuid.UUID | None
) -> tuple[list[uuid.UUID], uuid.UUID | None]:
    customers = _customer_ids(session, principal)
    customer_id = principal.customer_id or customer or (customers[0] if customers else None)
    if customer_id is not None and customer_id not in customers:
        customer_id = None
    return customers, customer_id


def _chosen_model(versions: list[tuple[str, str]], model: str | None) -> str | None:
    if model in {f"{m}:{v}" for m, v in versions}:
        return model
    return f"{versions[0][0]}:{versions[0][1]}" if versions else None


@router.get("/quality", response_class=HTMLResponse)
def quality(
    request: Request,
    customer: uuid.UUID | None = None,
    model: str | None = None,
    time_range: Annotated[str | None, Query(alias="range", max_length=8)] = None,
    route: Annotated[str | None, Query(max_length=200)] = None,
) -> HTMLResponse:
    chosen_range = _range_of(time_range)
    with _caller(request) as (session, principal):
        customers, customer_id = _chosen_customer(session, principal, customer)
        versions = quality_service.model_versions(session, principal, customer_id) if customer_id else []
        chosen = _chosen_model(versions, model)
        charts: dict[str, str] = {}
        baselines: list[quality_schemas.Baseline] = []
        routes: list[RouteSummary] = []
        since = datetime.now(UTC) - RANGES[chosen_range][0]
        if customer_id is not None and chosen:
            name, version = chosen.split(":", 1)
            routes = quality_service.route_breakdown(session, principal, customer_id, name, version, since)
            if route is not None and route not in {r.route for r in routes}:
                route = None
            charts = {
                k: Markup(v)  # noqa: S704 (charts.render escapes every text it embeds)
                for k, v in _quality_charts(session, principal, customer_id, name, version, chosen_range, route).items()
            }
            baselines = quality_service.list_baselines(
                session,
                principal,
                quality_schemas.BaselineFilters(
                    customer_id=customer_id, model_name=name, model_version=version, limit=20
                ),
            ).items
        names = {cid: customer_service.get_customer(session, principal, cid).name for cid in customers}
        days = max(1, RANGES[chosen_range][0].days)
        not_understood = (
            otlp_service.not_understood(session, principal, customer_id, days, 50).items
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
            ranges=list(RANGES),
            chosen_range=chosen_range,
            routes=routes,
            route=route,
            link=lambda **changes: _with_query(
                "/quality",
                **{"customer": customer_id, "model": chosen, "range": chosen_range, "route": route, **changes},
            ),
        )


@router.get("/changes", response_class=HTMLResponse)
def changes(
    request: Request,
    customer: uuid.UUID | None = None,
    model: str | None = None,
    time_range: Annotated[str | None, Query(alias="range", max_length=8)] = None,
) -> HTMLResponse:
    """The customer's optimizations and rollouts on the same time axis as its quality."""
    chosen_range = _range_of(time_range)
    with _caller(request) as (session, principal):
        customers, customer_id = _chosen_customer(session, principal, customer)
        versions = quality_service.model_versions(session, principal, customer_id) if customer_id else []
        chosen = _chosen_model(versions, model)
        span, _ = RANGES[chosen_range]
        now = datetime.now(UTC)
        since = now - span
        overall = Markup("")
        lanes_svg = Markup("")
        listed: list[dict[str, Any]] = []
        if customer_id is not None:
            if chosen:
                name, version = chosen.split(":", 1)
                overall = Markup(  # noqa: S704 (charts.render escapes every text it embeds)
                    _quality_charts(session, principal, customer_id, name, version, chosen_range, None)["overall"]
                )
            lanes: list[Lane] = []
            for optimization, recommendation in _changes(session, principal, customer_id, since):
                begun = optimization.started_at or optimization.created_at
                ended = optimization.rolled_back_at or optimization.completed_at
                label = f"{recommendation.type.replace('_', ' ')}: {recommendation.title}"
                href = f"/recommendations/{recommendation.id}"
                lanes.append(
                    Lane(
                        recommendation.type.replace("_", " "),
                        [Span(begun, ended, label, str(optimization.status), href)],
                    )
                )
                listed.append(
                    {
                        "kind": "optimization",
                        "label": label,
                        "status": str(optimization.status),
                        "start": begun,
                        "end": ended,
                        "href": href,
                    }
                )
            runs = workflow_service.list_executions(
                session, principal, ExecutionFilters(customer_id=customer_id, limit=100)
            ).items
            by_workflow: dict[str, list[Span]] = {}
            for run in runs:
                begun = run.started_at or run.created_at
                if run.completed_at is not None and run.completed_at < since:
                    continue
                label = str(run.metadata.get("workflow", run.workflow_type))
                href = f"/workflows/{run.id}"
                by_workflow.setdefault(label, []).append(Span(begun, run.completed_at, label, str(run.status), href))
                listed.append(
                    {
                        "kind": "workflow",
                        "label": label,
                        "status": str(run.status),
                        "start": begun,
                        "end": run.completed_at,
                        "href": href,
                    }
                )
            lanes += [Lane(name.replace("_", " "), spans) for name, spans in sorted(by_workflow.items())]
            lanes_svg = Markup(  # noqa: S704 (render_lanes escapes every text it embeds)
                render_lanes(
                    "Optimizations and workflow runs",
                    lanes,
                    since,
                    now,
                )
            )
        names = {cid: customer_service.get_customer(session, principal, cid).name for cid in customers}
        return _page(
            request,
            "changes.html",
            principal,
            customers=names,
            customer_id=customer_id,
            versions=versions,
            chosen=chosen,
            ranges=list(RANGES),
            chosen_range=chosen_range,
            overall=overall,
            lanes=lanes_svg,
            listed=sorted(listed, key=lambda c: c["start"], reverse=True),
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
        quality_service.establish_baseline(
            session,
            principal,
            quality_schemas.BaselineCreate(
                customer_id=customer_id,
                model_name=name,
                model_version=version,
                window=quality_schemas.BaselineWindow(last_n=last_n),
            ),
        )
        return "baseline_established"

    return _act(request, csrf, _with_query("/quality", customer=customer_id, model=model), run)


INCIDENTS_PAGE = 25


def _customer_names(session: Session, principal: Principal) -> dict[uuid.UUID, str]:
    return {
        cid: customer_service.get_customer(session, principal, cid).name for cid in _customer_ids(session, principal)
    }


@router.get("/regressions", response_class=HTMLResponse)
def regressions(request: Request, show: str = "open", page: Annotated[int, Query(ge=1, le=1000)] = 1) -> HTMLResponse:
    """Incidents, one row each (its regressions grouped as the monitoring and its alerts group them)."""
    with _caller(request) as (session, principal):
        incidents = quality_service.list_incidents(
            session, principal, customer_id=None, is_open=True if show == "open" else None
        )
        shown = incidents[(page - 1) * INCIDENTS_PAGE : page * INCIDENTS_PAGE]
        return _page(
            request,
            "regressions.html",
            principal,
            incidents=shown,
            names=_customer_names(session, principal),
            show="open" if show == "open" else "all",
            page_number=page,
            has_next=len(incidents) > page * INCIDENTS_PAGE,
        )


NO_FACET = "(none)"  # the filter value for records that name no route (or no instance)


def _facet(chosen: str | None) -> str | None:
    """A filter's value: None for all, "" for records naming none."""
    if not chosen:
        return None
    return "" if chosen == NO_FACET else chosen


@router.get("/incidents/{incident_id}", response_class=HTMLResponse)
def incident_detail(
    request: Request,
    incident_id: uuid.UUID,
    route: Annotated[str | None, Query(max_length=200)] = None,
    instance: Annotated[str | None, Query(max_length=200)] = None,
    after: Annotated[str | None, Query(max_length=200)] = None,
) -> HTMLResponse:
    """One incident: its regressions with their evidence, and the requests of its window (the drill-down),
    filterable by route and instance, a page at a time."""
    with _caller(request) as (session, principal):
        found = quality_service.incident_records(
            session, principal, incident_id, route=_facet(route), instance=_facet(instance), after=after or None
        )
        incident = found.incident
        return _page(
            request,
            "incident.html",
            principal,
            found=found,
            incident=incident,
            customer_name=customer_service.get_customer(session, principal, incident.customer_id).name,
            route=route or None,
            instance=instance or None,
            link=lambda **changes: _with_query(
                f"/incidents/{incident.id}", **{"route": route, "instance": instance, **changes}
            ),
        )


@router.get("/optimizations/{optimization_id}")
def optimization_page(request: Request, optimization_id: uuid.UUID) -> Response:
    """An optimization is shown on its recommendation's page."""
    with _caller(request) as (session, principal):
        optimization = recommendations.get_optimization(session, principal, optimization_id)
    return RedirectResponse(f"/recommendations/{optimization.recommendation_id}", status_code=303)


@router.post("/regressions/{regression_id}/resolve")
def resolve(
    request: Request,
    regression_id: uuid.UUID,
    notes: Annotated[str, Form(min_length=1, max_length=5000)],
    csrf: Annotated[str, Form()] = "",
) -> Response:
    def run(session: Session, principal: Principal) -> str:
        quality_service.resolve_regression(session, principal, regression_id, notes)
        return "regression_resolved"

    return _act(request, csrf, "/regressions", run)


@router.post("/incidents/{incident_id}/resolve")
def resolve_incident(
    request: Request,
    incident_id: uuid.UUID,
    notes: Annotated[str, Form(min_length=1, max_length=5000)],
    csrf: Annotated[str, Form()] = "",
    back: Annotated[str, Form(pattern="^(list|incident)$")] = "list",
) -> Response:
    def run(session: Session, principal: Principal) -> str:
        quality_service.resolve_incident(session, principal, incident_id, notes)
        return "incident_resolved"

    return _act(request, csrf, "/regressions" if back == "list" else f"/incidents/{incident_id}", run)


# --- alerts ----------------------------------------------------------------------------------------------------


def _alerts_page(request: Request, session: Session, principal: Principal, **extra: Any) -> HTMLResponse:
    routes = alert_service.list_routes(session, principal, alert_schemas.AlertRouteFilters(limit=100))
    alerts = alert_service.list_alerts(session, principal, alert_schemas.AlertFilters(limit=PAGE_SIZE))
    names = {route.id: route.name for route in routes.items}
    customers = {}
    if principal.role is Role.OPERATOR:
        customers = {
            str(c.id): c.name
            for c in customer_service.list_customers(session, principal, CustomerFilters(limit=100)).items
        }
    return _page(
        request,
        "alerts.html",
        principal,
        routes=routes.items,
        alerts=alerts.items,
        route_names=names,
        customers=customers,
        kinds=ALERT_KINDS,
        **extra,
    )


@router.get("/alerts", response_class=HTMLResponse)
def alerts(request: Request) -> HTMLResponse:
    with _caller(request) as (session, principal):
        return _alerts_page(request, session, principal)


@router.post("/alerts/routes", response_model=None)
def create_alert_route(
    request: Request,
    name: Annotated[str, Form(min_length=1, max_length=255)],
    destination: Annotated[str, Form(pattern="^(webhook|slack|teams|email)$")],
    target: Annotated[str, Form(min_length=1, max_length=2048)],
    min_severity: Annotated[str, Form(pattern="^(info|warning|error|critical)$")] = "info",
    kinds: Annotated[list[str] | None, Form()] = None,
    models: Annotated[str, Form(max_length=2000)] = "",
    customer_id: Annotated[uuid.UUID | None, Form()] = None,
    csrf: Annotated[str, Form()] = "",
) -> Response:
    """Create a route; the page answers directly (no redirect) so that a webhook's secret is shown this once."""
    try:
        with _caller(request, csrf) as (session, principal):
            payload = alert_schemas.AlertRouteCreate.model_validate(
                {
                    "customer_id": customer_id,
                    "name": name,
                    "destination": destination,
                    "url": None if destination == "email" else target,
                    "email_to": target if destination == "email" else None,
                    "min_severity": min_severity,
                    "event_kinds": kinds or [],
                    "model_names": [m.strip() for m in models.split(",") if m.strip()],
                }
            )
            created = alert_service.create_route(session, principal, payload)
            return _alerts_page(request, session, principal, created=created)
    except OptiInfraError as error:
        return _back("/alerts", refused=error.code)
    except ValueError:
        return _back("/alerts", refused="invalid_input")


@router.post("/alerts/routes/{route_id}/test")
def send_test_alert(request: Request, route_id: uuid.UUID, csrf: Annotated[str, Form()] = "") -> Response:
    def run(session: Session, principal: Principal) -> str:
        alert_service.send_test(session, principal, route_id)
        return "test_alert_queued"

    return _act(request, csrf, "/alerts", run)


@router.post("/alerts/routes/{route_id}/enabled")
def toggle_alert_route(
    request: Request, route_id: uuid.UUID, enabled: Annotated[bool, Form()], csrf: Annotated[str, Form()] = ""
) -> Response:
    def run(session: Session, principal: Principal) -> str:
        alert_service.update_route(session, principal, route_id, alert_schemas.AlertRouteUpdate(enabled=enabled))
        return "alert_route_changed"

    return _act(request, csrf, "/alerts", run)


@router.post("/alerts/routes/{route_id}/delete")
def delete_alert_route(request: Request, route_id: uuid.UUID, csrf: Annotated[str, Form()] = "") -> Response:
    def run(session: Session, principal: Principal) -> str:
        alert_service.delete_route(session, principal, route_id)
        return "alert_route_deleted"

    return _act(request, csrf, "/alerts", run)


@router.post("/alerts/{alert_id}/redeliver")
def redeliver_alert(request: Request, alert_id: uuid.UUID, csrf: Annotated[str, Form()] = "") -> Response:
    def run(session: Session, principal: Principal) -> str:
        alert_service.redeliver(session, principal, alert_id)
        return "alert_redelivered"

    return _act(request, csrf, "/alerts", run)


# --- agents, workflows, events ------------------------------------------------------------------------------


@router.get("/agents", response_class=HTMLResponse)
def agents(request: Request) -> HTMLResponse:
    with _caller(request) as (session, principal):
        listed = agent_service.list_agents(session, principal, AgentFilters(limit=200))
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
        filters = ExecutionFilters(limit=PAGE_SIZE).model_copy(update={"cursor": cursor})
        page = workflow_service.list_executions(session, principal, filters)
        return _page(request, "workflows.html", principal, page=page)


@router.get("/workflows/{workflow_id}", response_class=HTMLResponse)
def workflow_detail(request: Request, workflow_id: uuid.UUID) -> HTMLResponse:
    with _caller(request) as (session, principal):
        detail = workflow_service.get_execution(session, principal, workflow_id)
        now = datetime.now(UTC)

        def ended(step: Any) -> datetime | None:
            # A running step lasts until now; a step that never finished (skipped, crashed) is drawn as a point.
            return step.completed_at or (now if step.status == "running" else step.started_at)

        lanes = [
            Lane(
                f"{s.step_order}. {s.step_name}",
                [Span(s.started_at, ended(s), s.step_name, str(s.status))] if s.started_at is not None else [],
            )
            for s in detail.steps
        ]
        spans = [(s.started_at, ended(s)) for s in detail.steps if s.started_at is not None]
        first = min((start for start, _ in spans), default=detail.started_at or now)
        last = max((end for _, end in spans if end is not None), default=now)
        timeline = Markup(  # noqa: S704 (render_lanes escapes every text it embeds)
            render_lanes(
                "Steps over time",
                lanes,
                first,
                max(last, first + timedelta(seconds=1)),
                left=220,
                empty="No step has started yet",
            )
        )
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
        return "rollout_resumed"

    return _act(request, csrf, f"/workflows/{workflow_id}", run)


@router.post("/workflows/{workflow_id}/abort")
def abort_workflow(request: Request, workflow_id: uuid.UUID, csrf: Annotated[str, Form()] = "") -> Response:
    def run(session: Session, principal: Principal) -> str:
        workflow_service.abort(session, request.app.state.workflow_runner, principal, workflow_id)
        return "rollout_aborted"

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
            limit=50,
        ).model_copy(update={"cursor": cursor})
        page = event_service.list_events(session, principal, filters)
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


NO_STORE = {"Cache-Control": "no-store"}


class SecurityHeaders:
    """Adds SECURITY_HEADERS to every response outside /api/ (a plain ASGI middleware: it never touches bodies)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"].startswith("/api/"):
            await self.app(scope, receive, send)
            return

        # Pages show one tenant's data: no cache (browser or shared) may keep them. Static files may be cached.
        headers = SECURITY_HEADERS if scope["path"].startswith("/static/") else {**SECURITY_HEADERS, **NO_STORE}

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                present = {name.lower() for name, _ in message.get("headers", [])}
                extra = [
                    (name.lower().encode(), value.encode())
                    for name, value in headers.items()
                    if name.lower().encode() not in present
                ]
                message = {**message, "headers": [*message.get("headers", []), *extra]}
            await send(message)

        await self.app(scope, receive, with_headers)


def install_dashboard(app: FastAPI) -> None:
    """Mount the dashboard's pages and static files on the app."""
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
        page = templates.TemplateResponse(
            request,
            "error.html",
            {"status": error.status_code, "message": error.message},
            status_code=error.status_code,
        )
        if "retry_after_seconds" in error.details:
            page.headers["Retry-After"] = str(error.details["retry_after_seconds"])
        return page

    @app.exception_handler(NotSignedInError)
    async def _sign_in(request: Request, error: NotSignedInError) -> Response:
        # A missing cookie (a link from another site: SameSite=Strict leaves it out) signs no one out; only a cookie
        # whose session has ended is removed.
        if not error.ended:
            return RedirectResponse("/login", status_code=303)
        response = RedirectResponse("/login?refused=session_ended", status_code=303)
        response.delete_cookie(COOKIE, path="/", httponly=True, samesite="strict", secure=_cookie_is_secure(request))
        return response

    @app.exception_handler(CsrfError)
    async def _csrf(request: Request, _: CsrfError) -> Response:
        return HTMLResponse(
            "<!doctype html><title>Refused</title><p>This form was not issued for your session (or the session has "
            "changed since). Go back, reload the page and try again.</p>",
            status_code=403,
        )

    app.add_middleware(SecurityHeaders)
