"""Pace RunTask calls to this execution environment's share of the account's RunTask rate.

Fargate refuses RunTask beyond 20 calls per second (a bucket of 20): a launcher that calls faster gets
ThrottlingException, and a throttled launch comes back only after its message's visibility timeout, seconds
later. Each launcher execution environment therefore waits for a token before it calls: the stack gives each one
``rate / maximum concurrency`` of the account's rate, so all of them together stay inside the quota and a burst
of launches goes out at the quota's pace instead of in throttled waves.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable


class Pacer:
    """A token bucket shared by the threads of one execution environment; ``acquire`` waits for a token.

    Tokens are reserved under the lock and waited for outside it, so concurrent callers queue up one
    ``1 / rate`` apart without holding each other up.
    """

    def __init__(
        self,
        rate_per_second: float,
        *,
        burst: float | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if rate_per_second <= 0:
            raise ValueError(f"rate_per_second must be positive, got {rate_per_second}")
        self.rate = rate_per_second
        self.burst = max(1.0, burst if burst is not None else rate_per_second)
        self._tokens = self.burst
        self._at: float | None = None
        self._clock = clock
        self._sleep = sleep
        self._lock = threading.Lock()

    def reserve(self) -> float:
        """Take a token; return how many seconds the caller must wait before using it."""
        with self._lock:
            now = self._clock()
            if self._at is not None and now > self._at:
                self._tokens = min(self.burst, self._tokens + (now - self._at) * self.rate)
            self._at = now if self._at is None else max(self._at, now)
            self._tokens -= 1.0
            return 0.0 if self._tokens >= 0 else -self._tokens / self.rate

    def acquire(self, *, max_wait: float | None = None) -> float | None:
        """Wait for a token; return the seconds waited, or None (and no token taken) if that would exceed
        ``max_wait``: the caller should come back later rather than hold its Lambda that long."""
        wait = self.reserve()
        if max_wait is not None and wait > max_wait:
            self._give_back()
            return None
        if wait > 0:
            self._sleep(wait)
        return wait

    def _give_back(self) -> None:
        with self._lock:
            self._tokens += 1.0
