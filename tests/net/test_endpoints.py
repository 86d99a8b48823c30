"""Which URLs and addresses OptiInfra calls: the static check and the address classification."""

from __future__ import annotations

import ipaddress
import re

import pytest

from optiinfra.config import ALLOW_PRIVATE_ENDPOINTS_ENV, private_endpoints_allowed
from optiinfra.errors import ConfigurationError
from optiinfra.net.endpoints import UnsafeEndpointError, blocked_reason, check_url


@pytest.mark.parametrize(
    ("address", "reason"),
    [
        ("127.0.0.1", "loopback"),
        ("127.255.0.9", "loopback"),
        ("::1", "loopback"),
        ("10.1.2.3", "private"),
        ("172.16.0.1", "private"),
        ("192.168.1.1", "private"),
        ("fd12:3456::1", "private"),
        ("169.254.169.254", "link-local"),  # the cloud metadata service
        ("fe80::1", "link-local"),
        ("224.0.0.1", "multicast"),
        ("239.1.1.1", "multicast"),
        ("ff02::1", "multicast"),
        ("0.0.0.0", "unspecified"),
        ("::", "unspecified"),
        ("240.0.0.1", "private|reserved"),
        ("fec0::1", "site-local"),
        ("100.64.0.1", "non-public"),  # shared address space (carrier-grade NAT)
        ("192.0.2.10", "private"),  # documentation range
        ("::ffff:127.0.0.1", "carrying 127.0.0.1, a loopback"),
        ("::ffff:10.0.0.1", "carrying 10.0.0.1, a private"),
        ("64:ff9b::a9fe:a9fe", "carrying 169.254.169.254, a link-local"),  # NAT64
        ("2002:7f00:1::", "carrying 127.0.0.1, a loopback"),  # 6to4
    ],
)
def test_internal_addresses_are_blocked(address: str, reason: str) -> None:
    found = blocked_reason(ipaddress.ip_address(address))
    assert found is not None
    assert re.search(reason, found), found


@pytest.mark.parametrize(
    "address", ["8.8.8.8", "1.1.1.1", "2606:4700:4700::1111", "::ffff:8.8.8.8", "64:ff9b::808:808"]
)
def test_public_addresses_pass(address: str) -> None:
    assert blocked_reason(ipaddress.ip_address(address)) is None


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("http://127.0.0.1:8080/internal#", "fragment"),
        ("https://agent.example.com/hook#top", "fragment"),
        ("ftp://agent.example.com/", "http or https"),
        ("file:///etc/passwd", "http or https"),
        ("gopher://agent.example.com:70/", "http or https"),
        ("agent.example.com/hook", "http or https"),
        ("http://user:secret@agent.example.com/", "user-info"),
        ("http://agent.example.com@127.0.0.1/", "user-info"),
        ("http:///hook", "no host"),
        ("http://agent.example.com:99999/", "cannot be parsed"),
        ("http://agent example.com/", "spaces"),
        ("http://agent.example.com\\@evil/", "backslashes"),
        ("http://under_score!.example/", "not a valid host"),
        ("http://127.0.0.1/", "loopback"),
        ("http://127.1/", "loopback"),
        ("http://2130706433/", "loopback"),  # 127.0.0.1 as one decimal number
        ("http://0x7f000001/", "loopback"),
        ("http://0177.0.0.1/", "loopback"),
        ("http://[::1]:9000/", "loopback"),
        ("http://[::ffff:127.0.0.1]/", "loopback"),
        ("http://localhost:8000/", "loopback name"),
        ("http://LOCALHOST./", "loopback name"),
        ("http://metadata.localhost/", "loopback name"),
        ("http://10.0.0.5:9000/", "private"),
        ("http://169.254.169.254/latest/meta-data/", "link-local"),
        ("http://0.0.0.0:80/", "unspecified"),
        ("http://[fe80::1%25eth0]/", "link-local"),
    ],
)
def test_unsafe_urls_are_refused_by_default(url: str, message: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(ALLOW_PRIVATE_ENDPOINTS_ENV, raising=False)
    with pytest.raises(UnsafeEndpointError, match=message):
        check_url(url)


@pytest.mark.parametrize(
    ("url", "host", "port", "target"),
    [
        ("https://agent.example.com", "agent.example.com", 443, "/"),
        ("http://agent.example.com:8080/hooks?team=ml", "agent.example.com", 8080, "/hooks?team=ml"),
        ("https://8.8.8.8:8443/x", "8.8.8.8", 8443, "/x"),
        ("http://[2606:4700:4700::1111]/", "2606:4700:4700::1111", 80, "/"),
        ("HTTPS://Agent.Example.COM./", "agent.example.com", 443, "/"),
    ],
)
def test_public_urls_pass(url: str, host: str, port: int, target: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(ALLOW_PRIVATE_ENDPOINTS_ENV, raising=False)
    endpoint = check_url(url)
    assert (endpoint.host, endpoint.port, endpoint.target) == (host, port, target)


def test_the_setting_allows_private_addresses_but_nothing_else(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ALLOW_PRIVATE_ENDPOINTS_ENV, "1")
    assert check_url("http://127.0.0.1:8100/").host == "127.0.0.1"
    assert check_url("http://localhost:8100/").port == 8100
    for url in ("http://127.0.0.1/internal#", "http://user:pw@127.0.0.1/", "file:///etc/passwd"):
        with pytest.raises(UnsafeEndpointError):
            check_url(url)
    # An explicit answer wins over the setting.
    with pytest.raises(UnsafeEndpointError, match="loopback"):
        check_url("http://127.0.0.1:8100/", allow_private=False)


@pytest.mark.parametrize(("raw", "allowed"), [("1", True), ("true", True), ("on", True), ("0", False), ("", False)])
def test_the_setting_reads_yes_and_no(raw: str, allowed: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ALLOW_PRIVATE_ENDPOINTS_ENV, raw)
    assert private_endpoints_allowed() is allowed


def test_a_mistyped_setting_is_an_error_not_a_silent_no(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ALLOW_PRIVATE_ENDPOINTS_ENV, "maybe")
    with pytest.raises(ConfigurationError, match=ALLOW_PRIVATE_ENDPOINTS_ENV):
        private_endpoints_allowed()
