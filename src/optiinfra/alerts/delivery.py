"""Delivering the outbox: a worker job per alert, no transaction open across the call.

`deliver(factory, outbox_id)` is the job:

1. **Claim** (one short transaction): the row, if it is pending (or was claimed by a worker whose claim ran out),
   becomes `sending` with a fresh claim token, one more attempt and a claim deadline; the route's destination is
   read. Committed before any network traffic.
2. **Send**, outside any transaction: HTTP through `optiinfra.net.endpoints` (the URL and the address connected to
   are checked at every call; no loopback or private address unless `OPTIINFRA_ALLOW_PRIVATE_ENDPOINTS=1`; no
   redirect is followed; the answer's body is never recorded), or SMTP for e-mail.
3. **Record** (one short transaction): a delivery-log row (outcome, HTTP status, duration, our words for a failure)
   and the row's new state: `delivered` (final: never sent again), `pending` with the next attempt after an
   exponential back-off with jitter (a 5xx, 408, 429, time-out or connection failure, while attempts remain), or
   `failed` (attempts used up, or an answer that retrying cannot change: a redirect, another 4xx, a refused
   endpoint). A failed alert can be redelivered by hand.

`recover(factory)`, run by every worker every few seconds, gives back alerts whose worker died mid-attempt (the claim
deadline passed) and queues a job for any due alert that has none, so an alert committed with its event is delivered
even if its job, or the worker running it, is lost.
"""

from __future__ import annotations

import logging
import random
import smtplib
import ssl
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import httpcore
from sqlalchemy import select, text
from sqlalchemy.orm import Session, sessionmaker

from optiinfra.alerts import outbox, render
from optiinfra.alerts.settings import MAX_BACKOFF_SECONDS, DeliverySettings, delivery_settings, smtp_settings
from optiinfra.db.engine import unit_of_work
from optiinfra.errors import ConfigurationError
from optiinfra.metrics import counters
from optiinfra.models import AlertDelivery, AlertOutbox, AlertRoute
from optiinfra.net import endpoints

logger = logging.getLogger("optiinfra.alerts")
MAX_RESPONSE_BYTES = 64 * 1024
RETRYABLE_STATUS = frozenset({408, 425, 429})
_jitter = random.SystemRandom()


@dataclass(frozen=True)
class Claim:
    outbox_id: uuid.UUID
    token: str
    attempt: int
    destination: str
    url: str | None
    signing_secret: str | None
    email_to: str | None
    payload: dict[str, object]


@dataclass(frozen=True)
class Result:
    delivered: bool
    retryable: bool
    status_code: int | None
    error: str | None


def _now() -> datetime:
    return datetime.now(UTC)


def backoff_seconds(attempt: int, base: float) -> float:
    """The wait before attempt `attempt + 1`: base x 2^(attempt-1), capped at an hour, half of it random."""
    delay = min(MAX_BACKOFF_SECONDS, base * 2 ** max(0, attempt - 1))
    return float(delay / 2 + _jitter.uniform(0, delay / 2))


def _claim(session: Session, outbox_id: uuid.UUID, settings: DeliverySettings) -> Claim | None:
    now = _now()
    row = session.scalar(
        select(AlertOutbox)
        .where(AlertOutbox.id == outbox_id)
        .with_for_update(skip_locked=True)
        .execution_options(populate_existing=True)
    )
    if row is None:
        return None
    stale_claim = row.status == "sending" and row.claimed_until is not None and row.claimed_until < now
    if not (row.status == "pending" or stale_claim) or row.next_attempt_at > now + timedelta(seconds=1):
        return None  # delivered, given up, being sent, or not due yet (its own job comes at the right time)
    route = session.get(AlertRoute, row.route_id)
    if route is None:
        return None
    token = uuid.uuid4().hex
    row.status = "sending"
    row.attempts += 1
    row.claim_token = token
    row.claimed_until = now + timedelta(seconds=settings.claim_seconds)
    return Claim(
        outbox_id=row.id,
        token=token,
        attempt=row.attempts,
        destination=route.destination,
        url=route.url,
        signing_secret=route.signing_secret,
        email_to=route.email_to,
        payload=dict(row.payload),
    )


def _send_http(claim: Claim, settings: DeliverySettings) -> Result:
    assert claim.url is not None
    shown = render.mask_url(claim.url)
    message = render.render_http(
        claim.destination, str(claim.outbox_id), dict(claim.payload), claim.signing_secret, int(time.time())
    )
    try:
        response = endpoints.post(
            claim.url,
            message.content,
            headers=message.headers,
            timeout=settings.timeout_seconds,
            max_response_bytes=MAX_RESPONSE_BYTES,
        )
    except endpoints.UnsafeEndpointError as error:
        return Result(False, False, None, f"Not sent: {error}")
    except endpoints.ResponseTooLargeError as error:
        return Result(False, False, None, f"{shown} answered, but {error}.")
    except httpcore.TimeoutException as error:
        return Result(False, True, None, f"{type(error).__name__}: no answer within {settings.timeout_seconds:g} s.")
    except (httpcore.NetworkError, httpcore.ProtocolError) as error:
        return Result(False, True, None, f"{type(error).__name__}: the connection to {shown} failed.")
    status = response.status_code
    if 200 <= status < 300:
        return Result(True, False, status, None)
    if 300 <= status < 400:
        return Result(False, False, status, f"{shown} answered HTTP {status}, a redirect; redirects are not followed.")
    if status >= 500 or status in RETRYABLE_STATUS:
        return Result(False, True, status, f"{shown} answered HTTP {status}.")
    return Result(False, False, status, f"{shown} refused the alert: HTTP {status}.")


