"""How a rollout acts on infrastructure: an executor applies and undoes each phase.

- `SimulatorExecutor` (demo and tests) keeps the fleet's state in a JSON file under the data directory.
- `WebhookExecutor` asks the agent's own `endpoint` to do it: `POST {endpoint}/optiinfra/phases/apply` and
  `.../undo` with the phase as JSON and an `Idempotency-Key` header, with a timeout and retries with backoff on
  timeouts and 5xx answers; a 4xx answer is final.

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

import httpx


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
        self.state_file.parent.mkdir(parents=True, exist_ok=True)
        self.state_file.write_text(json.dumps(state, indent=2, sort_keys=True))

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
    pass


class WebhookExecutor:
    def __init__(self, endpoint: str, *, timeout: float = 30.0, retries: int = 3, backoff: float = 1.0) -> None:
        self.endpoint = endpoint.rstrip("/")
        self.timeout = timeout
        self.retries = retries
        self.backoff = backoff

    def _post(self, action: str, phase: Phase, key: str) -> dict[str, Any]:
        url = f"{self.endpoint}/optiinfra/phases/{action}"
        last_error = ""
        for attempt in range(self.retries + 1):
            try:
                response = httpx.post(url, json=asdict(phase), headers={"Idempotency-Key": key}, timeout=self.timeout)
            except httpx.TransportError as error:
                last_error = f"{type(error).__name__}: {error}"
            else:
                if response.status_code < 400:
                    body: dict[str, Any] = response.json() if response.content else {}
                    return body
                if response.status_code < 500:
                    raise WebhookExecutorError(f"{url} refused the phase: {response.status_code} {response.text[:500]}")
                last_error = f"{response.status_code} {response.text[:200]}"
            if attempt < self.retries:
                time.sleep(self.backoff * 2**attempt)
        raise WebhookExecutorError(f"{url} failed after {self.retries + 1} attempts: {last_error}")

    def apply(self, phase: Phase, idempotency_key: str) -> dict[str, Any]:
        return self._post("apply", phase, idempotency_key)

    def undo(self, phase: Phase, idempotency_key: str) -> dict[str, Any]:
        return self._post("undo", phase, idempotency_key)
