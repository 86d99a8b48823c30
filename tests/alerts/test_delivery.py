"""Delivery to a real HTTP receiver on loopback: signed, retried after a 500 and a time-out, never sent twice after a
success, given up after the maximum attempts and redelivered by hand, refused for loopback unless allowed."""

from __future__ import annotations

import socketserver
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any, ClassVar

import pytest
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session, sessionmaker

from optiinfra.alerts import delivery, render, service
from optiinfra.alerts import schemas as alert_schemas
from optiinfra.auth.principal import Principal
from optiinfra.config import ALLOW_PRIVATE_ENDPOINTS_ENV
from optiinfra.db.engine import make_session_factory, unit_of_work
from optiinfra.errors import ConflictError
from optiinfra.models import AlertDelivery, AlertOutbox
from tests.alerts.receiver import Receiver, running_receiver
from tests.factories import make_customer

OPERATOR = Principal.operator()


@pytest.fixture
def factory(migrated_engine: Engine, monkeypatch: pytest.MonkeyPatch) -> sessionmaker[Session]:
    monkeypatch.setenv(ALLOW_PRIVATE_ENDPOINTS_ENV, "1")  # the receivers are on loopback
    monkeypatch.setenv("OPTIINFRA_ALERT_TIMEOUT_SECONDS", "0.5")
    monkeypatch.setenv("OPTIINFRA_ALERT_BACKOFF_SECONDS", "0.05")
    monkeypatch.setenv("OPTIINFRA_ALERT_MAX_ATTEMPTS", "4")
    return make_session_factory(migrated_engine)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with running_receiver() as running:
        yield running


def route_and_test_alert(
    factory: sessionmaker[Session], url: str, **route: Any
) -> tuple[alert_schemas.AlertRouteWithSecret, uuid.UUID]:
    with unit_of_work(factory) as session:
        customer = make_customer(session)
        payload = alert_schemas.AlertRouteCreate(customer_id=customer.id, name="on-call", url=url, **route)
        created = service.create_route(session, OPERATOR, payload)
        alert = service.send_test(session, OPERATOR, created.id)
    return created, alert.id


def deliver_until_settled(factory: sessionmaker[Session], alert_id: uuid.UUID, limit: float = 20) -> AlertOutbox:
    """Run the alert's job as a worker would, each attempt once it is due, until delivered or given up."""
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        delivery.deliver(factory, alert_id)
        with unit_of_work(factory) as session:
            row = session.get(AlertOutbox, alert_id)
            assert row is not None
            session.expunge(row)
        if row.status in {"delivered", "failed"}:
            return row
        time.sleep(0.05)
    raise AssertionError("the alert did not settle")


def log_of(factory: sessionmaker[Session], alert_id: uuid.UUID) -> list[tuple[str, int | None]]:
    with unit_of_work(factory) as session:
        rows = session.scalars(
            select(AlertDelivery).where(AlertDelivery.outbox_id == alert_id).order_by(AlertDelivery.attempt)
        )
        return [(row.outcome, row.status_code) for row in rows]


def test_webhook_is_signed_and_never_sent_again_after_a_success(
    factory: sessionmaker[Session], receiver: Receiver
) -> None:
    route, alert_id = route_and_test_alert(factory, receiver.url, destination="webhook")
    assert route.signing_secret is not None
    assert route.signing_secret.startswith("whsec_")
    assert route.url_masked == f"http://127.0.0.1/…{receiver.url[-4:]}"  # the token never comes back

    assert deliver_until_settled(factory, alert_id).status == "delivered"

    [request] = receiver.received
    assert render.verify(route.signing_secret, request.headers["OptiInfra-Signature"], request.body)
    assert not render.verify("whsec_another_secret_0000", request.headers["OptiInfra-Signature"], request.body)
    assert not render.verify(route.signing_secret, request.headers["OptiInfra-Signature"], request.body + b" ")
    assert request.headers["Idempotency-Key"] == str(alert_id)
    assert request.json()["id"] == str(alert_id)
    assert request.json()["kind"] == "test"
    # A job that runs again (a retried job, a recovery pass) sends nothing more.
    assert delivery.deliver(factory, alert_id) is None
    assert delivery.recover(factory) == 0
    with unit_of_work(factory) as session, pytest.raises(ConflictError, match="never sent again"):
        service.redeliver(session, OPERATOR, alert_id)
    assert len(receiver.received) == 1
    assert log_of(factory, alert_id) == [("delivered", 200)]