def _send_email(claim: Claim, settings: DeliverySettings) -> Result:
    assert claim.email_to is not None
    try:
        smtp = smtp_settings()
    except ConfigurationError as error:
        return Result(False, False, None, error.message)
    if smtp is None:
        return Result(False, False, None, "E-mail alerts are not set up: the operator sets OPTIINFRA_SMTP_HOST.")
    message = render.render_email(str(claim.outbox_id), dict(claim.payload), smtp.sender, claim.email_to)
    try:
        client: smtplib.SMTP
        if smtp.security == "ssl":
            client = smtplib.SMTP_SSL(
                smtp.host, smtp.port, timeout=settings.timeout_seconds, context=ssl.create_default_context()
            )
        else:
            client = smtplib.SMTP(smtp.host, smtp.port, timeout=settings.timeout_seconds)
        with client:
            if smtp.security == "starttls":
                client.starttls(context=ssl.create_default_context())
            if smtp.user:
                client.login(smtp.user, smtp.password or "")
            client.send_message(message)
    except smtplib.SMTPRecipientsRefused:
        return Result(False, False, None, f"The mail server refused the recipient {claim.email_to}.")
    except (smtplib.SMTPException, OSError) as error:
        return Result(False, True, None, f"{type(error).__name__}: the mail server {smtp.host} did not take it.")
    return Result(True, False, None, None)


def _record(session: Session, claim: Claim, result: Result, duration_ms: int, settings: DeliverySettings) -> str | None:
    row = session.scalar(
        select(AlertOutbox)
        .where(AlertOutbox.id == claim.outbox_id)
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    if row is None:
        return None  # the route was deleted meanwhile
    current = row.status == "sending" and row.claim_token == claim.token
    if result.delivered:
        outcome = "delivered"
    elif result.retryable and claim.attempt < row.max_attempts:
        outcome = "retry"
    else:
        outcome = "failed"
    session.add(
        AlertDelivery(
            outbox_id=row.id,
            attempt=claim.attempt,
            outcome=outcome,
            status_code=result.status_code,
            duration_ms=duration_ms,
            error=result.error,
        )
    )
    counters.add(session, "optiinfra_alert_deliveries", {"outcome": outcome}, customer_id=row.customer_id)
    if result.delivered and row.status in {"pending", "sending"}:
        row.status, row.delivered_at, row.last_error = "delivered", _now(), None
    elif not current:
        return outcome  # another worker took the alert over (this claim ran out): it decides what happens next
    elif outcome == "retry":
        at = _now() + timedelta(seconds=backoff_seconds(claim.attempt, settings.backoff_seconds))
        row.status, row.next_attempt_at, row.last_error = "pending", at, result.error
        outbox.enqueue(session, row.id, at)
    elif outcome == "failed":
        row.status, row.last_error = "failed", result.error
    row.claim_token = None
    row.claimed_until = None
    return outcome


def deliver(factory: sessionmaker[Session], outbox_id: uuid.UUID) -> str | None:
    """One delivery attempt of an alert (the worker job); returns its outcome, None if there was nothing to do."""
    settings = delivery_settings()
    with unit_of_work(factory) as session:
        claim = _claim(session, outbox_id, settings)
    if claim is None:
        return None
    started = time.monotonic()
    try:
        result = _send_email(claim, settings) if claim.destination == "email" else _send_http(claim, settings)
    except Exception as error:  # a fault of ours must not leave the alert claimed until the claim runs out
        logger.exception("alert %s: delivery failed unexpectedly", outbox_id)
        result = Result(False, True, None, f"Internal error: {type(error).__name__}.")
    duration_ms = int((time.monotonic() - started) * 1000)
    with unit_of_work(factory) as session:
        outcome = _record(session, claim, result, duration_ms, settings)
    logger.info("alert %s attempt %d: %s %s", outbox_id, claim.attempt, outcome, result.error or "")
    return outcome


_STALE_CLAIMS = text(
    "UPDATE alert_outbox SET status = 'pending', claim_token = NULL, claimed_until = NULL, updated_at = now() "
    "WHERE status = 'sending' AND claimed_until < now()"
)
# Due alerts without a queued job (a job of a killed worker may still show as 'doing': it is not waited for).
_ORPHANS = text(
    "SELECT o.id FROM alert_outbox AS o WHERE o.status = 'pending' AND o.next_attempt_at <= now() "
    "AND NOT EXISTS (SELECT 1 FROM procrastinate_jobs AS j WHERE j.queue_name = 'alerts' AND j.status = 'todo' "
    "AND j.args->>'outbox_id' = o.id::text) ORDER BY o.next_attempt_at LIMIT 500 FOR UPDATE OF o SKIP LOCKED"
)


def recover(factory: sessionmaker[Session]) -> int:
    """Give back alerts of dead workers and queue a job for every due alert without one; returns how many."""
    with unit_of_work(factory) as session:
        session.execute(_STALE_CLAIMS)
        orphans = [uuid.UUID(str(value)) for value in session.scalars(_ORPHANS)]
        for outbox_id in orphans:
            outbox.enqueue(session, outbox_id)
    if orphans:
        logger.warning("queued %d alert(s) whose delivery job was lost or whose worker died", len(orphans))
    return len(orphans)
