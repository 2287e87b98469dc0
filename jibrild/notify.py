"""Messages to the service manager through sd_notify(3)."""

import os
from collections.abc import Mapping

import sdnotify

from jibrild.logs import one_line


class Notifier:
    """Send READY, STATUS, WATCHDOG and STOPPING messages; does nothing when
    the process was not started by systemd with a notify socket."""

    def __init__(self) -> None:
        # sdnotify reads NOTIFY_SOCKET from os.environ itself.
        self.enabled = bool(os.environ.get("NOTIFY_SOCKET"))
        self.watchdog_interval = _watchdog_interval(os.environ)
        self.status = ""
        # The text last given, before masking: a heartbeat sets the same
        # status every time, and masking it again would cost each beat.
        self._status_given = ""
        self._notifier: sdnotify.SystemdNotifier | None = None
        if self.enabled:
            self._notifier = sdnotify.SystemdNotifier()
            if self._notifier.socket is not None:
                # A full receive queue must drop a message, not stall the loop.
                self._notifier.socket.setblocking(False)

    def send(self, message: str) -> None:
        """Send one raw notify message such as ``READY=1``, as UTF-8."""
        if self._notifier is not None:
            # sdnotify encodes as Latin-1 and drops the whole message, READY=1
            # with it, at a character Latin-1 lacks. The message is handed over
            # as the Latin-1 reading of its UTF-8 bytes, so those bytes go out.
            self._notifier.notify(message.encode("utf-8").decode("latin-1"))

    def ready(self, status: str) -> None:
        """Tell systemd start-up is finished, with a status line."""
        self._status_given = status
        self.status = one_line(status)
        self.send(f"READY=1\nSTATUS={self.status}")

    def set_status(self, status: str) -> None:
        """Show ``status`` in ``systemctl status``; repeats are not sent.

        The text is masked and kept on one line, because it may quote a
        server and a newline would start another notify assignment.
        """
        if status == self._status_given:
            return
        self._status_given = status
        status = one_line(status)
        if status != self.status:
            self.status = status
            self.send(f"STATUS={status}")

    def ping_watchdog(self) -> None:
        """Tell systemd the event loop is alive."""
        self.send("WATCHDOG=1")

    def reloading(self) -> None:
        """Tell systemd the settings are being reloaded."""
        self.send("RELOADING=1")

    def reloaded(self) -> None:
        """Tell systemd the reload is finished."""
        self.send("READY=1")

    def stopping(self, status: str = "stopping") -> None:
        """Tell systemd the daemon is shutting down, with a last status."""
        self._status_given = status
        self.status = one_line(status)
        self.send(f"STOPPING=1\nSTATUS={self.status}")

    def close(self) -> None:
        """Close the notify socket."""
        if self._notifier is not None and self._notifier.socket is not None:
            self._notifier.socket.close()
        self._notifier = None


def _watchdog_interval(environ: Mapping[str, str]) -> float | None:
    """Half of WATCHDOG_USEC in seconds, as sd_watchdog_enabled(3) advises,
    or None when the watchdog is off or meant for another process."""
    usec = environ.get("WATCHDOG_USEC", "")
    pid = environ.get("WATCHDOG_PID", "")
    if not usec.isdigit() or int(usec) == 0:
        return None
    if pid and pid != str(os.getpid()):
        return None
    return int(usec) / 2_000_000
