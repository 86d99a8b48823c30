"""Faults with real processes: the server is killed (SIGKILL) in the middle of a large ingest."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import orjson
import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import URL, Engine
from sqlalchemy.orm import Session

from optiinfra.auth.keys import generate_key, key_digest
from optiinfra.auth.principal import Role
from optiinfra.db import migrations
from optiinfra.models import Agent, AgentType, Customer
from tests.conftest import url_for_env
from tests.factories import assign


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextmanager
def serve(url: URL, data_dir: Path, port: int) -> Iterator[subprocess.Popen[bytes]]:
    env = {
        **os.environ,
        "OPTIINFRA_DATABASE_URL": url_for_env(url),
        "OPTIINFRA_DATA_DIR": str(data_dir),
        "OPTIINFRA_ADMIN_KEY": generate_key(Role.OPERATOR),
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "optiinfra", "serve", "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 60
    while True:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=2).status_code == 200:
                break
        except httpx.TransportError:
            pass
        assert process.poll() is None, "the server exited while starting"
        assert time.monotonic() < deadline, "the server did not start"
        time.sleep(0.2)
    try:
        yield process
    finally:
        if process.poll() is None:
            process.kill()
        process.wait(timeout=30)


def batch(n: int, tag: str) -> list[dict[str, object]]:
    start = datetime.now(UTC) - timedelta(hours=2)
    return [
        {
            "request_id": f"{tag}-{i}",
            "model_name": "m",
            "model_version": "v1",
            "timestamp": (start + timedelta(milliseconds=100 * i)).isoformat(),
            "overall_quality_score": 0.8,
            "latency_ms": 500.0,
            "metadata": {"i": i},
        }
        for i in range(n)
    ]


def wait_for_orphaned_backends(engine: Engine, timeout: float = 30.0) -> None:
    """Wait until no other backend in this database is inside a statement or a transaction."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with engine.connect() as connection:
            busy = connection.execute(
                text(
                    "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
                    " AND pid <> pg_backend_pid() AND backend_type = 'client backend' AND state <> 'idle'"
                )
            ).scalar_one()
        if not busy:
            return
        time.sleep(0.05)
    raise AssertionError(f"backends of the killed server still busy after {timeout} s")


@pytest.mark.parametrize("kill_after", [0.05, 0.25, 0.6])
def test_a_batch_survives_a_sigkill_whole_or_not_at_all_and_a_retry_stores_it_once(
    database_url: URL, tmp_path: Path, kill_after: float
) -> None:
    engine = create_engine(database_url)
    migrations.upgrade(engine)
    key = generate_key(Role.CUSTOMER)
    with Session(engine) as session, session.begin():
        customer = Customer(name="Fault", email=f"fault-{uuid.uuid4().hex[:6]}@x.example", api_key=key_digest(key))
        agent = Agent(type=AgentType.APPLICATION, name=f"app-{uuid.uuid4().hex[:6]}")
        session.add_all([customer, agent])
        session.flush()
        assign(session, agent, customer)
    records = batch(10_000, f"kill{kill_after}")
    body = orjson.dumps({"records": records})
    headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
    port = _free_port()

    with serve(database_url, tmp_path / "data", port) as server:
        outcome: list[object] = []

        def send() -> None:
            try:
                outcome.append(
                    httpx.post(
                        f"http://127.0.0.1:{port}/api/v1/quality/metrics", content=body, headers=headers, timeout=60
                    ).status_code
                )
            except httpx.HTTPError as error:
                outcome.append(error)

        sender = threading.Thread(target=send)
        sender.start()
        time.sleep(kill_after)
        server.send_signal(signal.SIGKILL)
        sender.join(timeout=60)

    def stored() -> int:
        with engine.connect() as connection:
            return int(
                connection.execute(
                    text("SELECT count(*) FROM quality_metrics WHERE request_id LIKE :tag"),
                    {"tag": f"kill{kill_after}-%"},
                ).scalar_one()
            )

    # A COMMIT the server sent before it died still completes in its PostgreSQL backend: count only once the dead
    # server's backends have finished, or a batch that is about to land whole would be counted as absent.
    wait_for_orphaned_backends(engine)
    after_crash = stored()
    assert after_crash in {0, len(records)}, f"a killed batch left {after_crash} of {len(records)} rows"
    if outcome and outcome[0] == 200:
        assert after_crash == len(records)  # acknowledged means stored

    with serve(database_url, tmp_path / "data", port):
        retry = httpx.post(f"http://127.0.0.1:{port}/api/v1/quality/metrics", content=body, headers=headers, timeout=60)
    assert retry.status_code == 200, retry.text
    assert retry.json() == {"received": len(records), "inserted": len(records) - after_crash, "duplicates": after_crash}
    assert stored() == len(records)
    engine.dispose()
