"""A real monitoring stack on loopback for the collector tests: Debian's `prometheus` (with days of history
backfilled by `promtool tsdb create-blocks-from openmetrics`) scraping Debian's `prometheus-node-exporter` and our
DCGM/vLLM-format exporter every 2 seconds."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from tests.collectors.exporter import NODES, NodeExporter, Script, openmetrics_history

SCRAPE_SECONDS = 2
HISTORY_HOURS = 50
HISTORY_INTERVAL = 120  # seconds between backfilled samples (within Prometheus's 5-minute look-back)
SERVING_HISTORY = 3 * 3600


def require(binary: str, package: str) -> str:
    found = shutil.which(binary)
    if found is None:
        if os.environ.get("OPTIINFRA_REQUIRE_PROMETHEUS") == "1":
            pytest.fail(f"{binary} is required here: apt-get install {package}")
        pytest.skip(f"{binary} is not installed (CI installs Debian's {package})")
    return found


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def wait_until_ready(url: str, process: subprocess.Popen[bytes], log: Path, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"{url} exited: {log.read_text()[-3000:]}")
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise AssertionError(f"{url} not ready in {seconds} s: {log.read_text()[-3000:]}")


@dataclass
class Stack:
    directory: Path
    script: Script
    prometheus_port: int = field(default_factory=free_port)
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    exporters: list[NodeExporter] = field(default_factory=list)
    started_at: float = 0.0

    @property
    def prometheus_url(self) -> str:
        return f"http://127.0.0.1:{self.prometheus_port}"

    def start_exporters(self) -> dict[str, dict[str, str]]:
        """Our exporter per node and the real node exporter (for gpu-node-1); the scrape targets by node."""
        binary = require("prometheus-node-exporter", "prometheus-node-exporter")
        port = free_port()
        log = self.directory / "node-exporter.log"
        self.processes["node_exporter"] = subprocess.Popen(
            [
                binary,
                f"--web.listen-address=127.0.0.1:{port}",
                "--collector.disable-defaults",
                "--collector.cpu",
                "--collector.meminfo",
            ],
            stdout=log.open("wb"),
            stderr=subprocess.STDOUT,
        )
        wait_until_ready(f"http://127.0.0.1:{port}/metrics", self.processes["node_exporter"], log)
        self.node_exporter_address = f"127.0.0.1:{port}"
        for node in NODES:
            self.exporters.append(NodeExporter(self.script, node, time.time))
        return {e.node.name: {"job": "gpu", "instance": e.address} for e in self.exporters}

    def backfill(self, targets: dict[str, dict[str, str]]) -> None:
        promtool = require("promtool", "prometheus")
        history = self.directory / "history.om"
        end = self.script.anchor - 60
        with history.open("w") as handle:
            for line in openmetrics_history(
                self.script,
                targets,
                end - HISTORY_HOURS * 3600,
                end,
                HISTORY_INTERVAL,
                serving_since=end - SERVING_HISTORY,
            ):
                handle.write(line + "\n")
        done = subprocess.run(
            [promtool, "tsdb", "create-blocks-from", "openmetrics", "--quiet", str(history), str(self.data)],
            capture_output=True,
            text=True,
        )
        assert done.returncode == 0, done.stderr

    @property
    def data(self) -> Path:
        return self.directory / "tsdb"

    def write_config(self) -> None:
        gpu_targets = "\n".join(
            f"""      - targets: ["{e.address}"]
        labels: {json.dumps(e.node.target_labels)}"""
            for e in self.exporters
        )
        first = NODES[0]
        (self.directory / "prometheus.yml").write_text(
            f"""global:
  scrape_interval: {SCRAPE_SECONDS}s
  scrape_timeout: {SCRAPE_SECONDS}s
scrape_configs:
  - job_name: gpu
    static_configs:
{gpu_targets}
  - job_name: node
    static_configs:
      - targets: ["{self.node_exporter_address}"]
        labels: {json.dumps(first.target_labels)}
"""
        )

    def start_prometheus(self) -> None:
        binary = require("prometheus", "prometheus")
        log = self.directory / "prometheus.log"
        self.processes["prometheus"] = subprocess.Popen(
            [
                binary,
                f"--config.file={self.directory / 'prometheus.yml'}",
                f"--storage.tsdb.path={self.data}",
                f"--web.listen-address=127.0.0.1:{self.prometheus_port}",
                "--log.level=warn",
            ],
            stdout=log.open("ab"),
            stderr=subprocess.STDOUT,
        )
        wait_until_ready(f"{self.prometheus_url}/-/ready", self.processes["prometheus"], log)
        self.started_at = time.time()

    def wait_for_live_cpu(self, seconds: float = 120) -> None:
        """Until Prometheus can compute the node exporter's CPU rate (two successful scrapes): on a loaded machine the
        first scrapes may time out."""
        deadline = time.monotonic() + seconds
        query = 'count(rate(node_cpu_seconds_total{mode="idle"}[5m]))'
        while time.monotonic() < deadline:
            answer = httpx.get(f"{self.prometheus_url}/api/v1/query", params={"query": query}, timeout=5).json()
            if answer["data"]["result"]:
                return
            time.sleep(0.5)
        targets = httpx.get(f"{self.prometheus_url}/api/v1/targets", timeout=5).json()["data"]["activeTargets"]
        raise AssertionError([(t["scrapeUrl"], t["health"], t["lastError"]) for t in targets])

    def stop_prometheus(self) -> None:
        process = self.processes.pop("prometheus")
        process.terminate()
        process.wait(timeout=30)

    def close(self) -> None:
        for process in self.processes.values():
            process.terminate()
        for process in self.processes.values():
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
        for exporter in self.exporters:
            exporter.close()


def start_stack(directory: Path) -> Stack:
    stack = Stack(directory, Script(time.time()))
    try:
        targets = stack.start_exporters()
        stack.backfill(targets)
        stack.write_config()
        stack.start_prometheus()
    except BaseException:
        stack.close()
        raise
    return stack
