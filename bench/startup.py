"""Start-up: the import floor, and the daemon's time to READY=1 with a
stored agent token and with a first registration, pair by pair."""

import compileall
import shutil
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from bench.common import (
    PROJECT_TOKEN,
    PYTHON,
    REPO,
    RUNTIME_MODULES,
    LocalApi,
    NotifySocket,
    clean_environ,
    median,
    progress,
    rss_mb,
    stop_process,
    write_settings_files,
)

# A bare interpreter that imports the runtime dependencies, sends READY=1 the
# way sd_notify does, and waits for its stdin to close.
FLOOR_CODE = f"""\
import {", ".join(RUNTIME_MODULES)}
import os, socket, sys
notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
notify.sendto(b"READY=1", os.environ["NOTIFY_SOCKET"])
sys.stdin.read()
"""

JIBRILD = str(Path(PYTHON).parent / "jibrild")


@dataclass(frozen=True)
class Start:
    """One process start: seconds from spawn to READY=1, and RSS then."""

    seconds: float
    rss_mb: float


def time_to_ready(command: list[str], environ: dict[str, str], folder: Path) -> Start:
    """Spawn ``command`` with a notify socket and time it to READY=1."""
    notify = NotifySocket(folder)
    started = time.perf_counter()
    process = subprocess.Popen(
        command,
        env={**environ, "NOTIFY_SOCKET": str(notify.path)},
        cwd=folder,
        stdin=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        ready = notify.wait_for("READY=1")
        rss = rss_mb(process.pid)
    finally:
        if process.stdin is not None:
            process.stdin.close()
        stop_process(process)
        notify.close()
    return Start(ready - started, rss)


def floor_start(folder: Path) -> Start:
    """Time the bare import of the runtime dependencies."""
    return time_to_ready([PYTHON, "-c", FLOOR_CODE], clean_environ(), folder)


def run_startup(work: Path, rounds: int) -> dict[str, float]:
    """Measure the floor and both start-ups ``rounds`` times, pair by pair."""
    work.mkdir(parents=True, exist_ok=True)
    # pip compiles an installed package to bytecode. A checkout gets its
    # bytecode at the first import, or never under PYTHONDONTWRITEBYTECODE,
    # so compile it here for the daemon to start as an installed one would.
    compileall.compile_dir(REPO / "jibrild", quiet=1)
    agent_folder = work / "agent"
    options = write_settings_files(work, {"heartbeat-interval": "60"})
    daemon = [
        JIBRILD,
        "run",
        *options,
        "--agent-token-path",
        str(agent_folder / "agent.token"),
    ]
    floors: list[Start] = []
    stored_ratios: list[float] = []
    register_ratios: list[float] = []

    with LocalApi(work / "api") as api:
        environ = clean_environ(GARNET_API_URL=api.url, GARNET_API_TOKEN=PROJECT_TOKEN)
        # Warm the page cache and the bytecode caches; not counted.
        floor_start(work)
        time_to_ready(daemon, environ, work)

        for number in range(rounds):
            # Alternate which of a pair starts first, so a trend in the
            # machine's load does not favour one side.
            floor, stored = _pair(
                number,
                lambda: floor_start(work),
                lambda: time_to_ready(daemon, environ, work),
            )
            floors.append(floor)
            stored_ratios.append(stored.seconds / floor.seconds)

            def register() -> Start:
                shutil.rmtree(agent_folder)
                return time_to_ready(daemon, environ, work)

            floor, registered = _pair(number, lambda: floor_start(work), register)
            floors.append(floor)
            register_ratios.append(registered.seconds / floor.seconds)
            progress(
                f"round {number + 1}/{rounds}: floor {floor.seconds * 1000:.0f} ms, "
                f"stored {stored.seconds * 1000:.0f} ms, "
                f"register {registered.seconds * 1000:.0f} ms"
            )

    return {
        "import_floor_s": median(start.seconds for start in floors),
        "import_floor_rss_mb": median(start.rss_mb for start in floors),
        "ready_stored_ratio": median(stored_ratios),
        "ready_register_ratio": median(register_ratios),
    }


def _pair(
    number: int, baseline: Callable[[], Start], measured: Callable[[], Start]
) -> tuple[Start, Start]:
    """Run a baseline and a measurement, the measurement first in odd rounds."""
    if number % 2:
        second = measured()
        return baseline(), second
    first = baseline()
    return first, measured()
