"""The entry point's signal set-up, before any daemon code runs."""

import os
import subprocess
import sys
import textwrap

import pytest

# Runs as PID 1 of a new PID namespace: installs the early handler, then
# sends itself SIGTERM. Without a handler the kernel drops that signal for
# PID 1, and the script would sleep on and exit 3.
AS_INIT = textwrap.dedent(
    """
    import os, signal, sys, time
    from jibrild.entry import stop_on_sigterm_as_init
    assert os.getpid() == 1, os.getpid()
    stop_on_sigterm_as_init()
    os.kill(1, signal.SIGTERM)
    time.sleep(30)
    sys.exit(3)
    """
)


def test_sigterm_stops_pid_1_before_the_daemon() -> None:
    """As PID 1 (a container), SIGTERM before the event loop exits 0."""
    if os.geteuid() != 0:
        pytest.skip("a new PID namespace needs root")

    result = subprocess.run(
        ["unshare", "--pid", "--fork", sys.executable, "-c", AS_INIT],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    assert 0 == result.returncode, result.stderr


def test_sigterm_untouched_outside_pid_1() -> None:
    """Outside PID 1 SIGTERM keeps its default action, which systemd
    counts as a clean stop."""
    script = (
        "import signal; from jibrild.entry import stop_on_sigterm_as_init; "
        "stop_on_sigterm_as_init(); "
        "print(signal.getsignal(signal.SIGTERM) is signal.SIG_DFL)"
    )

    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True
    )

    assert "True" == result.stdout.strip()
