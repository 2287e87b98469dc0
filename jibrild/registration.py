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

# The project token and the registration body of one attempt.
RegistrationRequest = tuple[SecretStr, Mapping[str, object]]


async def wait_or_stop(stop: asyncio.Event, seconds: float) -> bool:
    """Sleep ``seconds`` unless ``stop`` is set first; return True if it was."""
    try:
        await asyncio.wait_for(stop.wait(), timeout=seconds)
    except TimeoutError:
        return False
    return True


def format_delay(seconds: float) -> str:
    """Return a delay for people: tenths below ten seconds, whole above."""
    return f"{seconds:.1f}s" if seconds < 10 else f"{seconds:.0f}s"


@dataclass
class Registrar:
    """Run registration attempts until one succeeds, one fails for good
    (400, 401, 403: raised), or the daemon stops (None).

    ``on_transient_failure`` gets the status text of each failed attempt;
    the daemon uses the first one to send READY=1, so a dead API does not
    hold up boot.
    """

    client: GarnetClient
    notifier: Notifier
    stop: asyncio.Event
    on_transient_failure: Callable[[str], None]
    backoff_factory: Callable[[], Backoff] = Backoff

    async def register(
        self, request: Callable[[], RegistrationRequest]
    ) -> Registration | None:
        """Register with the API, retrying transient failures.

        ``request`` is called for every attempt, so a reload that fixes the
        project token, or a network that came up after boot and so changed
        the host's address, is used by the next attempt.
        """
        log = get_logger()
        backoff = self.backoff_factory()
        attempt = 1
        while not self.stop.is_set():
            self.notifier.set_status(f"registering (attempt {attempt})")
            project_token, body = request()
            try:
                return await self.client.register(project_token, body)
            except TransientApiError as error:
                delay = backoff.next_delay(error.retry_after)
                log.warning(
                    "agent registration failed",
                    attempt=attempt,
                    error=str(error),
                    next_attempt_in=format_delay(delay),
                )
                self.on_transient_failure(
                    f"registration attempt {attempt} failed ({error}); "
                    f"next attempt in {format_delay(delay)}"
                )

            if await wait_or_stop(self.stop, delay):
                break
            attempt += 1

        return None
