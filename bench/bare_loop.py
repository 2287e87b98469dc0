"""The heartbeat baseline: a bare aiohttp loop sending the daemon's
heartbeat request, with the same headers, back to back until SIGTERM:
`python -m bench.bare_loop BASE_URL AGENT_TOKEN`."""

import asyncio
import signal
import sys

import aiohttp

from jibrild import __version__


async def beat(base_url: str, agent_token: str) -> None:
    """Send heartbeats one after another until SIGTERM."""
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    url = base_url.rstrip("/") + "/api/v1/agent_heartbeat"
    headers = {
        "User-Agent": f"jibrild/{__version__}",
        "Accept": "application/json",
        "X-Agent-Token": agent_token,
    }

    async with aiohttp.ClientSession() as session:
        while not stop.is_set():
            async with session.post(
                url, headers=headers, skip_auto_headers=("Content-Type",)
            ) as response:
                await response.read()
                if response.status != 200:
                    raise SystemExit(f"heartbeat failed: HTTP {response.status}")


if __name__ == "__main__":
    asyncio.run(beat(sys.argv[1], sys.argv[2]))
