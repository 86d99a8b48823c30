"""No API key is ever written in clear: not in the server's log, not in any table, not in any error message."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
from sqlalchemy import create_engine, inspect, text
from sqlalchemy.engine import URL

from optiinfra.auth.keys import generate_key
from optiinfra.auth.principal import Role
from optiinfra.client import ApiError, OptiInfraClient
from optiinfra.db import migrations
from optiinfra.enums import AgentType
from tests.conftest import url_for_env


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_keys_appear_nowhere_in_clear(database_url: URL, tmp_path: Path) -> None:
    engine = create_engine(database_url)
    migrations.upgrade(engine)
    operator_key = generate_key(Role.OPERATOR)
    port = _free_port()
    log = tmp_path / "server.log"
    env = {
        **os.environ,
        "OPTIINFRA_DATABASE_URL": url_for_env(database_url),
        "OPTIINFRA_ADMIN_KEY": operator_key,
        "OPTIINFRA_DATA_DIR": str(tmp_path / "data"),
    }
    with log.open("w") as output:
        server = subprocess.Popen(
            [sys.executable, "-m", "optiinfra", "serve", "--port", str(port)],
            stdout=output,
            stderr=subprocess.STDOUT,
            env=env,
        )
    base = f"http://127.0.0.1:{port}"
    issued = [operator_key]
    answers: list[str] = []
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{base}/readyz", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert server.poll() is None, log.read_text()
            assert time.monotonic() < deadline
            time.sleep(0.3)
        with OptiInfraClient(base, operator_key) as operator:
            customer = operator.create_customer("Secret Co", "secops@secret.example")
            agent = operator.register_agent(AgentType.COST, "secret-agent", customer_ids=[customer.id])
            assert agent.api_key is not None
            issued += [customer.api_key, agent.api_key]
            rotated = operator.rotate_customer_key(customer.id)
            issued.append(rotated.api_key)
            as_agent = operator.with_key(agent.api_key)
            as_agent.heartbeat(agent.id)
            recommendation = as_agent.create_recommendation(customer.id, "rightsizing", "x", confidence_score=0.5)
            operator.with_key(rotated.api_key).approve(recommendation.id, f"approved with {rotated.api_key[:6]}…")
            for wrong in (customer.api_key, agent.api_key[:-2], "oi_op_" + "y" * 43):  # the old key, a typo, a guess
                try:
                    operator.with_key(wrong).me()
                except ApiError as error:
                    answers.append(f"{error.message} {error.details}")
            login = httpx.post(f"{base}/login", data={"api_key": customer.api_key})
            answers.append(login.text)
    finally:
        server.send_signal(signal.SIGINT)
        server.wait(timeout=30)
    written = [log.read_text(), *answers]
    with engine.connect() as connection:
        for table in inspect(engine).get_table_names():
            rows = connection.execute(text(f'SELECT t::text FROM "{table}" t')).scalars()
            written.extend(rows)
    engine.dispose()
    everything = "\n".join(written)
    assert "Secret Co" in everything  # the search does see the data
    for key in issued:
        assert key not in everything
        assert key.split("_", 2)[2] not in everything  # nor the secret part without its prefix
