"""The heartbeat loop: tell the API every interval that the agent is alive."""

import asyncio
import enum
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Literal

from pydantic import SecretStr

from jibrild.api import AgentTokenRejectedError, GarnetClient, TransientApiError
from jibrild.backoff import Backoff
from jibrild.logs import get_logger
from jibrild.notify import Notifier
from jibrild.registration import format_delay

# Each wait is the interval plus or minus this fraction, so agents started
# together drift apart instead of beating in step.
JITTER = 0.1


def jittered(interval: float, random_fraction: Callable[[], float]) -> float:
    """Return ``interval`` spread by up to JITTER either way."""
    return interval * (1 + JITTER * (2 * random_fraction() - 1))


class OnWake(enum.Enum):
    """Effect of a reload (a wake-up) on the wait for the next heartbeat."""

    # A normal interval: wait the reloaded interval from the same start.
    RETIME = "retime"
    # A backoff or Retry-After: the server's pace wins over a reload.
    KEEP = "keep"
    # A degraded wait: the reload may have fixed the cause, so beat now.
    BEAT = "beat"


@dataclass(frozen=True)
class NextBeat:
    """When to send the next heartbeat, and what a reload does to that."""

    delay: float
    on_wake: OnWake = OnWake.RETIME


@dataclass
class HeartbeatLoop:
    """Send heartbeats until ``stop`` is set.

    ``wake`` is set on reload. ``on_rejected`` handles a rejected agent
    token (it registers again or degrades) and returns the next wait;
    ``on_success`` is called for every heartbeat the API accepted.
    """

    client: GarnetClient
    notifier: Notifier
    stop: asyncio.Event
    wake: asyncio.Event
    interval: Callable[[], float]
    agent_token: Callable[[], SecretStr]
    healthy_status: Callable[[], str]
    on_rejected: Callable[[AgentTokenRejectedError], Awaitable[NextBeat]]
    on_success: Callable[[], None] = lambda: None
    random_fraction: Callable[[], float] = random.random
    beats: int = field(default=0, init=False)
    failures: int = field(default=0, init=False)
    _stop_waiter: "asyncio.Task[Literal[True]] | None" = field(
        default=None, init=False, repr=False
    )
    _wake_waiter: "asyncio.Task[Literal[True]] | None" = field(
        default=None, init=False, repr=False
    )

    async def run(self) -> None:
        """Beat until stopped."""
        backoff = Backoff(base=self.interval(), random_fraction=self.random_fraction)
        next_beat = NextBeat(jittered(self.interval(), self.random_fraction))
        try:
            while not await self._wait(next_beat):
                next_beat = await self._beat(backoff)
        finally:
            for waiter in (self._stop_waiter, self._wake_waiter):
                if waiter is not None:
                    waiter.cancel()

    async def _beat(self, backoff: Backoff) -> NextBeat:
        log = get_logger()
        try:
            await self.client.heartbeat(self.agent_token())
        except TransientApiError as error:
            self.failures += 1
            delay = max(self.interval(), backoff.next_delay(error.retry_after))
            log.warning(
                "heartbeat failed",
                attempt=self.failures,
                error=str(error),
                next_attempt_in=format_delay(delay),
            )
            self.notifier.set_status(
                f"heartbeat failing: attempt {self.failures} failed ({error}); "
                f"next attempt in {format_delay(delay)}"
            )
            return NextBeat(delay, OnWake.KEEP)
        except AgentTokenRejectedError as error:
            self.failures = 0
            return await self.on_rejected(error)

        self.beats += 1
        if self.failures:
            log.info("heartbeat recovered", failed_attempts=self.failures)
            self.failures = 0
            backoff.reset()
        log.debug("heartbeat sent", beats=self.beats)
        self.on_success()
        self.notifier.set_status(self.healthy_status())
        return NextBeat(jittered(self.interval(), self.random_fraction))

    async def _wait(self, next_beat: NextBeat) -> bool:
        """Wait for the next heartbeat; return True when stopped instead."""
        loop = asyncio.get_running_loop()
        started = loop.time()
        deadline = started + next_beat.delay
        while not self.stop.is_set():
            woken = await self._wait_for_event(max(0.0, deadline - loop.time()))
            if not woken:
                return False
            if self.stop.is_set():
                break

            self.wake.clear()
            if next_beat.on_wake is OnWake.BEAT:
                return False
            if next_beat.on_wake is OnWake.RETIME:
                deadline = started + jittered(self.interval(), self.random_fraction)

        return True

    async def _wait_for_event(self, seconds: float) -> bool:
        """Wait until stop or wake is set, at most ``seconds``; return True
        if either was."""
        # A waiter lasts until its event is set, not one wait, so that a
        # heartbeat does not create and cancel two tasks.
        if self._stop_waiter is None:
            self._stop_waiter = asyncio.ensure_future(self.stop.wait())
        if self._wake_waiter is None or self._wake_waiter.done():
            self._wake_waiter = asyncio.ensure_future(self.wake.wait())
        done, _ = await asyncio.wait(
            (self._stop_waiter, self._wake_waiter),
            timeout=seconds,
            return_when=asyncio.FIRST_COMPLETED,
        )
        return bool(done)
