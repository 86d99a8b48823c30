"""Throttling of failed authentication, so keys cannot be guessed at speed and a flood of bad keys cannot lock
anyone out.

Only failures are counted, per client address and per key prefix (the key's first KEY_PREFIX_LENGTH characters:
its role prefix and a few characters of the secret). Within any `window` seconds, `limit` failures per address or
key prefix are answered 401 as usual; further failures are answered 429 with `Retry-After`. A valid key is never
refused: it is checked before any count is looked at, so clients sharing an address with an attacker (every client,
behind a reverse proxy that is not in OPTIINFRA_TRUSTED_PROXIES) keep working. The counts live in the server
process (several servers each keep their own) and are bounded in memory.
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque

from optiinfra.errors import TooManyRequestsError

KEY_PREFIX_LENGTH = 12


def attempt_buckets(address: str, key: str | None) -> list[str]:
    """What a failed attempt counts against: the client's address and, when a key was presented, its prefix."""
    buckets = [f"address:{address}"]
    if key:
        buckets.append(f"key:{key[:KEY_PREFIX_LENGTH]}")
    return buckets


class AuthFailureLimiter:
    def __init__(self, limit: int, window: float = 60.0, max_buckets: int = 100_000) -> None:
        self.limit = limit
        self.window = window
        self.max_buckets = max_buckets
        self._failures: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    def _recent(self, bucket: str, now: float) -> deque[float]:
        failures = self._failures.get(bucket)
        if failures is None:
            return deque()
        while failures and failures[0] <= now - self.window:
            failures.popleft()
        if not failures:
            del self._failures[bucket]
        return failures

    def retry_after(self, buckets: list[str]) -> int | None:
        """Seconds until no bucket holds more than `limit` recent failures, or None when none does now."""
        now = time.monotonic()
        waits = []
        with self._lock:
            for bucket in buckets:
                failures = self._recent(bucket, now)
                if len(failures) > self.limit:
                    waits.append(max(1, math.ceil(failures[-self.limit - 1] + self.window - now)))
        return max(waits) if waits else None

    def record_failure(self, buckets: list[str]) -> None:
        now = time.monotonic()
        with self._lock:
            for bucket in buckets:
                if bucket not in self._failures and len(self._failures) >= self.max_buckets:
                    # Bounded memory: forget the bucket whose latest failure is oldest.
                    oldest = min(self._failures, key=lambda key: self._failures[key][-1])
                    del self._failures[oldest]
                # Only the latest `limit` + 1 failures matter: the oldest of them says when the bucket is free again.
                self._failures.setdefault(bucket, deque(maxlen=self.limit + 1)).append(now)

    def refuse_failure(self, buckets: list[str]) -> None:
        """Count a failed attempt; raise 429 when a bucket now holds more than `limit` recent failures (the caller
        raises its 401 otherwise)."""
        self.record_failure(buckets)
        retry_after = self.retry_after(buckets)
        if retry_after is not None:
            raise TooManyRequestsError(
                "Too many failed authentication attempts from this address or with this key; try again later.",
                details={"retry_after_seconds": retry_after},
            )
