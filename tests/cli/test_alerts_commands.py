"""`optiinfra alerts ...` against a fresh database and a loopback receiver: add a route (its secret printed once),
list it masked, send a test alert that a worker delivers, read the log, and redeliver only a failed alert."""

from __future__ import annotations

import re

import pytest
from sqlalchemy import create_engine
from sqlalchemy.engine import URL
from sqlalchemy.orm import Session
from typer.testing import CliRunner

from optiinfra.cli import app
from optiinfra.db import migrations
from optiinfra.db.engine import make_session_factory
from optiinfra.workflows import queue
from tests.alerts.receiver import Receiver, running_receiver
from tests.conftest import url_for_env
from tests.factories import make_customer

runner = CliRunner()


def test_alert_routes_and_test_alerts_from_the_command_line(database_url: URL, monkeypatch: pytest.MonkeyPatch) -> None:
    engine = create_engine(database_url)
    migrations.upgrade(engine)
    monkeypatch.setenv("OPTIINFRA_ALLOW_PRIVATE_ENDPOINTS", "1")
    monkeypatch.setenv("OPTIINFRA_ALERT_MAX_ATTEMPTS", "1")
    with Session(engine) as session, session.begin():
        email = make_customer(session).email

    def cli(*args: str):  # type: ignore[no-untyped-def]
        return runner.invoke(
            app, list(args), env={"OPTIINFRA_DATABASE_URL": url_for_env(database_url), "COLUMNS": "200"}
        )

    worker = queue.Worker(engine.url, lambda _: None, make_session_factory(engine), concurrency=1, name="cli-test")
    worker.start_in_thread()
    try:
        with running_receiver(Receiver([500])) as receiver:
            added = cli("alerts", "add", "pager", "-c", email, "--url", receiver.url, "--kind", "incident.opened")
            assert added.exit_code == 0, added.output
            secret = re.search(r"signing secret \(shown once\): (whsec_\S+)", added.output)
            assert secret is not None
            route_id = re.search(r"pager ([0-9a-f-]{36})", added.output)
            assert route_id is not None

            listed = cli("alerts", "routes", "-c", email)
            assert listed.exit_code == 0, listed.output
            assert receiver.url not in listed.output
            assert secret.group(1) not in listed.output
            assert f"…{receiver.url[-4:]}" in listed.output

            failed = cli("alerts", "test", route_id.group(1), "--wait", "30")  # one attempt, answered 500
            assert failed.exit_code == 1, failed.output
            alert_id = re.search(r"test alert ([0-9a-f-]{36}) queued", failed.output)
            assert alert_id is not None
            assert "failed after 1 of 1 attempts" in failed.output

            again = cli("alerts", "redeliver", alert_id.group(1), "--wait", "30")
            assert again.exit_code == 0, again.output
            assert "delivered after 2 of 2 attempts" in again.output
            refused = cli("alerts", "redeliver", alert_id.group(1))
            assert refused.exit_code == 1
            assert "never sent again" in refused.output
            assert [r.answered for r in receiver.received] == [500, 200]
    finally:
        worker.stop()
        engine.dispose()
