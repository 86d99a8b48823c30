"""`optiinfra serve --demo` as a newcomer runs it: embedded PostgreSQL, schema upgraded, a living demo, a stable key.

One real server process (at the demo's quick pace: a short history and a small rollout gate, the same code paths),
then a restart on the same data directory."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

READY_SECONDS = 300  # generous: a loaded 2-core machine took over 150 s to backfill
MOVING_SECONDS = 240
INCIDENT_EVENTS = {"quality.regression_detected", "quality.regression_updated", "quality.rollback_triggered"}


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextmanager
def demo_server(data_dir: Path, log: Path) -> Iterator[tuple[str, str]]:
    """A `serve --demo` process; yields its base URL and its log so far once /readyz answers."""
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if k not in {"OPTIINFRA_DATABASE_URL", "OPTIINFRA_ADMIN_KEY"}}
    env.update(OPTIINFRA_DATA_DIR=str(data_dir), OPTIINFRA_DEMO_PACE="quick", COLUMNS="200")
    with log.open("w") as output:
        process = subprocess.Popen(
            [sys.executable, "-m", "optiinfra", "serve", "--demo", "--port", str(port), "--otlp-grpc-port", "0"],
            stdout=output,
            stderr=subprocess.STDOUT,
            env=env,
        )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + READY_SECONDS
        while True:
            try:
                if httpx.get(f"{base}/readyz", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert process.poll() is None, log.read_text()
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.5)
        yield base, log.read_text()
    finally:
        process.send_signal(signal.SIGINT)
        process.wait(timeout=60)


def wait_for(what: str, check: Callable[[], Any], seconds: float = MOVING_SECONDS) -> Any:
    deadline = time.monotonic() + seconds
    while True:
        found = check()
        if found:
            return found
        assert time.monotonic() < deadline, f"not within {seconds} s: {what}"
        time.sleep(1)


def records_ingested(base: str) -> float:
    """The server's own counter of quality records ingested (Prometheus text, all sources)."""
    text = httpx.get(f"{base}/metrics", timeout=10).text
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("optiinfra_quality_records_ingested")
    )


@pytest.mark.migrations
def test_serve_demo_is_alive_and_keeps_its_key_across_a_restart(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    with demo_server(data_dir, tmp_path / "first.log") as (base, log):
        operator = re.search(r"oi_op_[A-Za-z0-9_-]{40,}", log)
        demo_key = re.search(r"oi_cu_[A-Za-z0-9_-]{40,}", log)
        assert operator, log
        assert demo_key, log
        headers = {"Authorization": f"Bearer {operator.group()}"}

        def get(path: str, **params: Any) -> Any:
            response = httpx.get(f"{base}/api/v1{path}", headers=headers, params=params, timeout=10)
            assert response.status_code == 200, response.text
            return response.json()

        # Healthy on arrival: every agent heartbeats, and no error but the demo's incident.
        agents = get("/agents")["items"]
        assert len(agents) == 5
        assert {agent["status"] for agent in agents} == {"healthy"}
        events = get("/events", limit=500)["items"]
        errors = [e for e in events if e["severity"] in {"error", "critical"}]
        errors = [e for e in errors if e["event_type"] not in INCIDENT_EVENTS]
        assert errors == []
        # Live event names only (the demo goes through the services): no `optimization.started`.
        assert not {e["event_type"] for e in events} & {"optimization.started"}
        # The incident: Nimbus's hallucination spike, opened by the worker's monitoring on the backfilled traffic.
        incidents = get("/quality/regressions", open=True)["items"]
        assert any(r["metric_name"] == "hallucination_rate" and r["model_name"] == "mistral-large" for r in incidents)

        # Records keep arriving.
        first = records_ingested(base)
        wait_for("more quality records", lambda: records_ingested(base) > first)

        # A rollout advances: the analysis ran, the customer approved, the first phase passes its evidence gate.
        def phase_passed() -> bool:
            for run in get("/workflows", limit=20)["items"]:
                if run["metadata"].get("workflow") == "spot_migration_rollout":
                    steps = {s["step_name"]: s for s in get(f"/workflows/{run['id']}")["steps"]}
                    if steps["phase_10"]["status"] == "completed":
                        return bool(steps["phase_10"]["output_data"]["gate"]["verdicts"])
            return False

        wait_for("a rollout phase that passed its gate", phase_passed)
        # Still healthy while it moves, and no run failed.
        assert {agent["status"] for agent in get("/agents")["items"]} == {"healthy"}
        assert [r for r in get("/workflows", limit=100)["items"] if r["status"] == "failed"] == []
        records_before_restart = records_ingested(base)
        baselines = get("/quality/baselines", limit=100)["items"]

        me = httpx.get(f"{base}/api/v1/customers/me", headers={"Authorization": f"Bearer {demo_key.group()}"})
        assert me.json()["name"] == "Acme Analytics"
        dashboard = httpx.post(f"{base}/login", data={"api_key": demo_key.group()})
        assert dashboard.status_code == 303
        assert "optiinfra_session" in dashboard.headers["set-cookie"]
    assert (data_dir / "demo-customer-key").stat().st_mode & 0o777 == 0o600

    # A restart on the same data directory: the same key, no second history, no duplicate cast.
    with demo_server(data_dir, tmp_path / "second.log") as (base, log):
        again = re.search(r"oi_cu_[A-Za-z0-9_-]{40,}", log)
        assert again, log
        assert again.group() == demo_key.group(), log
        me = httpx.get(f"{base}/api/v1/customers/me", headers={"Authorization": f"Bearer {again.group()}"})
        assert me.status_code == 200
        assert "created" not in log.split("Demo:", 1)[1].split("\n", 1)[0]
        headers = {"Authorization": f"Bearer {operator.group()}"}
        customers = httpx.get(f"{base}/api/v1/customers", headers=headers).json()["items"]
        assert sorted(c["name"] for c in customers) == ["Acme Analytics", "Nimbus Chat"]
        assert len(httpx.get(f"{base}/api/v1/agents", headers=headers).json()["items"]) == 5
        # Only the seconds the server was down were sent again (the counter restarts with the process).
        sent = int(re.search(r"Demo: ([\d,]+) quality records", log).group(1).replace(",", ""))  # type: ignore[union-attr]
        assert sent < records_before_restart / 20
        after = httpx.get(f"{base}/api/v1/quality/baselines", headers=headers, params={"limit": 100}).json()["items"]
        assert len(after) == len(baselines)
        # The worker picks the running rollout up again, and it does not fail on resume.
        resumed = records_ingested(base)
        wait_for("the worker's first tick", lambda: records_ingested(base) > resumed)
        runs = httpx.get(f"{base}/api/v1/workflows", headers=headers, params={"limit": 100}).json()["items"]
        assert [r for r in runs if r["status"] == "failed"] == []
        assert {a["status"] for a in httpx.get(f"{base}/api/v1/agents", headers=headers).json()["items"]} == {"healthy"}
