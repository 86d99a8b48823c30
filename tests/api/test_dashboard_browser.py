"""The dashboard in a real browser: Playwright driving Debian's Chromium against the test server.

Without /usr/bin/chromium these tests are skipped, unless OPTIINFRA_REQUIRE_BROWSER is set (CI sets it, and
installs Chromium). Screenshots of every page go to OPTIINFRA_SCREENSHOTS_DIR when it is set (the README's
command writes them to docs/screenshots), else to a temporary folder.
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine

from optiinfra.db import migrations
from optiinfra.db.engine import make_session_factory
from optiinfra.demo.driver import Demo
from optiinfra.demo.story import PACE_ENV, QUICK, pace_from_env
from optiinfra.enums import AgentType
from tests.api.conftest import AgentHandle, Server, Tenant, running_server
from tests.conftest import DatabaseFactory

CHROMIUM = Path("/usr/bin/chromium")
if not CHROMIUM.exists():
    if os.environ.get("OPTIINFRA_REQUIRE_BROWSER"):
        raise RuntimeError("OPTIINFRA_REQUIRE_BROWSER is set but /usr/bin/chromium is missing")
    pytest.skip("Debian's Chromium is not installed (apt-get install chromium)", allow_module_level=True)

from playwright.sync_api import Browser, Page, expect, sync_playwright  # noqa: E402

ARGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=str(CHROMIUM), args=ARGS, headless=True)
        yield launched
        launched.close()


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    opened = context.new_page()
    yield opened
    context.close()


def sign_in(page: Page, server: Server, key: str) -> None:
    page.goto(f"{server.base_url}/login")
    page.fill("#api_key", key)
    page.click("button[type=submit]")
    expect(page.locator("h1")).to_have_text("Overview")


def test_sign_in_and_sign_out(page: Page, api_server: Server, tenant: Tenant) -> None:
    page.goto(f"{api_server.base_url}/")
    expect(page).to_have_url(f"{api_server.base_url}/login")
    page.fill("#api_key", "oi_cu_not-a-real-key-" + uuid.uuid4().hex)
    page.click("button[type=submit]")
    expect(page.locator("[role=alert]")).to_contain_text("not an operator or customer key")
    sign_in(page, api_server, tenant.customer.api_key)
    cookie = next(c for c in page.context.cookies() if c["name"] == "optiinfra_session")
    assert cookie["httpOnly"] is True
    assert cookie["sameSite"] == "Strict"
    expect(page.locator("header .who")).to_contain_text(tenant.customer.email)
    page.click("#sign-out")
    expect(page).to_have_url(f"{api_server.base_url}/login")
    page.goto(f"{api_server.base_url}/recommendations")
    expect(page).to_have_url(f"{api_server.base_url}/login")


def test_approving_a_recommendation_from_the_queue_shows_the_event(
    page: Page, api_server: Server, tenant: Tenant, agent: AgentHandle
) -> None:
    title = f"Move the chat fleet to spot {uuid.uuid4().hex[:6]}"
    recommendation = agent.client.create_recommendation(
        tenant.id, "spot_migration", title, confidence_score=0.8, estimated_savings=1234.5
    )
    sign_in(page, api_server, tenant.customer.api_key)
    page.click("text=Recommendations")
    page.click(f"text={title}")
    expect(page.locator("#rec-status")).to_have_text("pending")
    page.fill("input[name=comment]", "Go ahead, watch quality")
    page.click("#approve")
    expect(page.locator("[role=status]")).to_contain_text("approved")
    expect(page.locator("#rec-status")).to_have_text("approved")
    expect(page.locator("#opt-status")).to_have_text("queued")
    expect(page.locator("#history")).to_contain_text("recommendation.approved")
    page.click("text=Events")
    expect(page.locator("#events")).to_contain_text("recommendation.approved")
    assert tenant.client.get_recommendation(recommendation.id).status == "approved"


def _quality_records(n: int, overall: float, start: datetime, prefix: str) -> list[dict[str, Any]]:
    return [
        {
            "request_id": f"{prefix}-{i}",
            "model_name": "chat-model",
            "model_version": "v1",
            "timestamp": (start + timedelta(seconds=30 * i)).isoformat(),
            "overall_quality_score": round(overall + (i % 7) / 100, 3),
            "latency_ms": 800 + (i % 11) * 10,
            "hallucination_detected": i % 25 == 0,
        }
        for i in range(n)
    ]


def test_quality_chart_shows_the_baseline_band_and_a_regression_marker(
    page: Page, api_server: Server, tenant: Tenant, make_agent: Any
) -> None:
    make_agent(AgentType.APPLICATION, serves=[tenant])
    now = datetime.now(UTC)
    client = tenant.client
    client.ingest_quality_metrics(_quality_records(120, 0.85, now - timedelta(hours=5), "healthy"))
    client.establish_baseline("chat-model", "v1", window={"last_n": 120})
    client.ingest_quality_metrics(_quality_records(120, 0.60, now - timedelta(hours=1), "degraded"))
    report = client.detect("chat-model", "v1", window={"last_n": 120})
    assert report.verdict == "regression"
    sign_in(page, api_server, tenant.customer.api_key)
    page.click("header nav >> text=Quality")
    chart = page.locator("#overall-chart svg")
    expect(chart).to_be_visible()
    expect(chart.locator("[data-role=baseline-band]")).to_have_count(1)
    expect(chart.locator("[data-role=regression-marker]").first).to_be_visible()
    assert chart.locator("path.series").count() == 1
    page.click("header nav >> text=Incidents")
    expect(page.locator("#incidents")).to_contain_text("overall_quality_score")
    # Changes read as words with a colour, not as a signed number whose sign means "worse".
    expect(page.locator("#incidents .change.worse").first).to_contain_text("worse by")


def test_a_customer_cannot_reach_another_customers_page(
    page: Page, api_server: Server, tenant: Tenant, other_tenant: Tenant, agent: AgentHandle
) -> None:
    title = f"Private plan {uuid.uuid4().hex[:6]}"
    recommendation = agent.client.create_recommendation(tenant.id, "rightsizing", title, confidence_score=0.5)
    sign_in(page, api_server, other_tenant.customer.api_key)
    response = page.goto(f"{api_server.base_url}/recommendations/{recommendation.id}")
    assert response is not None
    assert response.status == 404
    expect(page.locator("#error-message")).to_contain_text("No such recommendation")
    page.goto(f"{api_server.base_url}/recommendations")
    expect(page.locator("#queue")).not_to_contain_text(title)


def test_a_form_without_a_valid_csrf_token_is_refused(
    page: Page, api_server: Server, tenant: Tenant, agent: AgentHandle
) -> None:
    recommendation = agent.client.create_recommendation(tenant.id, "rightsizing", "CSRF target", confidence_score=0.5)
    sign_in(page, api_server, tenant.customer.api_key)
    url = f"{api_server.base_url}/recommendations/{recommendation.id}/decision"
    forged = page.request.post(url, form={"decision": "approve", "csrf": "0" * 64}, max_redirects=0)
    assert forged.status == 403
    missing = page.request.post(url, form={"decision": "approve"}, max_redirects=0)
    assert missing.status == 403
    assert tenant.client.get_recommendation(recommendation.id).status == "pending"


def test_pages_send_security_headers(page: Page, api_server: Server, tenant: Tenant) -> None:
    sign_in(page, api_server, tenant.customer.api_key)
    response = page.goto(f"{api_server.base_url}/")
    assert response is not None
    headers = response.headers
    assert "frame-ancestors 'none'" in headers["content-security-policy"]
    assert "unsafe-inline" not in headers["content-security-policy"]
    assert headers["x-content-type-options"] == "nosniff"


@dataclass
class LivingDemo:
    server: Server
    demo: Demo


@pytest.fixture(scope="module")
def living_demo(create_database: DatabaseFactory, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LivingDemo]:
    """The living demo of `optiinfra serve --demo` (docs/demo.md): prepared as serve prepares it, moved by its tick.
    At the quick pace unless OPTIINFRA_DEMO_PACE names another (the screenshots are taken at the real pace)."""
    engine = create_engine(create_database(), pool_size=5)
    migrations.upgrade(engine)
    data_dir = tmp_path_factory.mktemp("demo-data")
    demo = Demo(make_session_factory(engine), data_dir, pace_from_env() if os.environ.get(PACE_ENV) else QUICK)
    demo.prepare()
    with running_server(engine, data_dir) as server:
        yield LivingDemo(server, demo)
    engine.dispose()


def _shoot(page: Page, folder: Path, name: str) -> None:
    expect(page.locator("main h1")).to_be_visible()
    page.screenshot(path=str(folder / f"{name}.png"), full_page=True)


def _requests_shown(page: Page) -> int:
    """The requests the quality page's route breakdown counts."""
    return sum(int(cell) for cell in page.locator("#routes tr td:nth-child(2)").all_inner_texts())


