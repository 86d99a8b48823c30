"""`optiinfra serve --demo` as a newcomer runs it: embedded PostgreSQL, schema upgraded, demo data, a key."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.mark.migrations
def test_serve_demo_on_the_embedded_database_answers_with_the_printed_key(tmp_path: Path) -> None:
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if k not in {"OPTIINFRA_DATABASE_URL", "OPTIINFRA_ADMIN_KEY"}}
    env["OPTIINFRA_DATA_DIR"] = str(tmp_path / "data")
    env["COLUMNS"] = "200"
    log = tmp_path / "serve.log"
    with log.open("w") as output:
        process = subprocess.Popen(
            [sys.executable, "-m", "optiinfra", "serve", "--demo", "--port", str(port)],
            stdout=output,
            stderr=subprocess.STDOUT,
            env=env,
        )
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert process.poll() is None, log.read_text()
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.5)
        key = re.search(r"oi_op_[A-Za-z0-9_-]{40,}", log.read_text())
        assert key, log.read_text()
        customers = httpx.get(
            f"http://127.0.0.1:{port}/api/v1/customers", headers={"Authorization": f"Bearer {key.group()}"}
        ).json()
        assert {c["name"] for c in customers["items"]} >= {"Acme Analytics", "Nimbus Chat", "Quillbyte Labs"}
        demo_key = re.search(r"oi_cu_[A-Za-z0-9_-]{40,}", log.read_text())
        assert demo_key, log.read_text()
        me = httpx.get(
            f"http://127.0.0.1:{port}/api/v1/customers/me", headers={"Authorization": f"Bearer {demo_key.group()}"}
        ).json()
        assert me["name"] == "Acme Analytics"
        dashboard = httpx.post(f"http://127.0.0.1:{port}/login", data={"api_key": demo_key.group()})
        assert dashboard.status_code == 303
        assert "optiinfra_session" in dashboard.headers["set-cookie"]
    finally:
        process.send_signal(signal.SIGINT)
        process.wait(timeout=30)
