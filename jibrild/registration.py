"""Registration: trade the project token for an agent token, retrying
transient failures for ever."""

import asyncio
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from pydantic import SecretStr

from jibrild.api import GarnetClient, Registration, TransientApiError
from jibrild.backoff import Backoff
from jibrild.logs import get_logger
from jibrild.notify import Notifier


async def wait_or_stop(stop: asyncio.Event, seconds: float) -> bool:
    """Sleep ``seconds`` unless ``stop`` is set first; return True if it was."""
    try:
        await asyncio.wait_for(stop.wait(), timeout=seconds)
    except TimeoutError:
        return False
    return True


@dataclass
class Registrar:
    """Run registration attempts until one succeeds, one fails for good
    (400, 401, 403: raised), or the daemon stops (None)."""

    client: GarnetClient
    notifier: Notifier
    stop: asyncio.Event
    backoff_factory: Callable[[], Backoff] = Backoff
    on_transient_failure: Callable[[], None] = lambda: None

    async def register(
        self, project_token: SecretStr, body: Mapping[str, object]
    ) -> Registration | None:
        """Register with the API, retrying transient failures."""
        log = get_logger()
        backoff = self.backoff_factory()
        attempt = 1
        while not self.stop.is_set():
            self.notifier.set_status(f"registering (attempt {attempt})")
            try:
                return await self.client.register(project_token, body)
            except TransientApiError as error:
                delay = backoff.next_delay(error.retry_after)
                log.warning(
                    "agent registration failed",
                    attempt=attempt,
                    error=str(error),
                    next_attempt_in=f"{delay:.1f}s",
                )
                self.notifier.set_status(
                    f"registration attempt {attempt} failed ({error}); "
                    f"next attempt in {delay:.0f}s"
                )
                self.on_transient_failure()

            if await wait_or_stop(self.stop, delay):
                break
            attempt += 1

        return None