def test_every_page_renders_with_the_demo_data_and_is_screenshotted(
    page: Page, living_demo: LivingDemo, tmp_path: Path
) -> None:
    """A tour of every page of the living demo, reached the way a person would (the navigation and the links),
    each checked for what it must show and screenshotted; the demo moves on between two looks at its traffic."""
    demo_server = living_demo.server
    base = demo_server.base_url
    folder = Path(os.environ.get("OPTIINFRA_SCREENSHOTS_DIR") or tmp_path)
    folder.mkdir(parents=True, exist_ok=True)
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    # Every request a page makes (its script and stylesheet included) succeeds; browsers ask for /favicon.ico.
    page.on(
        "response",
        lambda response: (
            errors.append(f"{response.status} {response.url}")
            if response.status >= 400 and not response.url.endswith("/favicon.ico")
            else None
        ),
    )
    sign_in(page, demo_server, demo_server.operator_key)
    _shoot(page, folder, "overview")
    expect(page.locator("#recent-events a").first).to_be_visible()

    page.click("header nav >> text=Recommendations")
    _shoot(page, folder, "recommendations")
    page.locator("#queue a").first.click()
    expect(page.locator("#rec-status")).to_be_visible()
    _shoot(page, folder, "recommendation")

    page.click("header nav >> text=Quality")
    chart = page.locator("#overall-chart svg.chart")
    expect(chart).to_be_visible()
    # The chart spans the page's width (not a fixed 640 px in a wide page).
    main_width = page.locator("main").bounding_box()["width"]  # type: ignore[index]
    assert chart.bounding_box()["width"] > 0.9 * (main_width - 48)  # type: ignore[index]
    expect(page.locator("#latency-chart [data-role=value-axis]")).to_have_text("ms")
    expect(chart.locator("[data-role=time-axis]")).to_contain_text("time (UTC)")
    assert chart.locator("text.tick").count() >= 4
    # Hover: our own script shows the value under the pointer.
    box = chart.bounding_box()
    assert box is not None
    page.mouse.move(box["x"] + box["width"] * 0.6, box["y"] + box["height"] * 0.5)
    expect(page.locator("#overall-chart .chart-tip")).to_be_visible()
    expect(page.locator("#overall-chart .chart-tip")).to_contain_text("UTC:")
    _shoot(page, folder, "quality")
    requests_before = _requests_shown(page)
    # The server's worker ticks every few seconds; a tick sends the traffic of the time since the last one, so a tick
    # right after the worker's may send none: tick until some arrives (bounded), as a person would reload.
    deadline = time.monotonic() + 60
    while True:
        living_demo.demo.tick()
        page.reload()
        if _requests_shown(page) > requests_before or time.monotonic() > deadline:
            break
        time.sleep(1)
    assert _requests_shown(page) > requests_before  # the traffic keeps arriving
    page.locator("#routes a").first.click()
    expect(page.locator("#route-filter")).to_be_visible()
    page.click("#ranges >> text=30d")
    expect(page.locator("#ranges a.active")).to_have_text("30d")
    expect(page.locator("#route-filter")).to_be_visible()  # the range keeps the route

    page.click("header nav >> text=Changes")
    expect(page.locator("#changes-lanes svg.chart")).to_be_visible()
    _shoot(page, folder, "changes")

    page.click("header nav >> text=Incidents")
    page.goto(f"{base}/regressions?show=all")
    expect(page.locator("#incidents tr.incident").first).to_be_visible()
    _shoot(page, folder, "regressions")
    page.locator("#incidents a.drill").first.click()
    expect(page.locator("#regressions")).to_be_visible()
    expect(page.locator("#records")).to_be_visible()
    _shoot(page, folder, "incident")

    page.click("header nav >> text=Agents")
    _shoot(page, folder, "agents")
    page.click("header nav >> text=Workflows")
    _shoot(page, folder, "workflows")
    page.locator("#workflows a").first.click()
    expect(page.locator("#step-timeline svg.chart")).to_be_visible()
    expect(page.locator("#steps")).not_to_contain_text("{}")
    _shoot(page, folder, "workflow")
    page.click("header nav >> text=Events")
    expect(page.locator("#events")).not_to_contain_text("{'")
    expect(page.locator("#events td.sentence a").first).to_be_visible()
    _shoot(page, folder, "events")
    page.click("header nav >> text=Alerts")
    _shoot(page, folder, "alerts")
    assert not errors, errors
