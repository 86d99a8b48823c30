"""Dashboard sessions (issue 12): the cookie is a random session id, not the key; sessions end at sign-out, on
expiry, when idle and when the key is rotated; CSRF tokens are per session; Secure behind TLS; no-store pages; a
missing cookie signs no one out; notices come from a fixed set; redirects are URL-encoded."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from sqlalchemy import Engine, text

from optiinfra.api.forwarded import TrustedProxies
from optiinfra.dashboard.routes import COOKIE, NOTICES
from tests.api.conftest import Server, Tenant, running_server


@pytest.fixture
def browser(api_server: Server) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=api_server.base_url, follow_redirects=False, timeout=30) as client:
        yield client


def _sign_in(client: httpx.Client, key: str, headers: dict[str, str] | None = None) -> httpx.Response:
    response = client.post("/login", data={"api_key": key}, headers=headers or {})
    assert response.status_code == 303, response.text
    return response


def _session_cookie(response: httpx.Response) -> str:
    return response.cookies[COOKIE]


def _get(client: httpx.Client, path: str, session: str | None) -> httpx.Response:
    client.cookies.clear()
    return client.get(path, headers={"Cookie": f"{COOKIE}={session}"} if session else {})


def _csrf(client: httpx.Client, session: str) -> str:
    page = _get(client, "/", session)
    assert page.status_code == 200
    marker = 'name="csrf" value="'
    start = page.text.index(marker) + len(marker)
    return page.text[start : page.text.index('"', start)]


def test_the_cookie_is_a_random_session_id_stored_only_as_a_digest(
    browser: httpx.Client, tenant: Tenant, api_server: Server
) -> None:
    response = _sign_in(browser, tenant.customer.api_key)
    token = _session_cookie(response)
    assert tenant.customer.api_key not in response.headers["set-cookie"]
    assert token != tenant.customer.api_key
    assert len(token) >= 40
    set_cookie = response.headers["set-cookie"].lower()
    assert "httponly" in set_cookie
    assert "samesite=strict" in set_cookie
    assert "secure" not in set_cookie  # plain http, no trusted proxy, no setting
    with api_server.engine.connect() as connection:
        stored = connection.execute(
            text("SELECT token_digest FROM dashboard_sessions WHERE customer_id = :c"), {"c": tenant.id}
        ).scalars()
        assert hashlib.sha256(token.encode()).hexdigest() in set(stored)
        dumped = connection.execute(text("SELECT string_agg(t::text, '') FROM dashboard_sessions t")).scalar_one()
    assert token not in dumped
    page = _get(browser, "/", token)
    assert page.status_code == 200
    assert page.headers["Cache-Control"] == "no-store"


def test_sign_out_ends_the_session_so_the_cookie_no_longer_works(browser: httpx.Client, tenant: Tenant) -> None:
    """The probe: the cookie was the key itself, so it still worked after sign-out."""
    token = _session_cookie(_sign_in(browser, tenant.customer.api_key))
    csrf = _csrf(browser, token)
    out = browser.post("/logout", data={"csrf": csrf}, headers={"Cookie": f"{COOKIE}={token}"})
    assert out.status_code == 303
    assert out.headers["location"] == "/login"
    replay = _get(browser, "/", token)
    assert replay.status_code == 303
    assert replay.headers["location"].startswith("/login")


def test_each_session_has_its_own_csrf_token(browser: httpx.Client, tenant: Tenant) -> None:
    """The probe: the CSRF token was the same in every session of a key."""
    first = _session_cookie(_sign_in(browser, tenant.customer.api_key))
    second = _session_cookie(_sign_in(browser, tenant.customer.api_key))
    assert first != second
    first_csrf, second_csrf = _csrf(browser, first), _csrf(browser, second)
    assert first_csrf != second_csrf
    # One session's token does not pass in the other's form.
    refused = browser.post("/logout", data={"csrf": first_csrf}, headers={"Cookie": f"{COOKIE}={second}"})
    assert refused.status_code == 403
    assert _get(browser, "/", second).status_code == 200


def test_rotating_the_key_ends_its_sessions(browser: httpx.Client, tenant: Tenant, api_server: Server) -> None:
    token = _session_cookie(_sign_in(browser, tenant.customer.api_key))
    assert _get(browser, "/", token).status_code == 200
    rotated = httpx.post(
        f"{api_server.base_url}/api/v1/customers/{tenant.id}/rotate-key",
        headers={"Authorization": f"Bearer {api_server.operator_key}"},
    )
    assert rotated.status_code == 200
    ended = _get(browser, "/", token)
    assert ended.status_code == 303
    assert 'optiinfra_session=""' in ended.headers.get("set-cookie", "") or "Max-Age=0" in ended.headers.get(
        "set-cookie", ""
    )
    # The new key signs in.
    assert _get(browser, "/", _session_cookie(_sign_in(browser, rotated.json()["api_key"]))).status_code == 200


@pytest.mark.parametrize(
    ("column", "age"),
    [("expires_at", timedelta(seconds=-1)), ("last_seen_at", timedelta(hours=-2))],
    ids=["expired", "idle"],
)
def test_sessions_expire_and_time_out_when_idle(
    column: str, age: timedelta, browser: httpx.Client, tenant: Tenant, api_server: Server
) -> None:
    token = _session_cookie(_sign_in(browser, tenant.customer.api_key))
    digest = hashlib.sha256(token.encode()).hexdigest()
    with api_server.engine.begin() as connection:
        connection.execute(
            text(f"UPDATE dashboard_sessions SET {column} = :moment WHERE token_digest = :d"),
            {"moment": datetime.now(UTC) + age, "d": digest},
        )
    assert _get(browser, "/", token).status_code == 303
    with api_server.engine.connect() as connection:
        left = connection.execute(
            text("SELECT count(*) FROM dashboard_sessions WHERE token_digest = :d"), {"d": digest}
        ).scalar_one()
    assert left == 0


def test_a_missing_cookie_signs_no_one_out(browser: httpx.Client) -> None:
    """The probe: a link from another site (SameSite=Strict leaves the cookie out) made the server delete it."""
    response = _get(browser, "/recommendations", None)
    assert response.status_code == 303
    assert response.headers["location"] == "/login"
    assert "set-cookie" not in response.headers


def test_notices_come_only_from_the_fixed_set(browser: httpx.Client, tenant: Tenant) -> None:
    """The probe: notices rendered any text given in ?error=."""
    token = _session_cookie(_sign_in(browser, tenant.customer.api_key))
    planted = "Your account is locked: call +1 555 0100"
    for query in (f"?error={planted}", f"?message={planted}", f"?notice={planted}", f"?refused={planted}"):
        page = _get(browser, f"/regressions{query}", token)
        assert page.status_code == 200
        assert "call +1 555" not in page.text
    assert NOTICES["regression_resolved"] in _get(browser, "/regressions?notice=regression_resolved", token).text
    assert "The action was refused." in _get(browser, "/regressions?refused=anything", token).text


def test_the_baseline_forms_redirect_is_url_encoded(browser: httpx.Client, tenant: Tenant) -> None:
    """The probe: the baseline form's model value went into the redirect without URL-encoding."""
    token = _session_cookie(_sign_in(browser, tenant.customer.api_key))
    csrf = _csrf(browser, token)
    model = "gpt&customer=x#frag:v 1/é"
    response = browser.post(
        "/quality/baselines",
        data={"customer_id": str(tenant.id), "model": model, "csrf": csrf},
        headers={"Cookie": f"{COOKIE}={token}"},
    )
    assert response.status_code == 303
    location = urlsplit(response.headers["location"])
    assert location.path == "/quality"
    assert location.fragment == ""
    query = parse_qs(location.query)
    assert query["customer"] == [str(tenant.id)]
    assert query["model"] == [model]
    assert query["refused"] == ["invalid_input"]  # no data for that model: refused with a fixed notice


