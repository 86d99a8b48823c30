"""The webhook executor against real HTTP servers on loopback: idempotency keys, retries, final refusals, and the
network safety of every call (loopback refused unless allowed, DNS checked at the connection, no redirects, no
remote body in errors).

Loopback is where a test can run a server, so the tests that expect calls to go through allow private endpoints
with OPTIINFRA_ALLOW_PRIVATE_ENDPOINTS=1, as an operator running agents on the same host would."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, ClassVar

import pytest

from optiinfra.config import ALLOW_PRIVATE_ENDPOINTS_ENV
from optiinfra.workflows.executors import Phase, WebhookExecutor, WebhookExecutorError

INTERNAL_SECRET = "internal-service-secret-4f1d"


class Agent(BaseHTTPRequestHandler):
    calls: ClassVar[list[dict[str, Any]]] = []
    failures_left = 0
    refuse = False
    redirect_to: str | None = None

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        Agent.calls.append(
            {"path": self.path, "key": self.headers["Idempotency-Key"], "host": self.headers["Host"], "body": body}
        )
        if Agent.redirect_to is not None:
            self._answer(307, {"moved": True}, location=Agent.redirect_to)
        elif Agent.refuse:
            self._answer(409, {"error": "fleet locked", "internal": INTERNAL_SECRET})
        elif Agent.failures_left > 0:
            Agent.failures_left -= 1
            self._answer(503, {"error": "busy", "internal": INTERNAL_SECRET})
        else:
            self._answer(200, {"done": self.path.rsplit("/", 1)[-1], "instances": body["instances"]})

    def _answer(self, status: int, payload: dict[str, object], location: str | None = None) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        if location is not None:
            self.send_header("Location", location)
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: object) -> None:
        pass


class Internal(BaseHTTPRequestHandler):
    """An internal service nobody should reach through OptiInfra."""

    calls: ClassVar[list[str]] = []

    def do_POST(self) -> None:
        Internal.calls.append(self.path)
        data = INTERNAL_SECRET.encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: object) -> None:
        pass


def serve(handler: type[BaseHTTPRequestHandler]) -> tuple[ThreadingHTTPServer, int]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    return server, int(server.server_address[1])


@pytest.fixture
def agent_port() -> Iterator[int]:
    Agent.calls, Agent.failures_left, Agent.refuse, Agent.redirect_to = [], 0, False, None
    server, port = serve(Agent)
    yield port
    server.shutdown()


@pytest.fixture
def endpoint(agent_port: int, monkeypatch: pytest.MonkeyPatch) -> str:
    """The agent on loopback, with private endpoints allowed."""
    monkeypatch.setenv(ALLOW_PRIVATE_ENDPOINTS_ENV, "1")
    return f"http://127.0.0.1:{agent_port}"


@pytest.fixture
def internal_port() -> Iterator[int]:
    Internal.calls = []
    server, port = serve(Internal)
    yield port
    server.shutdown()


PHASE = Phase("phase_10", ("gpu-1",), 0.1)


def test_apply_and_undo_post_the_phase_with_its_idempotency_key(endpoint: str) -> None:
    executor = WebhookExecutor(endpoint, backoff=0.01)
    assert executor.apply(PHASE, "opt-1:phase_10:apply") == {"done": "apply", "instances": ["gpu-1"]}
    executor.undo(PHASE, "opt-1:phase_10:undo")
    assert [(c["path"], c["key"]) for c in Agent.calls] == [
        ("/optiinfra/phases/apply", "opt-1:phase_10:apply"),
        ("/optiinfra/phases/undo", "opt-1:phase_10:undo"),
    ]
    assert Agent.calls[0]["body"] == {
        "name": "phase_10",
        "instances": ["gpu-1"],
        "cumulative_share": 0.1,
        "target": "spot",
    }


def test_server_errors_are_retried_with_the_same_key(endpoint: str) -> None:
    Agent.failures_left = 2
    WebhookExecutor(endpoint, retries=3, backoff=0.01).apply(PHASE, "k")
    assert len(Agent.calls) == 3
    assert {c["key"] for c in Agent.calls} == {"k"}


def test_retries_are_bounded(endpoint: str) -> None:
    Agent.failures_left = 10
    with pytest.raises(WebhookExecutorError, match="after 3 attempts"):
        WebhookExecutor(endpoint, retries=2, backoff=0.01).apply(PHASE, "k")
    assert len(Agent.calls) == 3


def test_a_refusal_is_final(endpoint: str) -> None:
    Agent.refuse = True
    with pytest.raises(WebhookExecutorError, match="refused the phase: HTTP 409") as refused:
        WebhookExecutor(endpoint, retries=3, backoff=0.01).apply(PHASE, "k")
    assert len(Agent.calls) == 1
    assert INTERNAL_SECRET not in str(refused.value)
    assert "fleet locked" not in str(refused.value)


def test_a_failing_endpoint_body_never_appears_in_the_error(endpoint: str) -> None:
    Agent.failures_left = 10
    with pytest.raises(WebhookExecutorError, match="after 2 attempts: HTTP 503") as failed:
        WebhookExecutor(endpoint, retries=1, backoff=0.01).apply(PHASE, "k")
    assert INTERNAL_SECRET not in str(failed.value)
    assert "busy" not in str(failed.value)


def test_an_unreachable_endpoint_fails_after_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ALLOW_PRIVATE_ENDPOINTS_ENV, "1")
    with pytest.raises(WebhookExecutorError, match="ConnectError"):
        WebhookExecutor("http://127.0.0.1:9", retries=1, backoff=0.01, timeout=1).apply(PHASE, "k")


def test_a_loopback_endpoint_is_refused_by_default(agent_port: int, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(ALLOW_PRIVATE_ENDPOINTS_ENV, raising=False)
    for host in ("127.0.0.1", "localhost", "[::ffff:127.0.0.1]", "2130706433"):
        with pytest.raises(WebhookExecutorError, match="OPTIINFRA_ALLOW_PRIVATE_ENDPOINTS") as refused:
            WebhookExecutor(f"http://{host}:{agent_port}", retries=0).apply(PHASE, "k")
        assert "was not called" in str(refused.value)
    assert Agent.calls == []


def test_turning_the_setting_off_refuses_the_next_call(endpoint: str, monkeypatch: pytest.MonkeyPatch) -> None:
    executor = WebhookExecutor(endpoint, retries=0)
    executor.apply(PHASE, "first")
    monkeypatch.setenv(ALLOW_PRIVATE_ENDPOINTS_ENV, "0")
    with pytest.raises(WebhookExecutorError, match="loopback"):
        executor.undo(PHASE, "second")
    assert [c["key"] for c in Agent.calls] == ["first"]


def test_a_name_that_resolves_to_loopback_is_refused_at_the_connection(
    agent_port: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """DNS rebinding: the name passes the static check (it is not an address), then resolves to 127.0.0.1."""
    monkeypatch.delenv(ALLOW_PRIVATE_ENDPOINTS_ENV, raising=False)
    real_getaddrinfo = socket.getaddrinfo

    def rebinding(host: str, port: int, *args: Any, **kwargs: Any) -> Any:
        return real_getaddrinfo("127.0.0.1" if host == "agent.example.com" else host, port, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", rebinding)
    executor = WebhookExecutor(f"http://agent.example.com:{agent_port}", retries=0)
    refusal = r"agent\.example\.com resolves to 127\.0\.0\.1, which is a loopback"
    with pytest.raises(WebhookExecutorError, match=refusal):
        executor.apply(PHASE, "k")
    assert Agent.calls == []
    # Allowed, the same name reaches the server at the address it resolved to, with the name in the Host header.
    monkeypatch.setenv(ALLOW_PRIVATE_ENDPOINTS_ENV, "1")
    assert executor.apply(PHASE, "k")["done"] == "apply"
    assert Agent.calls[0]["host"] == f"agent.example.com:{agent_port}"


def test_a_redirect_is_not_followed(endpoint: str, internal_port: int) -> None:
    Agent.redirect_to = f"http://127.0.0.1:{internal_port}/internal"
    with pytest.raises(WebhookExecutorError, match="HTTP 307, a redirect; redirects are not followed") as failed:
        WebhookExecutor(endpoint, retries=3, backoff=0.01).apply(PHASE, "k")
    assert len(Agent.calls) == 1, "a redirect is final, not retried"
    assert Internal.calls == []
    assert INTERNAL_SECRET not in str(failed.value)


@pytest.mark.parametrize(
    ("suffix", "reason"),
    [("/internal#", "fragment"), ("/x?token=1#frag", "fragment")],
)
def test_an_endpoint_with_a_fragment_is_never_called(
    endpoint: str, internal_port: int, suffix: str, reason: str
) -> None:
    with pytest.raises(WebhookExecutorError, match=reason):
        WebhookExecutor(f"http://127.0.0.1:{internal_port}{suffix}", retries=0).apply(PHASE, "k")
    assert Internal.calls == []
