"""Retry delays: exponential backoff with full jitter, honouring Retry-After."""

import random
from collections.abc import Callable

_MAX_RETRY_AFTER = 3600.0


class Backoff:
    """Delays for one run of retries.

    The n-th delay is drawn uniformly from [0, min(cap, base * 2**(n-1))]
    ("full jitter"), so a fleet that failed at the same moment spreads its
    retries instead of returning in waves. A server's Retry-After is a
    floor, with up to a tenth more on top so that its clients spread too. A
    Retry-After longer than an hour is taken as an hour, in case the server
    is wrong. ``floor_fraction`` raises the bottom of the drawn range to
    that fraction of the ceiling, for waits that must not come out near
    zero.

    Once the ceiling has reached the cap, the bottom of the range is at
    least ``cap_floor_fraction`` of the cap. By then full jitter has spread
    the fleet, and the remaining waits of full jitter are twice as dense
    near zero as on average, so when a long outage ends the first retries
    would crowd in. With the default of 0.75 they arrive nearly evenly, as
    the fleet simulation of docs/performance.md shows.
    """

    def __init__(
        self,
        base: float = 1.0,
        cap: float = 300.0,
        random_fraction: Callable[[], float] = random.random,
        floor_fraction: float = 0.0,
        cap_floor_fraction: float = 0.75,
    ) -> None:
        self.base = base
        self.cap = cap
        self.attempt = 0
        self.floor_fraction = floor_fraction
        self.cap_floor_fraction = cap_floor_fraction
        self._random_fraction = random_fraction

    def next_delay(self, retry_after: float | None = None) -> float:
        """Count one more failed attempt and return the seconds to wait."""
        self.attempt += 1
        ceiling = min(self.cap, self.base * 2.0 ** min(self.attempt - 1, 32))
        bottom = self.floor_fraction
        if ceiling >= self.cap:
            bottom = max(bottom, self.cap_floor_fraction)
        delay = (bottom + (1 - bottom) * self._random_fraction()) * ceiling

        if retry_after is not None and retry_after > 0:
            floor = min(retry_after, _MAX_RETRY_AFTER)
            delay = max(delay, floor * (1 + 0.1 * self._random_fraction()))

        return delay

    def reset(self) -> None:
        """Start again from the first attempt after a success."""
        self.attempt = 0