@pytest.fixture
def proxied_server(migrated_engine: Engine, tmp_path: Path) -> Iterator[Server]:
    with running_server(migrated_engine, tmp_path, trusted_proxies=TrustedProxies.parse("127.0.0.1")) as server:
        yield server


def test_cookies_are_secure_behind_a_trusted_tls_proxy_or_by_setting(
    proxied_server: Server, migrated_engine: Engine, tmp_path: Path
) -> None:
    """The probe: Secure was set only when the request itself was https, which never happens behind a TLS proxy."""
    key = proxied_server.operator_key
    with httpx.Client(base_url=proxied_server.base_url, follow_redirects=False) as client:
        behind_tls = _sign_in(client, key, {"X-Forwarded-Proto": "https", "X-Forwarded-For": "203.0.113.5"})
        assert "secure" in behind_tls.headers["set-cookie"].lower()
        plain = _sign_in(client, key, {"X-Forwarded-Proto": "http"})
        assert "secure" not in plain.headers["set-cookie"].lower()
    with (
        running_server(migrated_engine, tmp_path / "setting", secure_cookies=True) as server,
        httpx.Client(base_url=server.base_url, follow_redirects=False) as client,
    ):
        assert "secure" in _sign_in(client, server.operator_key).headers["set-cookie"].lower()
    # X-Forwarded-Proto from a peer that is not a trusted proxy is ignored.
    with (
        running_server(migrated_engine, tmp_path / "untrusted") as server,
        httpx.Client(base_url=server.base_url, follow_redirects=False) as client,
    ):
        forged = _sign_in(client, server.operator_key, {"X-Forwarded-Proto": "https"})
        assert "secure" not in forged.headers["set-cookie"].lower()
