"""Shared set-up for the benchmarks: a fresh database, a running server, simulated quality records."""

from __future__ import annotations

import json
import os
import platform
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import psycopg
from psycopg import sql
from sqlalchemy import Engine, create_engine
from sqlalchemy.engine import URL
from sqlalchemy.orm import Session

from optiinfra.auth.keys import generate_key, key_digest
from optiinfra.auth.principal import Role
from optiinfra.config import parse_database_url
from optiinfra.db import migrations
from optiinfra.db.embedded import start_embedded
from optiinfra.models import Agent, AgentCustomer, AgentType, Customer
from optiinfra.quality.simulation import Traffic, simulate

RESULTS = Path(__file__).parent / "results"


@contextmanager
def fresh_database() -> Iterator[Engine]:
    """A new database on OPTIINFRA_BENCH_DATABASE_URL's server, or on an embedded PostgreSQL; dropped after."""
    raw = os.environ.get("OPTIINFRA_BENCH_DATABASE_URL")
    with tempfile.TemporaryDirectory(prefix="optiinfra-bench-") as directory:
        server: URL = parse_database_url(raw) if raw else start_embedded(Path(directory), database="postgres")
        admin = server.set(drivername="postgresql").render_as_string(hide_password=False)
        name = f"optiinfra_bench_{uuid.uuid4().hex[:8]}"
        with psycopg.connect(admin, autocommit=True) as connection:
            connection.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        engine = create_engine(server.set(database=name), pool_size=10)
        try:
            migrations.upgrade(engine)
            yield engine
        finally:
            engine.dispose()
            with psycopg.connect(admin, autocommit=True) as connection:
                connection.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


def make_tenant(engine: Engine) -> tuple[uuid.UUID, uuid.UUID, str]:
    """A customer with a key, and an application agent: (customer id, agent id, customer key)."""
    key = generate_key(Role.CUSTOMER)
    with Session(engine) as session, session.begin():
        customer = Customer(name="Bench", email=f"bench-{uuid.uuid4().hex[:8]}@example.com", api_key=key_digest(key))
        agent = Agent(type=AgentType.APPLICATION, name=f"bench-{uuid.uuid4().hex[:8]}")
        session.add_all([customer, agent])
        session.flush()
        session.add(AgentCustomer(agent_id=agent.id, customer_id=customer.id))  # the agent serves the customer
        session.flush()
        return customer.id, agent.id, key


@contextmanager
def running_server(
    engine: Engine, port: int | None = None, extra_args: Sequence[str] = (), source: Path | None = None
) -> Iterator[tuple[str, str]]:
    """`optiinfra serve` in its own process, as in production, on a loopback port (a free one unless given), with
    `extra_args` added to its command line, from the package in `source` (a `src` directory) if given, else the
    installed one: (base URL, operator key)."""
    operator_key = generate_key(Role.OPERATOR)
    if port is None:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
    env = {
        **os.environ,
        "OPTIINFRA_DATABASE_URL": engine.url.render_as_string(hide_password=False),
        "OPTIINFRA_ADMIN_KEY": operator_key,
    }
    if source is not None:
        env["PYTHONPATH"] = str(source)
    with (
        tempfile.TemporaryDirectory(prefix="optiinfra-bench-server-") as data_dir,
        # A file, not a pipe: nobody reads a pipe while the server runs, and a full one would block its logging.
        open(Path(data_dir) / "server.log", "w+b") as log,
    ):
        env["OPTIINFRA_DATA_DIR"] = data_dir
        process = subprocess.Popen(  # noqa: S603 (our own interpreter and arguments)
            [sys.executable, "-m", "optiinfra", "serve", "--port", str(port), *extra_args],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=log,
        )
        base_url = f"http://127.0.0.1:{port}"
        try:
            # Generous: on a shared, loaded machine the server's imports alone can take a minute.
            deadline = time.monotonic() + 300
            while True:
                try:
                    if httpx.get(f"{base_url}/readyz", timeout=2).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                if process.poll() is not None or time.monotonic() > deadline:
                    log.seek(0)
                    raise RuntimeError(f"the server did not start: {log.read().decode(errors='replace')}")
                time.sleep(0.2)
            yield base_url, operator_key
        finally:
            process.send_signal(signal.SIGINT)
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()  # a server that cannot shut down (locked up) must not outlive the benchmark
                process.wait(timeout=30)


def quality_records(
    n: int,
    *,
    seed: int,
    start: datetime,
    model: str = "bench-model",
    version: str = "v1",
    traffic: Traffic | None = None,
    step_seconds: float = 1.0,
    prefix: str = "r",
) -> list[dict[str, Any]]:
    columns = simulate(np.random.default_rng(seed), n, traffic or Traffic())
    return [
        {
            "request_id": f"{prefix}-{seed}-{i}",
            "model_name": model,
            "model_version": version,
            "timestamp": (start + timedelta(seconds=step_seconds * i)).isoformat(),
            "prompt_tokens": 512,
            "completion_tokens": 128,
            "latency_ms": float(columns["latency_ms"][i]),
            "relevance_score": float(columns["relevance"][i]),
            "coherence_score": float(columns["coherence"][i]),
            "factuality_score": float(columns["factuality"][i]),
            "hallucination_detected": bool(columns["hallucination"][i]),
            "toxicity_score": float(columns["toxicity"][i]),
            "overall_quality_score": float(columns["overall"][i]),
            "metadata": {"route": "chat"},
        }
        for i in range(n)
    ]


def write_results(name: str, payload: dict[str, Any]) -> Path:
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"{name}.json"
    payload = {
        "benchmark": name,
        "run_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()},
        **payload,
    }
    path.write_text(json.dumps(payload, indent=2) + "\n")
    return path


def median(values: list[float]) -> float:
    return statistics.median(values)
