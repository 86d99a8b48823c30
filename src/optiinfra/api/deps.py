"""Request dependencies: the unit of work and the authenticated caller."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends, Query, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy import text
from sqlalchemy.orm import Session

from optiinfra.api.forwarded import TrustedProxies
from optiinfra.api.pagination import DEFAULT_LIMIT, MAX_LIMIT
from optiinfra.auth.limiter import AuthFailureLimiter, attempt_buckets
from optiinfra.auth.principal import Principal
from optiinfra.auth.service import authenticate
from optiinfra.errors import UnauthorizedError

_LOCK_TIMEOUT = text("SELECT set_config('lock_timeout', :value, true)")


def apply_lock_timeout(session: Session, milliseconds: int) -> None:
    """Within the session's transaction, a statement waiting longer than this for a row lock fails (409, retry)."""
    session.execute(_LOCK_TIMEOUT, {"value": f"{milliseconds}ms"})


def _session(request: Request) -> Iterator[Session]:
    """One transaction per request, committed before the response is sent, rolled back on any error.

    A statement that waits for a row lock longer than the app's lock time-out fails (409 `conflict`, retry), so a
    request never holds its connection and admission slot for long behind another transaction."""
    with request.app.state.session_factory() as session, session.begin():
        apply_lock_timeout(session, request.app.state.lock_timeout_ms)
        yield session


SessionDep = Annotated[Session, Depends(_session, scope="function")]

_bearer = HTTPBearer(auto_error=False, description="An operator, customer or agent API key.")


def _principal(
    request: Request,
    session: SessionDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Principal:
    key = credentials.credentials if credentials is not None else None
    try:
        principal = authenticate(session, key, request.app.state.operator_key_digest)
    except UnauthorizedError:
        # Only failures are counted, and only a failure is ever refused with 429: a valid key always gets in.
        limiter: AuthFailureLimiter = request.app.state.auth_limiter
        proxies: TrustedProxies = request.app.state.trusted_proxies
        limiter.refuse_failure(attempt_buckets(proxies.client_address(request), key))
        raise
    request.state.principal = principal
    return principal


PrincipalDep = Annotated[Principal, Depends(_principal)]
CursorQuery = Annotated[str | None, Query(max_length=200, description="next_cursor of the previous page")]
LimitQuery = Annotated[int, Query(ge=1, le=MAX_LIMIT)]
DEFAULT_PAGE_SIZE = DEFAULT_LIMIT
