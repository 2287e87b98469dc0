"""The jibrild command's entry point, kept free of heavy imports."""

import os
import signal
import sys
from types import FrameType


def main() -> int:
    """Run the command line."""
    # A reload request (SIGHUP) during the imports below would otherwise
    # kill the process, since that is SIGHUP's default action. The daemon
    # installs its own handler once its event loop runs, and it reads the
    # settings after this point anyway.
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    stop_on_sigterm_as_init()

    from jibrild.cli import main as cli_main  # noqa: PLC0415

    return cli_main(sys.argv[1:])


def stop_on_sigterm_as_init() -> None:
    """Exit with 0 on SIGTERM when this process is PID 1, as in a container.

    The kernel drops a signal that PID 1 has no handler for, so a
    `docker stop` during the imports would be lost and the engine would
    kill the container after its timeout. The daemon replaces this handler
    once its event loop runs. Elsewhere SIGTERM's default action already
    ends the process, and systemd counts that as a clean stop.
    """
    if os.getpid() == 1:
        signal.signal(signal.SIGTERM, _exit_on_sigterm)


def _exit_on_sigterm(_number: int, _frame: FrameType | None) -> None:
    raise SystemExit(0)
