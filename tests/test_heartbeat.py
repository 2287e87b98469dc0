"""Tests of the heartbeat loop's waits, in-process against the local API."""

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest
from pydantic import SecretStr

from garnet_local.testing import LocalGarnet
from jibrild.api import AgentTokenRejectedError, GarnetClient
from jibrild.heartbeat import HeartbeatLoop, NextBeat, OnWake, jittered
from jibrild.notify import Notifier
from tests.samples import REGISTRATION_BODY


@pytest.fixture
def api(tmp_path: Path) -> Iterator[LocalGarnet]:
    """The local Garnet API."""
    with LocalGarnet(tmp_path / "api") as server:
        yield server


def _beats(api: LocalGarnet) -> int:
    return sum(r["path"] == "/api/v1/agent_heartbeat" for r in api.requests())


async def _run_loop(
    api: LocalGarnet,
    interval: list[float],
    on_rejected_wait: NextBeat,
    wake_after: float = 0.3,
    run_for: float = 1.2,
) -> tuple[int, int]:
    """Run a loop, wake it once, and return the heartbeats sent before and
    after the wake."""
    async with GarnetClient(api.url, 5.0, "jibrild-test") as client:
        registration = await client.register(
            SecretStr("test-project-token"), REGISTRATION_BODY
        )
        stop, wake = asyncio.Event(), asyncio.Event()

        async def rejected(_error: AgentTokenRejectedError) -> NextBeat:
            return on_rejected_wait

        loop = HeartbeatLoop(
            client=client,
            notifier=Notifier(),
            stop=stop,
            wake=wake,
            interval=lambda: interval[0],
            agent_token=lambda: registration.agent_token,
            healthy_status=lambda: "ok",
            on_rejected=rejected,
        )
        task = asyncio.create_task(loop.run())
        await asyncio.sleep(wake_after)
        before = await asyncio.to_thread(_beats, api)
        interval[0] = 0.1
        wake.set()
        await asyncio.sleep(run_for)
        after = await asyncio.to_thread(_beats, api)
        stop.set()
        await task
        return before, after - before


def test_jitter_stays_within_a_tenth() -> None:
    """Jittered waits stay within 10% of the interval."""
    assert 54.0 == jittered(60.0, lambda: 0.0)
    assert 66.0 == jittered(60.0, lambda: 1.0)


def test_wake_retimes_interval_wait(api: LocalGarnet) -> None:
    """A reload during a normal wait applies the new interval at once."""
    before, after = asyncio.run(_run_loop(api, [60.0], NextBeat(60.0)))

    assert 0 == before
    assert after >= 2


def test_wake_keeps_retry_after_wait(api: LocalGarnet) -> None:
    """A reload does not cut short a wait the server asked for."""
    api.add_fault(path="/api/v1/agent_heartbeat", status=503, retry_after="30", times=1)

    before, after = asyncio.run(_run_loop(api, [0.1], NextBeat(60.0), wake_after=0.5))

    assert 1 == before
    assert 0 == after


def test_wake_ends_degraded_wait(api: LocalGarnet) -> None:
    """A reload during a degraded wait sends the next heartbeat at once."""
    api.add_fault(path="/api/v1/agent_heartbeat", status=401, times=1)
    degraded = NextBeat(300.0, OnWake.BEAT)

    before, after = asyncio.run(_run_loop(api, [0.1], degraded, wake_after=0.5))

    assert 1 == before
    assert after >= 1
