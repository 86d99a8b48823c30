"""How a rollout acts on infrastructure: an executor applies and undoes each phase.

- `SimulatorExecutor` (demo and tests) keeps the fleet's state in a JSON file under the data directory.
- `WebhookExecutor` asks the agent's own `endpoint` to do it: `POST {endpoint}/optiinfra/phases/apply` and
  `.../undo` with the phase as JSON and an `Idempotency-Key` header, with a timeout and retries with backoff on
  timeouts, connection failures and 5xx answers; a 3xx (never followed) or 4xx answer is final. The endpoint is
  checked by `optiinfra.net.endpoints` at every call (no loopback, private or other internal address unless the
  operator allows them), and a failure is recorded with its status code and our words, never the answer's body.

Both are idempotent per key: applying the same phase twice (a retried or resumed step) changes nothing more.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Protocol

import httpcore

from optiinfra.files import write_private
from optiinfra.net import endpoints


@dataclass(frozen=True)
class Phase:
    """One step of a gradual rollout: the instances it moves, and the share of the fleet moved once it is done."""

    name: str
    instances: tuple[str, ...]
    cumulative_share: float
    target: str = "spot"


class Executor(Protocol):
    def apply(self, phase: Phase, idempotency_key: str) -> dict[str, Any]: ...

    def undo(self, phase: Phase, idempotency_key: str) -> dict[str, Any]: ...


class SimulatorExecutor:
    """A simulated fleet: instance -> capacity type, kept in a JSON file; `on_apply` lets demos and tests act as
    the traffic that follows a phase (for example by sending quality metrics)."""

    _lock = threading.Lock()

    def __init__(self, state_file: Path, on_apply: Callable[[Phase], None] | None = None) -> None:
        self.state_file = state_file
        self.on_apply = on_apply

    def _load(self) -> dict[str, Any]:
        if self.state_file.exists():
            loaded: dict[str, Any] = json.loads(self.state_file.read_text())
            return loaded
        return {"instances": {}, "done": {}}

    def _save(self, state: dict[str, Any]) -> None:
        write_private(self.state_file, json.dumps(state, indent=2, sort_keys=True).encode())

    def _act(self, action: str, phase: Phase, key: str, capacity: str) -> dict[str, Any]:
        with self._lock:
            state = self._load()
            done_key = f"{action}:{key}"
            if done_key in state["done"]:
                return {**state["done"][done_key], "replayed": True}
            for instance in phase.instances:
                state["instances"][instance] = capacity
            result = {
                "action": action,
                "phase": asdict(phase),
                "instances": list(phase.instances),
                "capacity": capacity,
            }
            state["done"][done_key] = result
            self._save(state)
        return result

    def apply(self, phase: Phase, idempotency_key: str) -> dict[str, Any]:
        result = self._act("apply", phase, idempotency_key, phase.target)
        if self.on_apply is not None and not result.get("replayed"):
            self.on_apply(phase)
        return result

    def undo(self, phase: Phase, idempotency_key: str) -> dict[str, Any]:
        return self._act("undo", phase, idempotency_key, "on_demand")

    def capacity(self) -> dict[str, str]:
        instances: dict[str, str] = self._load()["instances"]
        return instances


class WebhookExecutorError(Exception):
    """A phase call failed; the message is ours (status code and reason), never the endpoint's answer."""


class WebhookExecutor:
    """Applies and undoes phases by calling the agent's endpoint, through `optiinfra.net.endpoints`: the URL and
    the address connected to are checked at every call, redirects are not followed, and an answer's body never
    reaches an error message (a failing endpoint's body could be anything, including another service's data)."""

    def __init__(
        self,
        endpoint: str,
        *,
        timeout: float = 30.0,
        retries: int = 3,
        backoff: float = 1.0,
        allow_private: bool | None = None,
    ) -> None:
        self.endpoint = endpoint.rstrip("/")
        self.timeout = timeout
        self.retries = retries
        self.backoff = backoff
        self.allow_private = allow_private  # None: as OPTIINFRA_ALLOW_PRIVATE_ENDPOINTS says at the call

    def _post(self, action: str, phase: Phase, key: str) -> dict[str, Any]:
        url = f"{self.endpoint}/optiinfra/phases/{action}"
        try:
            shown = endpoints.check_url(url, allow_private=self.allow_private).display
        except endpoints.UnsafeEndpointError as error:
            raise WebhookExecutorError(f"The agent's endpoint was not called. {error}") from error
        content = json.dumps(asdict(phase)).encode()
        headers = {"Content-Type": "application/json", "Idempotency-Key": key}
        last_error = ""
        for attempt in range(self.retries + 1):
            try:
                response = endpoints.post(
                    url, content, headers=headers, timeout=self.timeout, allow_private=self.allow_private
                )
            except endpoints.UnsafeEndpointError as error:
                raise WebhookExecutorError(f"The agent's endpoint was not called. {error}") from error
            except endpoints.ResponseTooLargeError as error:
                raise WebhookExecutorError(f"{shown} answered the phase, but {error}.") from error
            except httpcore.TimeoutException as error:
                last_error = f"{type(error).__name__} (no answer within {self.timeout:g} s)"
            except (httpcore.NetworkError, httpcore.ProtocolError) as error:
                last_error = f"{type(error).__name__} (the connection failed)"
            else:
                status = response.status_code
                if 200 <= status < 300:
                    return self._result(shown, response.body)
                if 300 <= status < 400:
                    raise WebhookExecutorError(
                        f"{shown} answered HTTP {status}, a redirect; redirects are not followed."
                    )
                if status < 500:
                    raise WebhookExecutorError(f"{shown} refused the phase: HTTP {status}.")
                last_error = f"HTTP {status}"
            if attempt < self.retries:
                time.sleep(self.backoff * 2**attempt)
        raise WebhookExecutorError(f"{shown} failed after {self.retries + 1} attempts: {last_error}.")

    @staticmethod
    def _result(shown: str, body: bytes) -> dict[str, Any]:
        if not body.strip():
            return {}
        try:
            result = json.loads(body)
        except ValueError:
            result = None
        if not isinstance(result, dict):
            raise WebhookExecutorError(f"{shown} accepted the phase but its answer is not a JSON object.")
        return result

    def apply(self, phase: Phase, idempotency_key: str) -> dict[str, Any]:
        return self._post("apply", phase, idempotency_key)

    def undo(self, phase: Phase, idempotency_key: str) -> dict[str, Any]:
        return self._post("undo", phase, idempotency_key)
