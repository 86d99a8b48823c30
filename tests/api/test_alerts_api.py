"""Alerts through a real server and its worker: a regression that opens an incident reaches a signed webhook and a
Slack-format receiver exactly once, a receiver that fails twice still gets it once, and "send a test alert" works."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

import httpx
import pytest

from optiinfra.alerts import render
from optiinfra.client import ApiError
from optiinfra.config import ALLOW_PRIVATE_ENDPOINTS_ENV
from optiinfra.dashboard.routes import COOKIE
from tests.alerts.receiver import Receiver, running_receiver
from tests.api.conftest import AgentHandle, Server, Tenant
from tests.api.test_dashboard_sessions import _session_cookie, _sign_in
from tests.api.test_quality_api import Team, regressed_without_optimization, team  # noqa: F401 (fixture)


@pytest.fixture
def receivers(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Receiver, Receiver, Receiver]]:
    monkeypatch.setenv(ALLOW_PRIVATE_ENDPOINTS_ENV, "1")  # the receivers are on loopback
    monkeypatch.setenv("OPTIINFRA_ALERT_BACKOFF_SECONDS", "0.1")
    with running_receiver() as webhook, running_receiver() as slack, running_receiver(Receiver([500, 500])) as flaky:
        yield webhook, slack, flaky


def add_route(tenant: Tenant, name: str, destination: str, url: str) -> dict[str, object]:
    route: dict[str, object] = tenant.client.request(
        "POST", "/alert-routes", json={"name": name, "destination": destination, "url": url}
    )
    return route


def test_a_regression_opening_an_incident_is_one_signed_webhook_and_one_slack_message(
    team: Team,  # noqa: F811 (the fixture)
    receivers: tuple[Receiver, Receiver, Receiver],
) -> None:
    webhook, slack, flaky = receivers
    signed = add_route(team.tenant, "pager", "webhook", webhook.url)
    add_route(team.tenant, "chat", "slack", slack.url)
    retried = add_route(team.tenant, "flaky", "webhook", flaky.url)

    report = regressed_without_optimization(team)
    assert len(report["regressions"]) >= 2, "several metrics regress: still one incident"

    [request] = webhook.wait_for(1)
    [message] = slack.wait_for(1)
    [accepted] = flaky.wait_for(1)
    time.sleep(2)  # anything more would have arrived by now
    assert len(webhook.received) == len(slack.received) == 1
    assert [r.answered for r in flaky.received] == [500, 500, 200]
    assert len({r.headers["Idempotency-Key"] for r in flaky.received}) == 1

    secret = str(signed["signing_secret"])
    assert render.verify(secret, request.headers["OptiInfra-Signature"], request.body)
    alert = request.json()
    assert alert["kind"] == "incident.opened"
    assert {line["regression_id"] for line in alert["incident"]["regressions"]} == {
        r["id"] for r in report["regressions"]
    }
    assert "Quality incident opened" in message.json()["text"]
    assert render.verify(str(retried["signing_secret"]), accepted.headers["OptiInfra-Signature"], accepted.body)

    # The delivery log, through the API.
    [flaky_alert] = team.customer.request("GET", "/alerts", params={"route_id": retried["id"]})["items"]
    detail = team.customer.request("GET", f"/alerts/{flaky_alert['id']}")
    assert detail["status"] == "delivered"
    assert [(d["outcome"], d["status_code"]) for d in detail["deliveries"]] == [
        ("retry", 500),
        ("retry", 500),
        ("delivered", 200),
    ]


def test_test_alert_secrets_and_tenancy(
    make_tenant: Callable[..., Tenant],
    make_agent: Callable[..., AgentHandle],
    receivers: tuple[Receiver, Receiver, Receiver],
    http: httpx.Client,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    webhook = receivers[0]
    tenant, stranger = make_tenant(), make_tenant()
    route = add_route(tenant, "pager", "webhook", webhook.url)
    assert route["url_masked"] == f"http://127.0.0.1/…{webhook.url[-4:]}"

    queued = tenant.client.request("POST", f"/alert-routes/{route['id']}/test")
    assert queued["status"] == "pending"  # answered at once; a worker delivers it
    [request] = webhook.wait_for(1)
    assert request.json()["kind"] == "test"
    assert render.verify(str(route["signing_secret"]), request.headers["OptiInfra-Signature"], request.body)

    shown = http.get(
        f"/api/v1/alert-routes/{route['id']}", headers={"Authorization": f"Bearer {tenant.customer.api_key}"}
    )
    assert shown.status_code == 200
    assert "signing_secret" not in shown.json()
    assert "url" not in shown.json()
    assert webhook.url not in shown.text
    assert str(route["signing_secret"]) not in shown.text
    assert shown.json()["has_signing_secret"] is True

    with pytest.raises(ApiError) as not_found:
        stranger.client.request("GET", f"/alert-routes/{route['id']}")
    assert not_found.value.status_code == 404
    agent = make_agent(serves=[tenant])
    with pytest.raises(ApiError) as forbidden:
        agent.client.request("GET", "/alert-routes")
    assert forbidden.value.status_code == 403

    monkeypatch.delenv(ALLOW_PRIVATE_ENDPOINTS_ENV)
    refused = http.post(
        "/api/v1/alert-routes",
        json={"name": "metadata", "destination": "slack", "url": "http://169.254.169.254/latest"},
        headers={"Authorization": f"Bearer {tenant.customer.api_key}"},
    )
    assert refused.status_code == 422
    assert "link-local" in refused.json()["error"]["message"]


def test_the_dashboard_page_adds_a_route_shows_its_secret_once_and_sends_a_test_alert(
    make_tenant: Callable[..., Tenant], receivers: tuple[Receiver, Receiver, Receiver], api_server: Server
) -> None:
    webhook = receivers[0]
    tenant = make_tenant()
    with httpx.Client(base_url=api_server.base_url, follow_redirects=False, timeout=30) as browser:
        cookie = {"Cookie": f"{COOKIE}={_session_cookie(_sign_in(browser, tenant.customer.api_key))}"}
        page = browser.get("/alerts", headers=cookie)
        assert page.status_code == 200
        csrf = page.text.split('name="csrf" value="', 1)[1].split('"', 1)[0]
        form = {
            "csrf": csrf,
            "name": "pager",
            "destination": "webhook",
            "target": webhook.url,
            "min_severity": "warning",
            "kinds": ["incident.opened", "incident.resolved"],
        }
        created = browser.post("/alerts/routes", data=form, headers=cookie)
        assert created.status_code == 200
        secret = created.text.split('<code id="signing-secret">', 1)[1].split("<", 1)[0]
        assert secret.startswith("whsec_")

        shown = browser.get("/alerts", headers=cookie).text
        assert secret not in shown
        assert webhook.url not in shown  # only the masked form
        [route] = tenant.client.request("GET", "/alert-routes")["items"]
        assert (route["min_severity"], route["event_kinds"]) == ("warning", ["incident.opened", "incident.resolved"])

        queued = browser.post(f"/alerts/routes/{route['id']}/test", data={"csrf": csrf}, headers=cookie)
        assert queued.status_code == 303
        assert "notice=test_alert_queued" in queued.headers["location"]
    [request] = webhook.wait_for(1)
    assert render.verify(secret, request.headers["OptiInfra-Signature"], request.body)
