"""The heartbeat loop: tell the API every interval that the agent is alive."""

import asyncio
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from pydantic import SecretStr

from jibrild.api import AgentTokenRejectedError, GarnetClient, TransientApiError
from jibrild.backoff import Backoff
from jibrild.logs import get_logger
from jibrild.notify import Notifier

# Each wait is the interval plus or minus this fraction, so agents started
# together drift apart instead of beating in step.
JITTER = 0.1


def jittered(interval: float, random_fraction: Callable[[], float]) -> float:
    """Return ``interval`` spread by up to JITTER either way."""
    return interval * (1 + JITTER * (2 * random_fraction() - 1))


@dataclass
class HeartbeatLoop:
    """Send heartbeats until ``stop`` is set.

    ``wake`` cuts the current wait short, so a reloaded interval takes
    effect at once. ``on_rejected`` handles a rejected agent token (it
    registers again or degrades) and returns the seconds to wait next.
    """

    client: GarnetClient
    notifier: Notifier
    stop: asyncio.Event
    wake: asyncio.Event
    interval: Callable[[], float]
    agent_token: Callable[[], SecretStr]
    healthy_status: Callable[[], str]
    on_rejected: Callable[[AgentTokenRejectedError], Awaitable[float]]
    random_fraction: Callable[[], float] = random.random
    beats: int = 0
    failures: int = field(default=0)

    async def run(self) -> None:
        """Beat until stopped."""
        backoff = Backoff(base=self.interval(), random_fraction=self.random_fraction)
        delay = jittered(self.interval(), self.random_fraction)
        while not await self._wait(delay):
            delay = await self._beat(backoff)

    async def _beat(self, backoff: Backoff) -> float:
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
                next_attempt_in=f"{delay:.1f}s",
            )
            self.notifier.set_status(
                f"heartbeat failing ({self.failures} attempts): {error}"
            )
            return delay
        except AgentTokenRejectedError as error:
            self.failures = 0
            return await self.on_rejected(error)

        self.beats += 1
        if self.failures:
            log.info("heartbeat recovered", failed_attempts=self.failures)
            self.failures = 0
            backoff.reset()
        log.debug("heartbeat sent", beats=self.beats)
        self.notifier.set_status(self.healthy_status())
        return jittered(self.interval(), self.random_fraction)

    async def _wait(self, seconds: float) -> bool:
        """Wait, restarting the wait when woken; return True on stop."""
        while not self.stop.is_set():
            stop = asyncio.ensure_future(self.stop.wait())
            wake = asyncio.ensure_future(self.wake.wait())
            done, pending = await asyncio.wait(
                (stop, wake), timeout=seconds, return_when=asyncio.FIRST_COMPLETED
            )
            for task in pending:
                task.cancel()
            if wake not in done:
                break
            self.wake.clear()
            seconds = jittered(self.interval(), self.random_fraction)

        return self.stop.is_set()
