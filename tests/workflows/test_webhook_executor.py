"""The webhook executor against a real HTTP server on loopback: idempotency keys, retries, final refusals."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import ClassVar

import pytest

from optiinfra.workflows.executors import Phase, WebhookExecutor, WebhookExecutorError


class Agent(BaseHTTPRequestHandler):
    calls: ClassVar[list[dict[str, object]]] = []
    failures_left = 0
    refuse = False

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        Agent.calls.append({"path": self.path, "key": self.headers["Idempotency-Key"], "body": body})
        if Agent.refuse:
            self._answer(409, {"error": "fleet locked"})
        elif Agent.failures_left > 0:
            Agent.failures_left -= 1
            self._answer(503, {"error": "busy"})
        else:
            self._answer(200, {"done": self.path.rsplit("/", 1)[-1], "instances": body["instances"]})

    def _answer(self, status: int, payload: dict[str, object]) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def endpoint() -> Iterator[str]:
    Agent.calls, Agent.failures_left, Agent.refuse = [], 0, False
    server = ThreadingHTTPServer(("127.0.0.1", 0), Agent)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
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
    with pytest.raises(WebhookExecutorError, match="refused the phase: 409"):
        WebhookExecutor(endpoint, retries=3, backoff=0.01).apply(PHASE, "k")
    assert len(Agent.calls) == 1


def test_an_unreachable_endpoint_fails_after_retries() -> None:
    with pytest.raises(WebhookExecutorError, match="ConnectError"):
        WebhookExecutor("http://127.0.0.1:9", retries=1, backoff=0.01, timeout=1).apply(PHASE, "k")
