"""Parts the benchmarks share: the local API as a subprocess, a notify
socket, and readings of a process's memory and CPU time from /proc."""

import os
import signal
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Iterable, Mapping
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
PYTHON = sys.executable
PROJECT_TOKEN = "bench-project-token"

# The import names of pyproject.toml's runtime dependencies (pydantic-settings,
# aiohttp, sdnotify, structlog, pyyaml), which make up the import floor.
RUNTIME_MODULES = ("aiohttp", "pydantic_settings", "sdnotify", "structlog", "yaml")

_START_TIMEOUT_SECONDS = 15.0
_CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
_PAGE_KB = os.sysconf("SC_PAGE_SIZE") / 1024


def median(values: Iterable[float]) -> float:
    """Return the median of ``values``."""
    return statistics.median(list(values))


def progress(message: str) -> None:
    """Print one progress line at once, so a slow step shows where it is."""
    print(f"  {message}", flush=True)


def clean_environ(**extra: str) -> dict[str, str]:
    """Return this process's environment without the variables that would
    change the daemon's settings, its notify target or its proxy."""
    prefixes = ("GARNET_", "JIBRIL_", "NOTIFY_SOCKET", "WATCHDOG_", "JOURNAL_STREAM")
    environ = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(prefixes) and "PROXY" not in name.upper()
    }
    environ.update(extra)
    return environ


def rss_mb(pid: int) -> float:
    """Return the resident set size of process ``pid`` in MiB."""
    fields = Path(f"/proc/{pid}/statm").read_text().split()
    return int(fields[1]) * _PAGE_KB / 1024


def cpu_seconds(pid: int) -> float:
    """Return the user plus system CPU time process ``pid`` has used."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    # The command name in brackets may hold spaces, so split after it.
    fields = stat.rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _CLOCK_TICKS


class LocalApi:
    """The local Garnet API (`python -m garnet_local`) on 127.0.0.1, in its
    own process so that its CPU time is not the benchmark's."""

    def __init__(self, state_dir: Path) -> None:
        self.state_dir = state_dir
        self.url = ""
        self._process: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> "LocalApi":
        url_file = self.state_dir.parent / f"{self.state_dir.name}.url"
        self._process = subprocess.Popen(
            [
                PYTHON,
                "-m",
                "garnet_local",
                "--host",
                "127.0.0.1",
                "--port",
                "0",
                "--state-dir",
                str(self.state_dir),
                "--url-file",
                str(url_file),
            ],
            cwd=REPO,
            env=clean_environ(GARNET_LOCAL_PROJECT_TOKEN=PROJECT_TOKEN),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            # One log line per request would fill a pipe that no one reads.
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + _START_TIMEOUT_SECONDS
        while time.monotonic() < deadline:
            if url_file.exists() and url_file.read_text():
                self.url = url_file.read_text().strip()
                return self
            if self._process.poll() is not None:
                break
            time.sleep(0.02)
        self.__exit__()
        raise RuntimeError(f"local Garnet API did not start in {self.state_dir}")

    def __exit__(self, *_exc: object) -> None:
        if self._process is not None and self._process.poll() is None:
            self._process.send_signal(signal.SIGTERM)
            try:
                self._process.wait(10)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
        self._process = None


class NotifySocket:
    """A datagram socket standing in for systemd's NOTIFY_SOCKET."""

    def __init__(self, folder: Path) -> None:
        self.path = folder / f"notify-{time.monotonic_ns()}.sock"
        self._socket = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self._socket.bind(str(self.path))

    def wait_for(self, text: str, timeout: float = 30.0) -> float:
        """Block until a message containing ``text`` arrives; return the
        perf_counter time of its arrival."""
        self._socket.settimeout(timeout)
        while True:
            message = self._socket.recv(4096).decode()
            if text in message:
                return time.perf_counter()

    def close(self) -> None:
        """Close and remove the socket."""
        self._socket.close()
        self.path.unlink(missing_ok=True)


def stop_process(process: "subprocess.Popen[bytes]", timeout: float = 10.0) -> None:
    """SIGTERM a process and wait for it; kill it if it does not exit."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def write_settings_files(folder: Path, lines: Mapping[str, str]) -> list[str]:
    """Write an empty env file and a config file with ``run-time:`` keys,
    and return the daemon options that select them, so that no file of the
    host takes part."""
    config = folder / "config.yaml"
    body = "".join(f"  {key}: {value}\n" for key, value in lines.items())
    config.write_text("run-time:\n" + body)
    env_file = folder / "jibril.env"
    env_file.write_text("")
    return ["--config", str(config), "--env-file", str(env_file)]
