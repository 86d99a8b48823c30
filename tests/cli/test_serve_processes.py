"""`optiinfra serve` as processes: a front that owns the port and answers /healthz, an API process it hands the other
connections to, and a workflow worker process; the front restarts a child that dies and stops them all on SIGTERM.

Real processes and real HTTP on loopback. The one bound on time is generous (seconds, for a loaded CI machine): the
point is that /healthz is answered at all while the API process cannot run, which a single process could not do.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from sqlalchemy.engine import URL, Engine

from optiinfra.auth.keys import generate_key
from optiinfra.auth.principal import Role
from optiinfra.cli import serve as serve_command
from optiinfra.otlp import grpc_receiver
from tests.conftest import url_for_env

GENEROUS_SECONDS = 5.0


@dataclass
class Serve:
    process: subprocess.Popen[bytes]
    base_url: str
    operator_key: str
    log: Path

    def ready_pids(self, name: str) -> list[int]:
        """Every pid `name` (api-0, worker) has had, in the order the front saw them become ready."""
        return [int(pid) for pid in re.findall(rf"{name} \(pid (\d+)\) is ready", self.log.read_text())]

    def wait_for_ready(self, name: str, count: int, timeout: float = 120) -> int:
        deadline = time.monotonic() + timeout
        while len(pids := self.ready_pids(name)) < count:
            assert self.process.poll() is None, self.log.read_text()
            assert time.monotonic() < deadline, self.log.read_text()
            time.sleep(0.1)
        return pids[-1]


def test_the_front_names_the_grpc_port_the_api_process_uses() -> None:
    assert serve_command.OTLP_GRPC_PORT == grpc_receiver.DEFAULT_PORT


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextmanager
def serving(url: URL, tmp_path: Path) -> Iterator[Serve]:
    port = _free_port()
    operator_key = generate_key(Role.OPERATOR)
    env = {
        **os.environ,
        "OPTIINFRA_DATABASE_URL": url_for_env(url),
        "OPTIINFRA_DATA_DIR": str(tmp_path / "data"),
        "OPTIINFRA_ADMIN_KEY": operator_key,
    }
    log = tmp_path / "serve.log"
    with log.open("wb") as output:
        process = subprocess.Popen(
            [sys.executable, "-m", "optiinfra", "serve", "--port", str(port), "--otlp-grpc-port", "0"],
            env=env,
            stdout=output,
            stderr=subprocess.STDOUT,
        )
    server = Serve(process, f"http://127.0.0.1:{port}", operator_key, log)
    try:
        server.wait_for_ready("api-0", 1)
        server.wait_for_ready("worker", 1)
        yield server
    finally:
        if process.poll() is None:
            process.kill()
        process.wait(timeout=30)
        for name in ("api-0", "worker"):
            for pid in server.ready_pids(name):  # a killed front's children follow it at once
                _wait_gone(pid)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A child that exited but was not yet reaped by its parent is gone for every purpose here.
    return not Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1].startswith("Z")


def _wait_gone(pid: int, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while _alive(pid):
        assert time.monotonic() < deadline, f"process {pid} is still running"
        time.sleep(0.1)


def _health(server: Serve) -> httpx.Response:
    started = time.monotonic()
    answer = httpx.get(f"{server.base_url}/healthz", timeout=GENEROUS_SECONDS)
    assert time.monotonic() - started < GENEROUS_SECONDS
    return answer


def test_healthz_is_answered_while_the_api_process_cannot_run_and_requests_wait_for_it(
    migrated_engine: Engine, tmp_path: Path
) -> None:
    with serving(migrated_engine.url, tmp_path) as server:
        api_pid = server.ready_pids("api-0")[-1]
        customers = f"{server.base_url}/api/v1/customers"
        headers = {"Authorization": f"Bearer {server.operator_key}"}
        assert httpx.get(customers, headers=headers).status_code == 200
        os.kill(api_pid, signal.SIGSTOP)  # every request thread (and the API's event loop) is stopped
        try:
            answers: list[int] = []
            waiting = threading.Thread(
                target=lambda: answers.append(httpx.get(customers, headers=headers, timeout=60).status_code)
            )
            waiting.start()
            for _ in range(5):
                health = _health(server)
                assert health.status_code == 200
                assert health.json() == {"status": "ok"}
            waiting.join(1.0)
            assert answers == []  # the API request is with the stopped process
        finally:
            os.kill(api_pid, signal.SIGCONT)
        waiting.join(60)
        assert answers == [200]  # handed over whole: answered once the API process runs again


def test_a_child_that_dies_is_started_again_and_sigterm_stops_every_process(
    migrated_engine: Engine, tmp_path: Path
) -> None:
    with serving(migrated_engine.url, tmp_path) as server:
        first_api, first_worker = server.ready_pids("api-0")[-1], server.ready_pids("worker")[-1]
        os.kill(first_api, signal.SIGKILL)
        os.kill(first_worker, signal.SIGKILL)
        second_api = server.wait_for_ready("api-0", 2)
        second_worker = server.wait_for_ready("worker", 2)
        assert second_api != first_api
        assert second_worker != first_worker
        headers = {"Authorization": f"Bearer {server.operator_key}"}
        assert httpx.get(f"{server.base_url}/api/v1/customers", headers=headers).status_code == 200
        assert _health(server).status_code == 200

        server.process.send_signal(signal.SIGTERM)
        assert server.process.wait(timeout=60) == 0, server.log.read_text()
        for pid in (second_api, second_worker):
            _wait_gone(pid, timeout=1)
        with pytest.raises(httpx.ConnectError):
            httpx.get(f"{server.base_url}/healthz")
