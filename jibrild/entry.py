"""The jibrild command's entry point, kept free of heavy imports."""

import signal
import sys


def main() -> int:
    """Run the command line."""
    # A reload request (SIGHUP) during the imports below would otherwise
    # kill the process, since that is SIGHUP's default action. The daemon
    # installs its own handler once its event loop runs, and it reads the
    # settings after this point anyway.
    signal.signal(signal.SIGHUP, signal.SIG_IGN)

    from jibrild.cli import main as cli_main  # noqa: PLC0415

    return cli_main(sys.argv[1:])
