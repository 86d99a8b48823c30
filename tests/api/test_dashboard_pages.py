"""The dashboard as an observability tool (issue 17), page by page over HTTP: time ranges and the per-route
breakdown, markers that belong to their model, incidents as rows with a drill-down to their requests, events as
sentences, and the changes view. The browser test (test_dashboard_browser.py) covers the script and the hover."""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy.orm import Session

from optiinfra.dashboard.routes import COOKIE
from optiinfra.models import AgentType
from optiinfra.quality import repository as quality_repository
from tests.api.conftest import AgentHandle, Server, Tenant


@pytest.fixture
def browser(api_server: Server) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=api_server.base_url, follow_redirects=False, timeout=60) as client:
        yield client


def _signed_in(client: httpx.Client, key: str) -> httpx.Client:
    response = client.post("/login", data={"api_key": key})
    assert response.status_code == 303
    client.cookies.set(COOKIE, response.cookies[COOKIE])
    return client


def _page(client: httpx.Client, path: str) -> str:
    response = client.get(path)
    assert response.status_code == 200, (path, response.status_code, response.text[:500])
    assert response.headers["Cache-Control"] == "no-store"
    return response.text


def _records(
    n: int, start: datetime, prefix: str, *, overall: float, latency: float, model: str = "chat-model"
) -> list[dict[str, Any]]:
    return [
        {
            "request_id": f"{prefix}-{i}",
            "model_name": model,
            "model_version": "v1",
            "timestamp": (start + timedelta(seconds=60 * i)).isoformat(),
            "overall_quality_score": round(overall + (i % 7) / 100, 3),
            "latency_ms": latency + (i % 11) * 10,
            "hallucination_detected": i % 25 == 0,
            "metadata": {"route": "search" if i % 3 == 0 else "chat", "instance_id": f"i-{i % 2}"},
        }
        for i in range(n)
    ]


@pytest.fixture
def incident(tenant: Tenant, make_agent: Any) -> uuid.UUID:
    """An incident of two metrics on chat-model v1 (overall score and latency), its degraded window 120 requests."""
    make_agent(AgentType.APPLICATION, serves=[tenant])
    now = datetime.now(UTC)
    client = tenant.client
    client.ingest_quality_metrics(_records(120, now - timedelta(hours=5), "healthy", overall=0.85, latency=800))
    client.establish_baseline("chat-model", "v1", window={"last_n": 120})
    client.ingest_quality_metrics(_records(120, now - timedelta(hours=2), "degraded", overall=0.55, latency=2400))
    report = client.detect("chat-model", "v1", window={"last_n": 120})
    assert report.verdict == "regression"
    assert len(report.regressions) >= 2
    return report.regressions[0].id


def test_quality_page_offers_time_ranges_and_a_per_route_breakdown(
    browser: httpx.Client, api_server: Server, tenant: Tenant, incident: uuid.UUID
) -> None:
    _signed_in(browser, tenant.customer.api_key)
    html = _page(browser, "/quality?range=24h")
    assert re.search(r'<a href="[^"]*range=24h[^"]*" class="active">24h</a>', html)
    for choice in ("6h", "7d", "30d"):
        assert f">{choice}</a>" in html
    assert "time (UTC)" in html
    assert ">ms</text>" in html
    routes = re.findall(r'<td><a href="[^"]*route=(\w+)[^"]*">(\w+)</a></td><td>(\d+)</td>', html)
    assert {(name, int(count)) for _, name, count in routes} == {("chat", 160), ("search", 80)}
    only = _page(browser, "/quality?range=24h&route=search")
    assert 'id="route-filter"' in only
    assert "<strong>search</strong>" in only
    # The charts of one route read only that route's records.
    with Session(api_server.engine) as session:
        since = datetime.now(UTC) - timedelta(hours=24)
        every = quality_repository.bucketed_series(session, tenant.id, "chat-model", "v1", since, timedelta(hours=1))
        search = quality_repository.bucketed_series(
            session, tenant.id, "chat-model", "v1", since, timedelta(hours=1), "search"
        )
    assert sum(p.count for p in every) == 240
    assert sum(p.count for p in search) == 80
    # An unknown range falls back to the default; a route the model never saw is ignored.
    assert 'class="active">24h</a>' in _page(browser, "/quality?range=1y&route=nowhere")


def _rolled_back(tenant: Tenant, agent: AgentHandle, model: str) -> uuid.UUID:
    recommendation = agent.client.create_recommendation(
        tenant.id, "vllm_tuning", f"Tune {model}", confidence_score=0.7, data={"model": model}
    )
    optimization = tenant.client.decide(recommendation.id, "approve").optimization
    assert optimization is not None
    optimization_id = optimization.id
    agent.client.start_optimization(optimization_id)
    tenant.client.rollback_optimization(optimization_id, "quality fell")
    return recommendation.id


