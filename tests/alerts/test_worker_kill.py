"""The outbox survives SIGKILL of the worker that was delivering: another worker delivers the alert, once."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from sqlalchemy import create_engine
from sqlalchemy.engine import URL
from sqlalchemy.orm import Session

from optiinfra.alerts import schemas as alert_schemas
from optiinfra.alerts import service
from optiinfra.auth.principal import Principal
from optiinfra.db import migrations
from optiinfra.db.engine import make_session_factory
from optiinfra.models import AlertOutbox
from optiinfra.workflows import queue
from tests.alerts.receiver import Receiver, running_receiver
from tests.conftest import url_for_env
from tests.factories import make_customer


def test_an_alert_whose_worker_is_killed_mid_call_is_delivered_by_another_once(
    database_url: URL, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    engine = create_engine(database_url)
    migrations.upgrade(engine)
    settings = {
        "OPTIINFRA_ALLOW_PRIVATE_ENDPOINTS": "1",  # the receiver is on loopback
        "OPTIINFRA_ALERT_TIMEOUT_SECONDS": "0.5",  # an attempt is taken over 6.5 s after it started
        "OPTIINFRA_ALERT_RECOVERY_SECONDS": "0.5",
    }
    for name, value in settings.items():
        monkeypatch.setenv(name, value)
    env = {**os.environ, "OPTIINFRA_DATABASE_URL": url_for_env(database_url), "OPTIINFRA_DATA_DIR": str(tmp_path)}
    with running_receiver(Receiver(["hang"], hang_seconds=2)) as receiver:
        with Session(engine) as session, session.begin():
            customer = make_customer(session)
            payload = alert_schemas.AlertRouteCreate(
                customer_id=customer.id, name="pager", destination="webhook", url=receiver.url
            )
            route = service.create_route(session, Principal.operator(), payload)
            alert_id = service.send_test(session, Principal.operator(), route.id).id

        first = subprocess.Popen(
            [sys.executable, "-m", "optiinfra", "worker", "--interval", "0"],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 120
        while not receiver.received:  # the worker process is in the middle of the call
            assert time.monotonic() < deadline, "the worker never called"
            time.sleep(0.02)
        first.send_signal(signal.SIGKILL)
        first.wait(10)
        with Session(engine) as session:
            row = session.get(AlertOutbox, alert_id)
            assert row is not None
            assert (row.status, row.attempts) == ("sending", 1)  # claimed by a dead worker

        factory = make_session_factory(engine)
        second = queue.Worker(engine.url, lambda _: None, factory, concurrency=1, name="survivor")
        second.start_in_thread()
        try:
            [accepted] = receiver.wait_for(1, timeout=60)
            time.sleep(1)
        finally:
            second.stop()

    assert [r.answered for r in receiver.received] == [0, 200]
    assert accepted.headers["Idempotency-Key"] == str(alert_id)  # the receiver can tell it is the same alert
    with Session(engine) as session:
        row = session.get(AlertOutbox, alert_id)
        assert row is not None
        assert (row.status, row.attempts) == ("delivered", 2)
    engine.dispose()
