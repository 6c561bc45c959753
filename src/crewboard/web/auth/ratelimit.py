"""Failed-login rate limiting: after ``attempts`` failures within ``window_s``
for one client address or one email, further attempts get 429 with the
seconds to wait. Kept in memory: a restart forgives, which is fine for a
brake on password guessing."""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Callable


class LoginLimiter:
    def __init__(
        self,
        attempts: int = 5,
        window_s: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
        max_keys: int = 100_000,
    ) -> None:
        self.attempts = attempts
        self.window_s = window_s
        self.clock = clock
        self.max_keys = max_keys
        self._failures: dict[str, deque[float]] = {}

    def _recent(self, key: str, now: float) -> deque[float]:
        failures = self._failures.get(key)
        if failures is None:
            return deque()
        while failures and failures[0] <= now - self.window_s:
            failures.popleft()
        if not failures:
            del self._failures[key]
        return failures

    def retry_after_s(self, keys: list[str]) -> int:
        """Seconds the caller must wait, or 0 if they may try now."""
        now = self.clock()
        wait = 0.0
        for key in keys:
            failures = self._recent(key, now)
            if len(failures) >= self.attempts:
                wait = max(wait, failures[0] + self.window_s - now)
        return max(1, math.ceil(wait)) if wait > 0 else 0

    def failed(self, keys: list[str]) -> None:
        now = self.clock()
        if len(self._failures) >= self.max_keys:
            for key in list(self._failures):
                self._recent(key, now)
        for key in keys:
            self._failures.setdefault(key, deque()).append(now)

    def succeeded(self, keys: list[str]) -> None:
        for key in keys:
            self._failures.pop(key, None)