def test_a_500_and_a_time_out_are_retried_and_the_alert_is_accepted_once(
    factory: sessionmaker[Session], receiver: Receiver
) -> None:
    receiver.script = [500, "hang"]
    _route, alert_id = route_and_test_alert(factory, receiver.url, destination="slack")

    row = deliver_until_settled(factory, alert_id)

    assert (row.status, row.attempts) == ("delivered", 3)
    assert log_of(factory, alert_id) == [("retry", 500), ("retry", None), ("delivered", 200)]
    assert [r.answered for r in receiver.received] == [500, 0, 200]
    assert {r.headers["Idempotency-Key"] for r in receiver.received} == {str(alert_id)}
    message = receiver.accepted()[0].json()
    assert message["text"].endswith("Test alert from OptiInfra to on-call")  # Slack's format
    assert message["blocks"][0]["type"] == "section"
    assert "OptiInfra-Signature" not in receiver.received[0].headers


def test_after_the_last_attempt_it_fails_and_a_person_can_redeliver_it(
    factory: sessionmaker[Session], receiver: Receiver
) -> None:
    receiver.script = [503, 503, 503, 503]
    _, alert_id = route_and_test_alert(factory, receiver.url, destination="teams")

    row = deliver_until_settled(factory, alert_id)
    assert (row.status, row.attempts, row.last_error) == (
        "failed",
        4,
        f"{render.mask_url(receiver.url)} answered HTTP 503.",
    )
    assert delivery.recover(factory) == 0  # failed is final until a person says otherwise

    with unit_of_work(factory) as session:
        assert service.redeliver(session, OPERATOR, alert_id).status == "pending"
    row = deliver_until_settled(factory, alert_id)

    assert (row.status, row.attempts) == ("delivered", 5)
    assert [r.answered for r in receiver.received] == [503, 503, 503, 503, 200]
    card = receiver.accepted()[0].json()["attachments"][0]
    assert card["contentType"] == "application/vnd.microsoft.card.adaptive"


def test_redirects_are_not_followed_and_loopback_is_refused_unless_allowed(
    factory: sessionmaker[Session], receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    receiver.script = [302]
    _, redirected = route_and_test_alert(factory, receiver.url, destination="webhook")
    row = deliver_until_settled(factory, redirected)
    assert row.status == "failed"  # at once: retrying cannot change a redirect
    assert "redirects are not followed" in (row.last_error or "")

    _, refused = route_and_test_alert(factory, receiver.url, destination="webhook")
    monkeypatch.delenv(ALLOW_PRIVATE_ENDPOINTS_ENV)
    row = deliver_until_settled(factory, refused)
    assert row.status == "failed"
    assert "loopback" in (row.last_error or "")
    assert len(receiver.received) == 1  # only the redirect's


class _SmtpHandler(socketserver.StreamRequestHandler):
    """Just enough SMTP for one message: what a real mail server says, and the message kept."""

    received: ClassVar[list[bytes]] = []

    def handle(self) -> None:
        self.wfile.write(b"220 test ESMTP\r\n")
        while line := self.rfile.readline():
            verb = line[:4].upper()
            if verb in {b"EHLO", b"HELO"}:
                self.wfile.write(b"250 test\r\n")
            elif verb == b"DATA":
                self.wfile.write(b"354 go ahead\r\n")
                data = b""
                while (chunk := self.rfile.readline()) != b".\r\n":
                    data += chunk
                self.received.append(data)
                self.wfile.write(b"250 queued\r\n")
            elif verb == b"QUIT":
                self.wfile.write(b"221 bye\r\n")
                return
            else:
                self.wfile.write(b"250 ok\r\n")


def test_an_email_route_is_delivered_over_the_operators_smtp_server(
    factory: sessionmaker[Session], monkeypatch: pytest.MonkeyPatch
) -> None:
    with socketserver.ThreadingTCPServer(("127.0.0.1", 0), _SmtpHandler) as server:
        threading.Thread(target=server.serve_forever, daemon=True).start()
        monkeypatch.setenv("OPTIINFRA_SMTP_HOST", "127.0.0.1")
        monkeypatch.setenv("OPTIINFRA_SMTP_PORT", str(server.server_address[1]))
        monkeypatch.setenv("OPTIINFRA_SMTP_SECURITY", "none")
        monkeypatch.setenv("OPTIINFRA_SMTP_FROM", "alerts@optiinfra.example")
        with unit_of_work(factory) as session:
            customer = make_customer(session)
            payload = alert_schemas.AlertRouteCreate(
                customer_id=customer.id, name="ops", destination="email", email_to="oncall@tenant.example"
            )
            route = service.create_route(session, OPERATOR, payload)
            alert_id = service.send_test(session, OPERATOR, route.id).id
        assert route.signing_secret is None

        assert deliver_until_settled(factory, alert_id).status == "delivered"
        server.shutdown()

    [message] = _SmtpHandler.received
    assert b"To: oncall@tenant.example" in message
    assert b"Subject: [OptiInfra] Test alert from OptiInfra to ops" in message
    assert f"Message-ID: <{alert_id}@optiinfra>".encode() in message
