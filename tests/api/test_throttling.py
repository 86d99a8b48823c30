"""Failed authentication is throttled per client address and per key prefix with 429 and Retry-After; only
failures count, and a valid key is never refused (issue 12: 30 bad keys from one address locked out the valid
customer and operator keys, and every client behind a proxy shares one address)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy import create_engine

from optiinfra.api.forwarded import TrustedProxies
from optiinfra.client import OptiInfraClient
from optiinfra.db import migrations
from tests.api.conftest import Server, running_server
from tests.conftest import DatabaseFactory

LIMIT = 5


@pytest.fixture(scope="module")
def strict_server(create_database: DatabaseFactory, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A server that allows LIMIT failures a minute and believes X-Forwarded-For from 127.0.0.1 (the tests)."""
    engine = create_engine(create_database())
    migrations.upgrade(engine)
    with running_server(
        engine,
        Path(tmp_path_factory.mktemp("throttle")),
        auth_failures_per_minute=LIMIT,
        trusted_proxies=TrustedProxies.parse("127.0.0.1"),
    ) as server:
        yield server
    engine.dispose()


def _from(address: str, key: str | None = None) -> dict[str, str]:
    headers = {"X-Forwarded-For": f"{address}, 127.0.0.1"}
    if key is not None:
        headers["Authorization"] = f"Bearer {key}"
    return headers


def _customer_key(server: Server) -> str:
    with OptiInfraClient(server.base_url, server.operator_key) as operator:
        suffix = uuid.uuid4().hex[:8]
        return operator.create_customer(f"Throttle {suffix}", f"t-{suffix}@throttle.example").api_key


def test_only_failures_count_and_a_valid_key_is_never_refused(strict_server: Server) -> None:
    customer_key = _customer_key(strict_server)
    with httpx.Client(base_url=strict_server.base_url) as client:
        address = "203.0.113.10"
        for _ in range(3 * LIMIT):  # successes do not use up anything
            assert (
                client.get("/api/v1/customers", headers=_from(address, strict_server.operator_key)).status_code == 200
            )
        answers = [
            client.get("/api/v1/customers", headers=_from(address, f"oi_op_{uuid.uuid4().hex}")).status_code
            for _ in range(LIMIT + 3)
        ]
        assert answers == [401] * LIMIT + [429] * 3
        throttled = client.get("/api/v1/customers", headers=_from(address, "oi_op_" + uuid.uuid4().hex))
        assert throttled.json()["error"]["code"] == "too_many_requests"
        assert 1 <= int(throttled.headers["Retry-After"]) <= 60
        # From the throttled address, the operator's and a customer's valid keys still get in.
        assert client.get("/api/v1/customers", headers=_from(address, strict_server.operator_key)).status_code == 200
        assert client.get("/api/v1/customers/me", headers=_from(address, customer_key)).status_code == 200
        # So does a valid dashboard sign-in; a wrong one is refused with 429.
        assert client.post("/login", data={"api_key": customer_key}, headers=_from(address)).status_code == 303
        assert client.post("/login", data={"api_key": "oi_cu_guess"}, headers=_from(address)).status_code == 429
        # Another address is not affected.
        assert client.get("/api/v1/customers", headers=_from("203.0.113.11", "oi_op_nope")).status_code == 401


def test_failures_with_one_key_prefix_are_throttled_across_addresses(strict_server: Server) -> None:
    prefix = "oi_cu_" + uuid.uuid4().hex[:6]
    with httpx.Client(base_url=strict_server.base_url) as client:
        answers = [
            client.get("/api/v1/customers/me", headers=_from(f"198.51.100.{n}", f"{prefix}{n:040d}")).status_code
            for n in range(LIMIT + 2)
        ]
        assert answers == [401] * LIMIT + [429] * 2
        assert (
            client.get("/api/v1/customers/me", headers=_from("198.51.100.200", "oi_cu_other" + "0" * 30)).status_code
            == 401
        )


def test_forwarded_for_from_an_untrusted_peer_is_ignored(create_database: DatabaseFactory, tmp_path: Path) -> None:
    """Without OPTIINFRA_TRUSTED_PROXIES naming the peer, a client cannot escape its address's count by sending
    X-Forwarded-For."""
    engine = create_engine(create_database())
    migrations.upgrade(engine)
    with (
        running_server(
            engine, tmp_path, auth_failures_per_minute=LIMIT, trusted_proxies=TrustedProxies.parse("192.0.2.1")
        ) as server,
        httpx.Client(base_url=server.base_url) as client,
    ):
        answers = [
            client.get("/api/v1/customers", headers=_from(f"192.0.2.{n}", f"oi_op_{n}{uuid.uuid4().hex}")).status_code
            for n in range(LIMIT + 1)
        ]
    engine.dispose()
    assert answers == [401] * LIMIT + [429]


def test_dashboard_cookie_checks_count_as_attempts(strict_server: Server) -> None:
    """Dashboard pages checked by cookie used not to be counted at all."""
    with httpx.Client(base_url=strict_server.base_url) as client:
        address = "203.0.113.77"
        answers = [
            client.get("/", headers={**_from(address), "Cookie": f"optiinfra_session={uuid.uuid4().hex}"}).status_code
            for _ in range(LIMIT + 1)
        ]
        assert answers == [303] * LIMIT + [429]
        # Not signed in at all (no cookie) is not an attempt: it is sent to the sign-in page.
        assert client.get("/", headers=_from("203.0.113.78")).status_code == 303


def test_trusted_proxies_setting_is_parsed_and_bad_entries_are_refused() -> None:
    proxies = TrustedProxies.parse(" 10.0.0.0/8, ::1 ,127.0.0.1")
    assert proxies.trusts("10.1.2.3")
    assert proxies.trusts("::1")
    assert not proxies.trusts("11.0.0.1")
    assert not proxies.trusts("not-an-address")
    from optiinfra.errors import ConfigurationError

    with pytest.raises(ConfigurationError, match="OPTIINFRA_TRUSTED_PROXIES"):
        TrustedProxies.parse("10.0.0.0/8, proxy.example")
