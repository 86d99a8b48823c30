"""Dashboard sessions: the browser holds a random session id; the server keeps its digest, who it is, its CSRF
token and when it ends.

A session ends at sign-out (its row is deleted), `LIFETIME` after sign-in, after `IDLE_TIMEOUT` without use, and as
soon as the key it was opened with is no longer the caller's key (the customer's key was rotated or the customer
deleted; the operator key was changed). Rows of ended sessions are deleted when next presented, and all expired rows
whenever someone signs in.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete, or_, select
from sqlalchemy.orm import Session

from optiinfra.auth.keys import key_digest
from optiinfra.auth.principal import Principal, Role
from optiinfra.auth.service import customer_principal
from optiinfra.models import Customer, DashboardSession

LIFETIME = timedelta(hours=12)
IDLE_TIMEOUT = timedelta(hours=1)
# last_seen_at is written at most this often, so reading pages does not write a row per request.
TOUCH_INTERVAL = timedelta(minutes=1)


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class OpenedSession:
    token: str  # the cookie's value; shown to the browser only
    csrf_token: str


@dataclass(frozen=True)
class ActiveSession:
    principal: Principal
    csrf_token: str
    token_digest: str


def open_session(session: Session, principal: Principal, key: str, now: datetime) -> OpenedSession:
    """Start a session for a caller just authenticated with `key`."""
    session.execute(
        delete(DashboardSession).where(
            or_(DashboardSession.expires_at <= now, DashboardSession.last_seen_at <= now - IDLE_TIMEOUT)
        )
    )
    token = secrets.token_urlsafe(32)
    csrf_token = secrets.token_hex(32)
    session.add(
        DashboardSession(
            token_digest=_digest(token),
            key_digest=key_digest(key),
            customer_id=principal.customer_id if principal.role is Role.CUSTOMER else None,
            csrf_token=csrf_token,
            last_seen_at=now,
            expires_at=now + LIFETIME,
        )
    )
    session.flush()
    return OpenedSession(token=token, csrf_token=csrf_token)


def resolve(session: Session, token: str, operator_digest: str, now: datetime) -> ActiveSession | None:
    """The caller of a live session, or None when it has ended or never existed (the caller then `close`s it)."""
    row = session.scalar(select(DashboardSession).where(DashboardSession.token_digest == _digest(token)))
    if row is None:
        return None
    principal: Principal | None = None
    if now < row.expires_at and now < row.last_seen_at + IDLE_TIMEOUT:
        if row.customer_id is None:
            if hmac.compare_digest(row.key_digest, operator_digest):
                principal = Principal.operator()
        else:
            customer = session.get(Customer, row.customer_id)
            if customer is not None and hmac.compare_digest(row.key_digest, customer.api_key):
                principal = customer_principal(customer)
    if principal is None:
        return None
    if now - row.last_seen_at >= TOUCH_INTERVAL:
        row.last_seen_at = now
    return ActiveSession(principal=principal, csrf_token=row.csrf_token, token_digest=row.token_digest)


def close(session: Session, token: str) -> None:
    """Sign-out: the session ends now."""
    session.execute(delete(DashboardSession).where(DashboardSession.token_digest == _digest(token)))
