"""Values and journal helpers shared by the harness's fixtures and tests.
The tests import them from here, not from conftest.py, which pytest loads
under a module name of its own."""

import time
from collections.abc import Callable
from typing import Any

from garnet_local.testing import LocalGarnet
from tests.systemd.machine import Machine

UNIT = "jibril.service"
# A first start's lines, as the product page shows them. Inside nspawn the
# runtime environment is a container.
FIRST_START_LINES = [
    "INFO: detected runtime environment: container engine=systemd-nspawn",
    "INFO: agent registration complete",
    "INFO: agent kind: vanilla",
    "INFO: token stored at: /var/lib/jibril/agent.token",
]
WAIT_SECONDS = 60.0

PROJECT_TOKEN = "harness-project-token"
CREDENTIAL_PROJECT_TOKEN = "harness-credential-token"

# Lines printed at the end of the run, by name (see conftest.py).
REPORT: dict[str, str] = {}


def cursor(machine: Machine) -> str:
    """Return the journal's position now, to read only what comes after."""
    output = machine.run("journalctl", "--lines=0", "--show-cursor").stdout
    return output.split("-- cursor: ", 1)[1].strip()


def entries(machine: Machine, after: str) -> list[dict[str, Any]]:
    """Return the entries of jibril.service and of systemd about it since
    ``after``. The unit is matched here, not by journalctl: systemd 252
    skips the first match after a cursor (fixed in 255)."""
    return [
        entry
        for entry in machine.journal(f"--after-cursor={after}")
        if UNIT in (entry.get("_SYSTEMD_UNIT"), entry.get("UNIT"))
    ]


def messages(machine: Machine, after: str) -> list[str]:
    return [str(entry["MESSAGE"]) for entry in entries(machine, after)]


def wait_for_message(machine: Machine, after: str, text: str) -> str:
    deadline = time.monotonic() + WAIT_SECONDS
    while time.monotonic() < deadline:
        for message in messages(machine, after):
            if text in message:
                return message
        time.sleep(0.2)
    raise AssertionError(f"no journal line with {text!r}: {messages(machine, after)}")


def wait_until(check: Callable[[], bool], description: str) -> None:
    deadline = time.monotonic() + WAIT_SECONDS
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting until {description}")


def registrations(garnet: LocalGarnet) -> int:
    return sum(
        1
        for request in garnet.requests()
        if request["path"] == "/api/v1/agents" and request["status"] == 201
    )