def test_rollback_markers_are_drawn_only_on_the_affected_models_charts(
    browser: httpx.Client, tenant: Tenant, agent: AgentHandle, incident: uuid.UUID
) -> None:
    now = datetime.now(UTC)
    tenant.client.ingest_quality_metrics(
        _records(30, now - timedelta(hours=3), "other", overall=0.8, latency=500, model="other-model")
    )
    mine = _rolled_back(tenant, agent, "chat-model")
    theirs = _rolled_back(tenant, agent, "other-model")
    _signed_in(browser, tenant.customer.api_key)
    chat = _page(browser, "/quality?model=chat-model:v1&range=24h")
    overall = chat.split('id="overall-chart"', 1)[1].split("</svg>", 1)[0]
    assert overall.count('data-role="rollback-marker"') == 1
    assert f'href="/recommendations/{mine}"' in overall
    assert str(theirs) not in overall
    assert overall.count('data-role="regression-marker"') >= 2
    other = _page(browser, "/quality?model=other-model:v1&range=24h")
    other_chart = other.split('id="overall-chart"', 1)[1].split("</svg>", 1)[0]
    assert f'href="/recommendations/{theirs}"' in other_chart
    assert str(mine) not in other_chart
    assert 'data-role="regression-marker"' not in other_chart
    # The changes view puts both optimizations on the quality chart's time axis, each linking to its page.
    changes = _page(browser, "/changes?model=chat-model:v1&range=24h")
    lanes = changes.split('id="changes-lanes"', 1)[1].split("</svg>", 1)[0]
    assert lanes.count('data-role="change-span"') >= 2
    assert f"/recommendations/{mine}" in lanes
    assert f"/recommendations/{theirs}" in lanes
    assert "time (UTC)" in lanes
    assert changes.count("rolled_back</span>") >= 2


def test_incidents_are_one_row_each_with_customer_severity_metrics_and_action(
    browser: httpx.Client, tenant: Tenant, other_tenant: Tenant, incident: uuid.UUID
) -> None:
    _signed_in(browser, tenant.customer.api_key)
    html = _page(browser, "/regressions")
    rows = re.findall(r'<tr class="incident" data-incident="([^"]+)">(.*?)</tr>', html, re.S)
    assert len(rows) == 1
    incident_id, row = rows[0]
    assert tenant.customer.name in row
    assert "chat-model v1" in row
    assert "overall_quality_score" in row
    assert "p95_latency_ms" in row
    assert "worse by" in row, row
    assert 'class="badge open"' in row, row
    assert "alert only" in row or "manual review" in row, row
    assert f'href="/incidents/{incident_id}"' in row
    # Another customer sees neither the row nor the incident.
    _signed_in(browser, other_tenant.customer.api_key)
    assert 'class="incident"' not in _page(browser, "/regressions?show=all")
    assert browser.get(f"/incidents/{incident}").status_code == 404


def test_an_incident_drills_down_to_the_requests_of_its_window(
    browser: httpx.Client, tenant: Tenant, incident: uuid.UUID
) -> None:
    _signed_in(browser, tenant.customer.api_key)
    html = _page(browser, f"/incidents/{incident}")
    assert 'id="regressions"' in html
    assert "p95_latency_ms" in html
    first = re.findall(r"<code>(degraded-\d+|healthy-\d+)</code>", html)
    assert len(first) == 50  # a page, capped
    assert '<option value="search"' in html
    assert '<option value="i-1"' in html
    following = re.search(r'id="next-records" href="([^"]+)"', html)
    assert following is not None
    seen = set(first)
    path = following.group(1).replace("&amp;", "&")
    while path:
        page = _page(browser, path)
        ids = re.findall(r"<code>(degraded-\d+|healthy-\d+)</code>", page)
        assert not seen & set(ids)
        seen |= set(ids)
        nxt = re.search(r'id="next-records" href="([^"]+)"', page)
        path = nxt.group(1).replace("&amp;", "&") if nxt else ""
    assert {f"degraded-{i}" for i in range(120)} <= seen  # the whole degraded window, once each
    filtered = _page(browser, f"/incidents/{incident}?route=search&instance=i-1")
    rows = re.findall(r"<code>([\w-]+)</code></td><td>(\w+)</td>\s*<td>([\w-]+)</td>", filtered)
    assert rows
    assert all(route == "search" and instance == "i-1" for _, route, instance in rows)
    assert browser.get(f"/incidents/{incident}?after=not-a-cursor").status_code == 422


def test_resolving_an_incident_resolves_each_of_its_regressions(
    browser: httpx.Client, tenant: Tenant, incident: uuid.UUID
) -> None:
    _signed_in(browser, tenant.customer.api_key)
    html = _page(browser, "/regressions")
    csrf = re.search(r'name="csrf" value="([^"]+)"', html)
    assert csrf is not None
    done = browser.post(f"/incidents/{incident}/resolve", data={"csrf": csrf.group(1), "notes": "reverted the prompt"})
    assert done.status_code == 303
    assert "notice=incident_resolved" in done.headers["location"]
    assert all(r.resolved_at is not None for r in tenant.client.list_regressions(customer_id=tenant.id).items)
    assert 'class="incident"' not in _page(browser, "/regressions")
    assert "reverted the prompt" in _page(browser, f"/incidents/{incident}")
    forged = browser.post(f"/incidents/{incident}/resolve", data={"csrf": "0" * 64, "notes": "x"})
    assert forged.status_code == 403


def test_events_read_as_sentences_that_link_to_their_subject(
    browser: httpx.Client, tenant: Tenant, agent: AgentHandle
) -> None:
    recommendation = agent.client.create_recommendation(tenant.id, "spot_migration", "Spot", confidence_score=0.6)
    tenant.client.decide(recommendation.id, "approve", "Go ahead")
    _signed_in(browser, tenant.customer.api_key)
    html = _page(browser, "/events")
    assert f'approved <a href="/recommendations/{recommendation.id}">a recommendation' in html
    assert "status from pending to approved “Go ahead”." in html
    assert "{&#39;" not in html
    assert "{'" not in html
    overview = _page(browser, "/")
    assert f'href="/recommendations/{recommendation.id}"' in overview
    optimization = tenant.client.get_recommendation(recommendation.id).optimizations[0].id
    followed = browser.get(f"/optimizations/{optimization}")
    assert followed.status_code == 303
    assert followed.headers["location"] == f"/recommendations/{recommendation.id}"
