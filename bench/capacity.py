"""The rate the local API sustains: registrations per second from a few
concurrent clients, so that it is known not to limit the other figures."""

import asyncio
import time
from pathlib import Path

import aiohttp

from bench.common import PROJECT_TOKEN, LocalApi, median, progress

CONCURRENCY = 8
REGISTRATIONS = 400
_WARM_REGISTRATIONS = 20

_BODY = {
    "os": "linux",
    "arch": "amd64",
    "hostname": "bench-1",
    "version": "0.1.0",
    "ip": "192.0.2.10",
    "machine_id": "0123456789abcdef0123456789abcdef",
    "kind": "vanilla",
    "vanilla_context": {"job": "bench", "runner_os": "Linux"},
}


async def _register_many(url: str, count: int) -> float:
    """Send ``count`` registrations from CONCURRENCY clients; return the
    seconds they took."""
    endpoint = url + "api/v1/agents"
    headers = {"X-Project-Token": PROJECT_TOKEN}
    remaining = count

    async def client(session: aiohttp.ClientSession) -> None:
        nonlocal remaining
        while remaining > 0:
            remaining -= 1
            async with session.post(endpoint, json=_BODY, headers=headers) as response:
                await response.read()
                if response.status != 201:
                    raise RuntimeError(f"registration failed: HTTP {response.status}")

    async with aiohttp.ClientSession() as session:
        started = time.perf_counter()
        await asyncio.gather(*(client(session) for _ in range(CONCURRENCY)))
        return time.perf_counter() - started


def run_capacity(work: Path, rounds: int) -> dict[str, float]:
    """Measure registrations per second, each round on an empty state folder."""
    work.mkdir(parents=True, exist_ok=True)
    rates: list[float] = []
    for number in range(rounds):
        with LocalApi(work / f"api-{number}") as api:
            asyncio.run(_register_many(api.url, _WARM_REGISTRATIONS))
            seconds = asyncio.run(_register_many(api.url, REGISTRATIONS))
        rates.append(REGISTRATIONS / seconds)
        progress(f"round {number + 1}/{rounds}: {rates[-1]:.0f} registrations/s")
    return {"local_api_registrations_per_s": median(rates)}
