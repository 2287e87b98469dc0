"""Heartbeats: the daemon's memory after 1,000 and 100,000 heartbeats, and
its CPU time per heartbeat against a bare aiohttp loop, pair by pair."""

import json
import subprocess
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from bench.common import (
    PROJECT_TOKEN,
    PYTHON,
    REPO,
    LocalApi,
    clean_environ,
    cpu_seconds,
    median,
    progress,
    rss_mb,
    stop_process,
    write_settings_files,
)
from bench.startup import floor_start

WARM_BEATS = 1_000
# CPU time is read from heartbeat WARM_BEATS to WARM_BEATS + CPU_BEATS, a
# window long enough to even out the machine's short swings in speed.
CPU_BEATS = 30_000
_POLL_SECONDS = 0.02
_STALL_SECONDS = 30.0

# An empty ProxyHandler, so that a proxy variable cannot route loopback
# requests elsewhere.
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


@dataclass
class BeatReading:
    """The process's CPU time and RSS when the API had counted ``beats``."""

    beats: int
    cpu_s: float
    rss_mb: float


class BeatCounter:
    """The heartbeat count of one agent, read from the local API."""

    def __init__(self, api_url: str, agent_id: str) -> None:
        self.url = api_url + "_local/agents"
        self.agent_id = agent_id

    def count(self) -> int:
        """Return the heartbeats the API has counted for the agent so far."""
        with _OPENER.open(self.url, timeout=10) as response:
            agents = json.loads(response.read())
        for agent in agents:
            if agent["id"] == self.agent_id:
                return int(agent["heartbeats"])
        raise LookupError(f"agent {self.agent_id} not found at {self.url}")


def follow(
    process: "subprocess.Popen[bytes]", counter: BeatCounter, marks: list[int]
) -> list[BeatReading]:
    """Read the process's CPU time and RSS as the API's count passes each
    of ``marks`` (counted from now), then stop the process."""
    start = counter.count()
    readings: list[BeatReading] = []
    last_change = time.monotonic()
    last = start
    try:
        for mark in marks:
            while (beats := counter.count() - start) < mark:
                if process.poll() is not None:
                    raise RuntimeError(f"process exited with {process.returncode}")
                if beats != last:
                    last, last_change = beats, time.monotonic()
                elif time.monotonic() - last_change > _STALL_SECONDS:
                    raise RuntimeError(f"no heartbeat for {_STALL_SECONDS:g} s")
                time.sleep(_POLL_SECONDS)
            readings.append(
                BeatReading(beats, cpu_seconds(process.pid), rss_mb(process.pid))
            )
    finally:
        stop_process(process)
    return readings


def cpu_per_beat(first: BeatReading, second: BeatReading) -> float:
    """Return the CPU seconds per heartbeat between two readings."""
    return (second.cpu_s - first.cpu_s) / (second.beats - first.beats)


def run_heartbeats(work: Path, rounds: int, long_beats: int) -> dict[str, float]:
    """Run ``rounds`` pairs of a bare loop and the daemon; the daemon runs
    to ``long_beats`` heartbeats for the memory growth."""
    work.mkdir(parents=True, exist_ok=True)
    agent_folder = work / "agent"
    options = write_settings_files(work, {})
    daemon = [
        PYTHON,
        "-m",
        "bench.fast_daemon",
        "0",
        *options,
        "--agent-token-path",
        str(agent_folder / "agent.token"),
    ]
    rss_ratios: list[float] = []
    growths: list[float] = []
    cpu_ratios: list[float] = []

    with LocalApi(work / "api") as api:
        environ = clean_environ(GARNET_API_URL=api.url, GARNET_API_TOKEN=PROJECT_TOKEN)
        agent_id, agent_token = _register(daemon, environ, agent_folder)
        counter = BeatCounter(api.url, agent_id)
        bare = [PYTHON, "-m", "bench.bare_loop", api.url, agent_token]

        for number in range(rounds):
            floor = floor_start(work)
            progress(f"round {number + 1}/{rounds}: bare aiohttp loop")
            base = follow(
                _spawn(bare, environ), counter, [WARM_BEATS, WARM_BEATS + CPU_BEATS]
            )
            progress(f"round {number + 1}/{rounds}: daemon to {long_beats} heartbeats")
            started = time.monotonic()
            beats = follow(
                _spawn(daemon, environ),
                counter,
                [WARM_BEATS, WARM_BEATS + CPU_BEATS, long_beats],
            )
            elapsed = time.monotonic() - started

            rss_ratios.append(beats[0].rss_mb / floor.rss_mb)
            growths.append(beats[2].rss_mb - beats[0].rss_mb)
            base_cpu = cpu_per_beat(*base)
            daemon_cpu = cpu_per_beat(beats[0], beats[1])
            cpu_ratios.append(daemon_cpu / base_cpu)
            progress(
                f"round {number + 1}/{rounds}: RSS {beats[0].rss_mb:.1f} MiB at "
                f"{beats[0].beats}, {beats[2].rss_mb:.1f} MiB at {beats[2].beats} "
                f"(floor {floor.rss_mb:.1f}); CPU per heartbeat "
                f"{daemon_cpu * 1e6:.0f} us, bare loop {base_cpu * 1e6:.0f} us; "
                f"{beats[2].beats / elapsed:.0f} heartbeats/s"
            )

    return {
        "rss_ratio": median(rss_ratios),
        "rss_growth_mb": median(growths),
        "heartbeat_cpu_ratio": median(cpu_ratios),
    }


def _spawn(command: list[str], environ: dict[str, str]) -> "subprocess.Popen[bytes]":
    return subprocess.Popen(
        command,
        cwd=REPO,
        env=environ,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def _register(
    daemon: list[str], environ: dict[str, str], agent_folder: Path
) -> tuple[str, str]:
    """Let the daemon register once; return its agent id and agent token."""
    process = _spawn(daemon, environ)
    record = agent_folder / "agent.json"
    deadline = time.monotonic() + 30
    try:
        while not record.exists():
            if time.monotonic() > deadline or process.poll() is not None:
                raise RuntimeError("the daemon did not register")
            time.sleep(0.05)
    finally:
        stop_process(process)
    agent_id = json.loads(record.read_text())["agent_id"]
    return agent_id, (agent_folder / "agent.token").read_text().strip()
