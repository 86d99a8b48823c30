"""The README's first minute: `optiinfra serve --demo` on a fresh data directory (embedded PostgreSQL), timed as a
newcomer meets it, then restarted on the same directory.

Measured from the process's start: when /readyz answers, and what the API shows then (agents and their health, open
incidents, error events); then how fast quality records arrive and when the first rollout phase passes its
evidence gate; then the restart: time to ready, records sent again, and whether the demo key is the same.

    .venv/bin/python benchmarks/demo_start.py [--pace real|quick] [--watch 900] [--port 18500]
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
from _support import write_results

BIN = Path(sys.executable).parent


def counter(base: str) -> float:
    text = httpx.get(f"{base}/metrics", timeout=30).text
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("optiinfra_quality_records_ingested")
    )


def start(data_dir: Path, port: int, pace: str, log: Path) -> tuple[subprocess.Popen[bytes], float]:
    env = {k: v for k, v in os.environ.items() if k not in {"OPTIINFRA_DATABASE_URL", "OPTIINFRA_ADMIN_KEY"}}
    env.update(OPTIINFRA_DATA_DIR=str(data_dir), OPTIINFRA_DEMO_PACE=pace, COLUMNS="200")
    began = time.monotonic()
    with log.open("w") as output:
        process = subprocess.Popen(  # noqa: S603 (our own command and arguments)
            [str(BIN / "optiinfra"), "serve", "--demo", "--port", str(port), "--otlp-grpc-port", "0"],
            stdout=output,
            stderr=subprocess.STDOUT,
            env=env,
        )
    while True:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=2).status_code == 200:
                return process, time.monotonic() - began
        except httpx.TransportError:
            pass
        if process.poll() is not None:
            raise SystemExit(log.read_text())
        time.sleep(0.25)


def stop(process: subprocess.Popen[bytes]) -> None:
    process.send_signal(signal.SIGINT)
    process.wait(timeout=60)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pace", default="real", choices=["real", "quick"])
    parser.add_argument("--watch", type=float, default=900, help="seconds to wait for the first phase to pass")
    parser.add_argument("--port", type=int, default=18500)
    args = parser.parse_args()
    base = f"http://127.0.0.1:{args.port}"
    results: dict[str, Any] = {"pace": args.pace, "load_average_before": os.getloadavg()}
    with tempfile.TemporaryDirectory(prefix="optiinfra-demo-") as directory:
        data_dir, log = Path(directory) / "data", Path(directory) / "serve.log"
        process, ready = start(data_dir, args.port, args.pace, log)
        began = time.monotonic() - ready
        output = log.read_text()
        operator = re.search(r"oi_op_[A-Za-z0-9_-]{40,}", output)
        demo_key = re.search(r"oi_cu_[A-Za-z0-9_-]{40,}", output)
        assert operator, output
        assert demo_key, output
        headers = {"Authorization": f"Bearer {operator.group()}"}

        def get(path: str, **params: Any) -> Any:
            return httpx.get(f"{base}/api/v1{path}", headers=headers, params=params, timeout=30).json()

        try:
            agents = get("/agents")["items"]
            events = get("/events", limit=500)["items"]
            results["first_start"] = {
                "seconds_to_ready": round(ready, 1),
                "startup_lines": [line for line in output.splitlines() if line.startswith("Demo")],
                "agents": {a["name"]: a["status"] for a in agents},
                "open_incidents": [
                    f"{r['model_name']} {r['metric_name']} {r['severity']}"
                    for r in get("/quality/regressions", open=True)["items"]
                ],
                "error_events": [e["event_type"] for e in events if e["severity"] in {"error", "critical"}],
            }
            first = counter(base)
            time.sleep(30)
            results["records_per_second_live"] = round((counter(base) - first) / 30, 1)
            phase_at = None
            while time.monotonic() - began < args.watch and phase_at is None:
                for run in get("/workflows", limit=20)["items"]:
                    if run["metadata"].get("workflow") != "spot_migration_rollout":
                        continue
                    steps = {s["step_name"]: s for s in get(f"/workflows/{run['id']}")["steps"]}
                    if steps["phase_10"]["status"] == "completed":
                        phase_at = time.monotonic() - began
                time.sleep(5)
            results["seconds_to_first_phase_passed"] = round(phase_at, 1) if phase_at else None
            results["failed_runs"] = [r["id"] for r in get("/workflows", limit=100)["items"] if r["status"] == "failed"]
            before = counter(base)
        finally:
            stop(process)
        process, ready = start(data_dir, args.port, args.pace, log)
        try:
            output = log.read_text()
            again = re.search(r"oi_cu_[A-Za-z0-9_-]{40,}", output)
            sent = re.search(r"Demo: ([\d,]+) quality records", output)
            results["restart"] = {
                "seconds_to_ready": round(ready, 1),
                "same_demo_key": bool(again and again.group() == demo_key.group()),
                "records_sent_again": int(sent.group(1).replace(",", "")) if sent else None,
                "records_before": before,
                "customers": len(get("/customers")["items"]),
                "agents": len(get("/agents")["items"]),
            }
        finally:
            stop(process)
    write_results("demo_start", results)
    print(results)


if __name__ == "__main__":
    main()
