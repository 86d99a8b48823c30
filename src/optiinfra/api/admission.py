"""Admission control: at most `limit` requests are worked on at once; the rest are refused at once with 503.

The server's endpoints are synchronous: each runs in a worker thread and holds one pooled database connection for
its unit of work. If more requests are started than the pool has connections, the surplus threads wait for a
connection while requests that already hold one wait for a thread to finish on, and the server locks up (issue 12:
0 of 277 requests answered at 200 clients). So the number of requests in flight is bounded by what the pool can
serve, the thread limit is set above that bound, and a request beyond it gets `503` with `Retry-After` before it
touches a thread or a connection. `/healthz`, `/readyz` and static files touch neither and are never refused.

Requests with large bodies (ingest batches: seconds of CPU where a read takes milliseconds) get at most a share of
the slots, so a flood of batches leaves room for reads, decisions and heartbeats.
"""

from __future__ import annotations

import json
import math
import os
import time

from starlette.types import ASGIApp, Receive, Scope, Send

from optiinfra.errors import ConfigurationError

MAX_IN_FLIGHT_ENV = "OPTIINFRA_MAX_IN_FLIGHT"
# Measured with benchmarks/load.py (docs/reliability.md): on two cores more requests at once only make each slower
# and starve the event loop of the interpreter lock.
DEFAULT_MAX_IN_FLIGHT = 8

RETRY_AFTER_SECONDS = 1
MAX_RETRY_AFTER_SECONDS = 30
# Requests that need no pooled connection and no worker thread (answered on the event loop).
EXEMPT_PATHS = frozenset({"/healthz", "/readyz"})
EXEMPT_PREFIXES = ("/static/",)
# A body above this size (an ingest batch) makes a request heavy: it takes one of the fewer heavy slots.
HEAVY_BODY_BYTES = 64 * 1024


def configured_max_in_flight() -> int:
    """OPTIINFRA_MAX_IN_FLIGHT, or DEFAULT_MAX_IN_FLIGHT."""
    raw = os.environ.get(MAX_IN_FLIGHT_ENV, "").strip()
    try:
        return int(raw) if raw else DEFAULT_MAX_IN_FLIGHT
    except ValueError as error:
        raise ConfigurationError(
            f"{MAX_IN_FLIGHT_ENV} must be a whole number of requests, not {raw!r}.",
            fix=f"Set it like: export {MAX_IN_FLIGHT_ENV}={DEFAULT_MAX_IN_FLIGHT}",
        ) from error


def overloaded_body(limit: int, retry_after: int) -> bytes:
    return json.dumps(
        {
            "error": {
                "code": "overloaded",
                "message": f"The server is working on as many requests as it can ({limit}); retry after "
                f"{retry_after} s.",
                "details": {"retry_after_seconds": retry_after, "max_in_flight": limit},
            }
        }
    ).encode()


def _is_heavy(scope: Scope) -> bool:
    """A request with a large body (a batch to ingest) or one of unknown size (streamed)."""
    if scope.get("method") in {"GET", "HEAD", "OPTIONS", "DELETE"}:
        return False
    for name, value in scope.get("headers", []):
        if name == b"content-length":
            try:
                return int(value) > HEAVY_BODY_BYTES
            except ValueError:
                return True
    return True


class AdmissionControl:
    """Count requests in flight (on the event loop, so no lock is needed) and refuse those beyond `limit`; of
    them at most `heavy_limit` may carry a large body, so batches cannot take every slot from reads."""

    def __init__(self, app: ASGIApp, limit: int, heavy_limit: int | None = None) -> None:
        if limit < 1:
            raise ValueError("the admission limit must be at least 1")
        self.app = app
        self.limit = limit
        self.heavy_limit = max(1, min(limit, heavy_limit if heavy_limit is not None else limit // 2))
        self.in_flight = 0
        self.heavy_in_flight = 0
        self.refused = 0
        self._window_started = time.monotonic()
        self._refused_in_window = 0
        self._refusal_rate = 0.0

    def retry_after(self) -> int:
        """Seconds a refused client should wait: 1 while few are refused, more as refusals pile up, so that the
        refused come back at about twice the rate the slots free up rather than all at once (each retry that is
        refused again costs the server and the client work for nothing)."""
        now = time.monotonic()
        if now - self._window_started >= 1.0:
            self._refusal_rate = self._refused_in_window / (now - self._window_started)
            self._window_started, self._refused_in_window = now, 0
        self._refused_in_window += 1
        rate = max(self._refusal_rate, float(self._refused_in_window))
        return max(RETRY_AFTER_SECONDS, min(MAX_RETRY_AFTER_SECONDS, math.ceil(rate / (2 * self.limit))))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in EXEMPT_PATHS or scope["path"].startswith(EXEMPT_PREFIXES):
            await self.app(scope, receive, send)
            return
        heavy = _is_heavy(scope)
        if self.in_flight >= self.limit or (heavy and self.heavy_in_flight >= self.heavy_limit):
            self.refused += 1
            # Read (and drop) the body first: answering while the client is still sending makes the server close
            # the connection, and the client sees a reset instead of the 503.
            message = await receive()
            while message["type"] == "http.request" and message.get("more_body", False):
                message = await receive()
            retry_after = self.retry_after()
            body = overloaded_body(self.heavy_limit if heavy else self.limit, retry_after)
            await send(
                {
                    "type": "http.response.start",
                    "status": 503,
                    "headers": [
                        (b"content-type", b"application/json"),
                        (b"content-length", str(len(body)).encode()),
                        (b"retry-after", str(retry_after).encode()),
                    ],
                }
            )
            await send({"type": "http.response.body", "body": body})
            return
        self.in_flight += 1
        self.heavy_in_flight += heavy
        try:
            await self.app(scope, receive, send)
        finally:
            self.in_flight -= 1
            self.heavy_in_flight -= heavy
