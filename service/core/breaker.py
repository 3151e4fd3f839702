"""A consecutive-failure circuit breaker for the cache backend.

When Redis is down every call would wait for its timeout; after ``threshold`` failures
in a row the breaker opens and calls are skipped outright for ``cooldown_s``. Then one
trial call is let through (half-open): success closes the breaker, failure re-opens it.
Used only from the event loop, so it needs no lock.
"""

from __future__ import annotations

import time
from collections.abc import Callable


class CircuitBreaker:
    """Closed -> open after ``threshold`` consecutive failures -> half-open after cooldown."""

    def __init__(
        self,
        threshold: int,
        cooldown_s: float,
        clock: Callable[[], float] = time.monotonic,
        on_change: Callable[[bool], None] | None = None,
    ) -> None:
        if threshold < 1 or cooldown_s <= 0:
            raise ValueError("threshold must be >= 1 and cooldown_s > 0")
        self.threshold = threshold
        self.cooldown_s = cooldown_s
        self._clock = clock
        self._on_change = on_change
        self._failures = 0
        self._opened_at: float | None = None
        self._trial_in_flight = False

    @property
    def is_open(self) -> bool:
        """True while calls are being skipped (open and cooldown not over)."""
        return self._opened_at is not None and (
            self._trial_in_flight or self._clock() - self._opened_at < self.cooldown_s
        )

    def allow(self) -> bool:
        """May a call go to the backend now? Claims the single half-open trial if due."""
        if self._opened_at is None:
            return True
        if self._trial_in_flight or self._clock() - self._opened_at < self.cooldown_s:
            return False
        self._trial_in_flight = True
        return True

    def record_success(self) -> None:
        was_open = self._opened_at is not None
        self._failures = 0
        self._opened_at = None
        self._trial_in_flight = False
        if was_open and self._on_change:
            self._on_change(False)

    def record_failure(self) -> None:
        self._failures += 1
        if self._opened_at is not None:  # the half-open trial failed: wait another cooldown
            self._opened_at = self._clock()
            self._trial_in_flight = False
        elif self._failures >= self.threshold:
            self._opened_at = self._clock()
            if self._on_change:
                self._on_change(True)
