"""A jibrild subprocess for tests: its log lines and its notify messages."""

import os
import queue
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

# Settings variables of the test runner's own environment must not leak
# into the daemon under test.
_PREFIXES = ("GARNET_", "JIBRIL_", "NOTIFY_SOCKET", "WATCHDOG_", "JOURNAL_STREAM")
_REPO = Path(__file__).resolve().parent.parent


def clean_environ(**extra: str) -> dict[str, str]:
    """Return the test process's environment without settings variables."""
    environ = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(_PREFIXES) and "PROXY" not in name.upper()
    }
    environ.update(extra)
    return environ


class DaemonProcess:
    """``python -m jibrild`` with a real notify socket and captured stderr."""

    def __init__(
        self,
        tmp_path: Path,
        args: list[str],
        environ: dict[str, str],
        command_prefix: tuple[str, ...] = (),
    ) -> None:
        self.lines: list[str] = []
        self._queue: queue.Queue[str] = queue.Queue()
        self.notify_path = tmp_path / f"notify-{time.monotonic_ns()}.sock"
        self.notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.notify.bind(str(self.notify_path))
        self.notify.settimeout(0.05)
        self.messages: list[str] = []

        environ = {**environ, "NOTIFY_SOCKET": str(self.notify_path)}
        self.environ = environ
        self.process = subprocess.Popen(
            [*command_prefix, sys.executable, "-m", "jibrild", *args],
            cwd=_REPO,
            env=environ,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self._queue.put(line.rstrip("\n"))

    def _drain(self) -> None:
        while True:
            try:
                self.lines.append(self._queue.get_nowait())
            except queue.Empty:
                break
        while self.notify.fileno() != -1:
            try:
                self.messages.append(self.notify.recv(4096).decode())
            except (TimeoutError, BlockingIOError):
                break

    def wait_for_line(self, text: str, timeout: float = 15.0) -> str:
        """Return the first line containing ``text``, waiting for it."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self._drain()
            for line in self.lines:
                if text in line:
                    return line
            if self.process.poll() is not None and self._queue.empty():
                self._drain()
                break
            time.sleep(0.05)
        raise AssertionError(f"no line with {text!r} in:\n" + "\n".join(self.lines))

    def wait_for_message(self, text: str, timeout: float = 15.0) -> str:
        """Return the first notify message containing ``text``."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self._drain()
            for message in self.messages:
                if text in message:
                    return message
            time.sleep(0.05)
        raise AssertionError(f"no notify message with {text!r}: {self.messages}")

    def pause(self, seconds: float) -> None:
        """Sleep while still collecting log lines and notify messages."""
        time.sleep(seconds)
        self._drain()

    def signal(self, number: int) -> None:
        """Send a signal to the daemon."""
        self.process.send_signal(number)

    def stop(self, timeout: float = 10.0) -> int:
        """SIGTERM the daemon and return its exit code."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        return self.wait(timeout)

    def wait(self, timeout: float = 15.0) -> int:
        """Wait for the daemon to exit and return its exit code."""
        code = self.process.wait(timeout)
        self._reader.join(timeout)
        self._drain()
        self.close()
        return code

    def close(self) -> None:
        """Kill the daemon if it still runs and close the pipes and socket."""
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        if self.process.stdout is not None:
            self._reader.join(5)
            self.process.stdout.close()
        self.notify.close()

    def output(self) -> str:
        """Return every line read so far."""
        self._drain()
        return "\n".join(self.lines)
