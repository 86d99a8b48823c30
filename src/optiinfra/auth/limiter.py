"""Throttling of failed authentication, per client address, so keys cannot be guessed at speed.

A client that failed `limit` times within the last `window` seconds is refused with 429 (and `Retry-After`) until
its oldest failure leaves the window; successful requests are never counted. The count lives in the server process
(several servers each keep their own).
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque

from optiinfra.errors import TooManyRequestsError


class AuthFailureLimiter:
    def __init__(self, limit: int, window: float = 60.0, max_clients: int = 100_000) -> None:
        self.limit = limit
        self.window = window
        self.max_clients = max_clients
        self._failures: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    def _recent(self, client: str, now: float) -> deque[float]:
        failures = self._failures.get(client)
        if failures is None:
            return deque()
        while failures and failures[0] <= now - self.window:
            failures.popleft()
        if not failures:
            del self._failures[client]
        return failures

    def check(self, client: str) -> None:
        """Refuse a client that has failed too often lately."""
        now = time.monotonic()
        with self._lock:
            failures = self._recent(client, now)
            if len(failures) >= self.limit:
                retry_after = max(1, math.ceil(failures[0] + self.window - now))
                raise TooManyRequestsError(
                    "Too many failed authentication attempts from this address; try again later.",
                    details={"retry_after_seconds": retry_after},
                )

    def record_failure(self, client: str) -> None:
        now = time.monotonic()
        with self._lock:
            if client not in self._failures and len(self._failures) >= self.max_clients:
                # Bounded memory: forget the client whose latest failure is oldest.
                oldest = min(self._failures, key=lambda key: self._failures[key][-1])
                del self._failures[oldest]
            self._failures.setdefault(client, deque()).append(now)
