"""A simulation of a fleet registering while the API is down, run in virtual
time: each simulated agent is the daemon's own Registrar, with its Backoff,
on an event loop whose clock jumps to the next timer instead of sleeping.

Assumptions of the model: every agent starts within the first second (a
fleet-wide restart), a request to the API that is down fails at once (a
refused connection, no Retry-After), and the API that is back responds to
every registration at once, so its capacity plays no part in the figures; the
peak request rate it must then absorb is reported beside them."""

import asyncio
import math
import random
import selectors
from collections.abc import Mapping
from dataclasses import dataclass

from pydantic import SecretStr

from jibrild.api import GarnetClient, Registration, TransientApiError
from jibrild.logs import configure_logs
from jibrild.notify import Notifier
from jibrild.registration import Registrar

# Request rates are counted in windows of this many seconds.
RATE_WINDOW_SECONDS = 10.0
_START_SPREAD_SECONDS = 1.0


@dataclass(frozen=True)
class FleetResult:
    """The registration requests the API received once it was back."""

    agents: int
    outage_s: float
    recovery_s: float
    peak_to_mean: float
    peak_per_s: float
    mean_per_s: float
    attempts: int


class _VirtualClock:
    def __init__(self) -> None:
        self.now = 0.0


class _AdvancingSelector(selectors.SelectSelector):
    """A selector that never sleeps: a wait for ``timeout`` seconds moves
    the virtual clock forward by that much instead."""

    def __init__(self, clock: _VirtualClock) -> None:
        super().__init__()
        self._clock = clock

    def select(
        self, timeout: float | None = None
    ) -> list[tuple[selectors.SelectorKey, int]]:
        events = super().select(0)
        if events:
            return events
        if timeout is None:
            raise RuntimeError("simulation stalled: nothing is scheduled")
        self._clock.now += timeout
        return []


class VirtualTimeLoop(asyncio.SelectorEventLoop):
    """An event loop on a virtual clock that starts at 0."""

    def __init__(self) -> None:
        self._clock = _VirtualClock()
        super().__init__(_AdvancingSelector(self._clock))

    def time(self) -> float:
        """Return the virtual time in seconds."""
        return self._clock.now


class SimulatedApi(GarnetClient):
    """The Garnet API on the fleet's side: down until ``back_at``, then
    responding to every registration at once."""

    def __init__(self, back_at: float) -> None:
        super().__init__("https://api.garnet.invalid/", 10.0, "jibrild/simulated")
        self.back_at = back_at
        self.requests: list[float] = []

    async def register(
        self, project_token: SecretStr, body: Mapping[str, object]
    ) -> Registration:
        """Fail while the API is down, succeed once it is back."""
        now = asyncio.get_running_loop().time()
        self.requests.append(now)
        if now < self.back_at:
            raise TransientApiError("cannot connect to api.garnet.invalid:443")
        return Registration(f"agent-{len(self.requests)}", SecretStr("agent-token"))


async def _fleet(agents: int, api: SimulatedApi) -> list[float]:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    notifier = Notifier()
    request = (SecretStr("project-token"), {"kind": "vanilla"})
    registered: list[float] = []

    async def agent() -> None:
        await asyncio.sleep(random.random() * _START_SPREAD_SECONDS)
        registrar = Registrar(api, notifier, stop, on_transient_failure=_ignore)
        if await registrar.register(lambda: request) is not None:
            registered.append(loop.time())

    await asyncio.gather(*(agent() for _ in range(agents)))
    return registered


def _ignore(_status: str) -> None:
    pass


def simulate(agents: int, outage_s: float, seed: int) -> FleetResult:
    """Run the fleet through an outage of ``outage_s`` seconds from t=0."""
    # Failed attempts log warnings; a fleet's worth would flood the output.
    configure_logs("error")
    random.seed(seed)
    api = SimulatedApi(back_at=outage_s)
    loop = VirtualTimeLoop()
    try:
        registered = loop.run_until_complete(_fleet(agents, api))
    finally:
        loop.close()

    if len(registered) != agents:
        raise RuntimeError(f"{agents - len(registered)} agents never registered")
    done = max(registered)
    recovery = done - outage_s
    after = [when for when in api.requests if when >= outage_s]
    mean = len(after) / max(recovery, RATE_WINDOW_SECONDS)
    windows = max(1, math.floor(recovery / RATE_WINDOW_SECONDS))
    counts = [0] * windows
    for when in after:
        index = int((when - outage_s) / RATE_WINDOW_SECONDS)
        if index < windows:
            counts[index] += 1
    peak = max(counts) / RATE_WINDOW_SECONDS
    return FleetResult(
        agents=agents,
        outage_s=outage_s,
        recovery_s=recovery,
        peak_to_mean=peak / mean,
        peak_per_s=peak,
        mean_per_s=mean,
        attempts=len(api.requests),
    )
