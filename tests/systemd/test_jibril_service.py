"""jibril.service under a real systemd: each test does what an operator
does at a root shell (systemctl, journalctl, editing /etc/default/jibril)
and checks what they would see.

The tests share one booted machine and run in file order; each one starts
from the state it sets up itself.
"""

import re
import time
from collections.abc import Iterator
from typing import Any

import pytest

from garnet_local.testing import LocalGarnet
from garnet_local.tokens import fingerprint
from jibrild.journal import (
    AGENT_TOKEN_REJECTED,
    IDENTITY_RESET,
    REGISTRATION_COMPLETE,
    REREGISTRATION,
)
from tests.systemd.harness import (
    CREDENTIAL_PROJECT_TOKEN,
    FIRST_START_LINES,
    PROJECT_TOKEN,
    REPORT,
    cursor,
    entries,
    registrations,
    wait_for_message,
    wait_until,
)
from tests.systemd.machine import Machine

DROP_IN = "/etc/systemd/system/jibril.service.d/harness.conf"
EXPOSURE_LIMIT = 1.5
EXPOSURE = re.compile(r"Overall exposure level for jibril\.service: ([\d.]+) (\w+)")
# A WatchdogSec= short enough for the watchdog tests to be quick.
WATCHDOG_SECONDS = 3


@pytest.fixture(autouse=True)
def stopped_service(machine: Machine, garnet: LocalGarnet) -> Iterator[None]:
    """Start each test with the service stopped, its state folder empty,
    /etc/default/jibril pointing at the local API, and no drop-in."""
    reset(machine)
    configure(machine, garnet)
    garnet.clear_faults()
    yield
    garnet.clear_faults()
    machine.systemctl("stop", "jibril", check=False)


def reset(machine: Machine) -> None:
    machine.systemctl("stop", "jibril", check=False)
    machine.systemctl("reset-failed", "jibril", check=False)
    machine.shell(
        "rm -rf /var/lib/jibril /var/lib/private/jibril /etc/jibril/config.yaml "
        f"/etc/jibril/garnet-api-token {DROP_IN}"
    )
    machine.systemctl("daemon-reload")


def configure(machine: Machine, garnet: LocalGarnet, **variables: str) -> None:
    """Write /etc/default/jibril as the install steps do: 0600, root."""
    settings = {"GARNET_API_URL": garnet.url, "GARNET_API_TOKEN": PROJECT_TOKEN}
    settings.update(variables)
    text = "".join(f"{name}={value}\n" for name, value in settings.items() if value)
    machine.write("/etc/default/jibril", text, mode=0o600)


def drop_in(machine: Machine, *lines: str) -> None:
    machine.write(DROP_IN, "[Service]\n" + "\n".join(lines) + "\n")
    machine.systemctl("daemon-reload")


def wait_for_entry(machine: Machine, *matches: str) -> dict[str, Any]:
    """Return the one entry of the running daemon that matches, once
    journald has written it: it takes datagrams at its own pace."""
    invocation = machine.show("jibril", "InvocationID")
    found: list[dict[str, Any]] = []

    def written() -> bool:
        found[:] = machine.journal(f"_SYSTEMD_INVOCATION_ID={invocation}", *matches)
        return bool(found)

    wait_until(written, f"the journal has an entry with {matches}")
    assert 1 == len(found), found
    return found[0]


def heartbeats(garnet: LocalGarnet) -> int:
    return sum(
        1
        for request in garnet.requests()
        if request["path"] == "/api/v1/agent_heartbeat" and request["status"] == 200
    )


def main_pid(machine: Machine) -> str:
    return machine.show("jibril", "MainPID")


def test_start_returns_after_ready(machine: Machine, garnet: LocalGarnet) -> None:
    """`systemctl start` returns only once the daemon sent READY=1, which
    comes after the registration, and `systemctl status` shows STATUS=."""
    garnet.clear_requests()
    # A slow registration: start must wait for it, not return at the fork.
    garnet.add_fault(path="/api/v1/agents", method="POST", delay=2, times=1)

    machine.systemctl("start", "jibril")

    assert 1 == registrations(garnet)
    assert "active" == machine.show("jibril", "ActiveState")
    agent_id = garnet.agents()[-1]["id"]
    status = machine.systemctl("status", "jibril", check=False)
    assert f'Status: "registered as {agent_id}"' in status


def test_journal_has_first_start_lines(machine: Machine, garnet: LocalGarnet) -> None:
    """The four lines of a first start land in the journal with PRIORITY 6,
    and `journalctl -u jibril | grep` finds the registration."""
    after = cursor(machine)

    machine.systemctl("start", "jibril")

    wait_for_message(machine, after, FIRST_START_LINES[-1])
    found = machine.shell("journalctl -u jibril | grep 'agent registration complete'")
    assert "jibrild" in found
    lines = [e for e in entries(machine, after) if e["MESSAGE"] in FIRST_START_LINES]
    assert FIRST_START_LINES == [entry["MESSAGE"] for entry in lines]
    assert {"6"} == {entry["PRIORITY"] for entry in lines}


def test_registration_has_a_message_id(machine: Machine, garnet: LocalGarnet) -> None:
    """`journalctl -u jibril MESSAGE_ID=...` finds the registration, with
    the agent id and kind as fields of their own."""
    machine.systemctl("start", "jibril")

    entry = wait_for_entry(machine, f"MESSAGE_ID={REGISTRATION_COMPLETE}")
    found = machine.run(
        "journalctl", "-u", "jibril", f"MESSAGE_ID={REGISTRATION_COMPLETE}", "-o", "cat"
    ).stdout
    assert "INFO: agent registration complete" in found.splitlines()
    assert "INFO: agent registration complete" == entry["MESSAGE"]
    assert garnet.agents()[-1]["id"] == entry["JIBRIL_AGENT_ID"]
    assert "vanilla" == entry["JIBRIL_AGENT_KIND"]
    assert "jibril.service" == entry["_SYSTEMD_UNIT"]


def test_agent_token_file_modes(machine: Machine) -> None:
    """The agent token is a 0600 file in a 0700 folder, both owned by the
    service's dynamic user, not root."""
    machine.systemctl("start", "jibril")

    listing = machine.shell(
        "stat -c '%a %u %n' /var/lib/jibril/ /var/lib/jibril/agent.token"
    )
    daemon_uid = machine.shell(f"ps -o uid= -p {main_pid(machine)}").strip()

    assert "0" != daemon_uid
    assert [
        f"700 {daemon_uid} /var/lib/jibril/",
        f"600 {daemon_uid} /var/lib/jibril/agent.token",
    ] == listing.splitlines()


def test_restart_does_not_register_again(machine: Machine, garnet: LocalGarnet) -> None:
    """A restart uses the stored agent token."""
    machine.systemctl("start", "jibril")
    garnet.clear_requests()
    after = cursor(machine)

    machine.systemctl("restart", "jibril")

    assert 0 == registrations(garnet)
    wait_for_message(machine, after, "using stored agent token")


def test_removed_token_registers_again(machine: Machine, garnet: LocalGarnet) -> None:
    """The documented re-registration: remove the token file, restart."""
    machine.systemctl("start", "jibril")
    garnet.clear_requests()
    after = cursor(machine)

    old_id = garnet.agents()[-1]["id"]
    machine.shell("rm /var/lib/jibril/agent.token")
    machine.systemctl("restart", "jibril")

    assert 1 == registrations(garnet)
    wait_for_message(machine, after, "agent registration complete")
    again = wait_for_entry(machine, f"MESSAGE_ID={REREGISTRATION}")
    assert old_id == again["JIBRIL_PREVIOUS_AGENT_ID"]
    assert garnet.agents()[-1]["id"] == again["JIBRIL_AGENT_ID"]


def test_register_force_as_root(machine: Machine, garnet: LocalGarnet) -> None:
    """`jibrild register --force` at a root shell, with jibril stopped,
    leaves its files to the folder's owner, the service's dynamic user, and
    the next start uses the new identity without registering."""
    machine.systemctl("start", "jibril")
    old_id = garnet.agents()[-1]["id"]
    machine.systemctl("stop", "jibril")
    garnet.clear_requests()

    machine.run("jibrild", "register", "--force")
    owners = machine.shell("stat -L -c '%u' /var/lib/jibril/ /var/lib/jibril/*")
    new_id = garnet.agents()[-1]["id"]
    after = cursor(machine)
    machine.systemctl("start", "jibril")

    folder_owner, *file_owners = owners.split()
    assert "0" != folder_owner
    assert [folder_owner] * 3 == file_owners
    assert old_id != new_id
    line = wait_for_message(machine, after, "using stored agent token")
    assert f"agent_id={new_id}" in line
    assert 1 == registrations(garnet)


def test_reset_waits_for_stop(machine: Machine, garnet: LocalGarnet) -> None:
    """`jibrild reset --yes` exits 75 naming the daemon's PID while jibril
    runs; once jibril is stopped it removes the identity, and the next
    start registers again."""
    machine.systemctl("start", "jibril")
    pid = main_pid(machine)

    rejected = machine.run("jibrild", "reset", "--yes", check=False)
    machine.systemctl("stop", "jibril")
    removed = machine.run("jibrild", "reset", "--yes")
    garnet.clear_requests()
    machine.systemctl("start", "jibril")

    assert 75 == rejected.returncode
    assert f"another jibrild (PID {pid})" in rejected.stderr
    assert "removed /var/lib/jibril/agent.token" in removed.stdout
    assert 1 == registrations(garnet)


def test_new_api_url_applies_at_restart(
    machine: Machine, garnet: LocalGarnet, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """A new GARNET_API_URL in /etc/default/jibril takes effect at restart:
    the stored agent token belongs to the old API, so the daemon registers
    with the new one, and logs why in the journal."""
    machine.systemctl("start", "jibril")
    tokens = {PROJECT_TOKEN: "write"}
    with LocalGarnet(tmp_path_factory.mktemp("other"), project_tokens=tokens) as other:
        configure(machine, garnet, GARNET_API_URL=other.url)

        machine.systemctl("restart", "jibril")

        assert 1 == registrations(other)
        reset = wait_for_entry(machine, f"MESSAGE_ID={IDENTITY_RESET}")
        again = wait_for_entry(machine, f"MESSAGE_ID={REREGISTRATION}")
        second_id = other.agents()[-1]["id"]
    first_id = garnet.agents()[-1]["id"]
    assert "4" == reset["PRIORITY"]
    assert "stored agent token belongs to another API URL" == reset["JIBRIL_REASON"]
    assert first_id == reset["JIBRIL_PREVIOUS_AGENT_ID"]
    assert again["MESSAGE"].startswith("INFO: registered again")
    assert second_id == again["JIBRIL_AGENT_ID"]
    assert first_id == again["JIBRIL_PREVIOUS_AGENT_ID"]


def test_reload_applies_a_new_interval(machine: Machine, garnet: LocalGarnet) -> None:
    """`systemctl reload` applies a changed heartbeat interval in the same
    process: beats that were an hour apart come every second."""
    configure(machine, garnet, JIBRIL_HEARTBEAT_INTERVAL="3600")
    machine.systemctl("start", "jibril")
    pid = main_pid(machine)
    after = cursor(machine)

    configure(machine, garnet, JIBRIL_HEARTBEAT_INTERVAL="1")
    machine.systemctl("reload", "jibril")

    wait_for_message(machine, after, "settings reloaded")
    garnet.clear_requests()
    wait_until(lambda: heartbeats(garnet) >= 3, "three heartbeats arrive")
    assert pid == main_pid(machine)
    assert "0" == machine.show("jibril", "NRestarts")


def test_reload_reads_root_only_config(machine: Machine, garnet: LocalGarnet) -> None:
    """A 0600 root /etc/jibril/config.yaml, which the daemon's own user
    cannot read, is read at start and again at `systemctl reload`."""
    config = "/etc/jibril/config.yaml"
    machine.write(config, "run-time:\n  heartbeat-interval: 3600\n", mode=0o600)
    machine.systemctl("start", "jibril")
    pid = main_pid(machine)
    after = cursor(machine)

    machine.write(config, "run-time:\n  heartbeat-interval: 1\n", mode=0o600)
    machine.systemctl("reload", "jibril")

    reloaded = wait_for_message(machine, after, "settings reloaded")
    assert "heartbeat-interval" in reloaded
    garnet.clear_requests()
    wait_until(lambda: heartbeats(garnet) >= 3, "three heartbeats arrive")
    assert pid == main_pid(machine)


def test_unknown_variable_reported_once(machine: Machine, garnet: LocalGarnet) -> None:
    """A misspelt variable of /etc/default/jibril, which EnvironmentFile=
    also puts in the environment, is one warning with the file's line at
    start and one again at `systemctl reload`."""
    configure(machine, garnet, JIBRIL_HEARTBEAT="planted-unknown-value")
    machine.systemctl("start", "jibril")
    invocation = machine.show("jibril", "InvocationID")
    started = wait_for_entry(machine, "JIBRIL_VARIABLE=JIBRIL_HEARTBEAT")
    after = cursor(machine)

    machine.systemctl("reload", "jibril")

    wait_for_message(machine, after, "settings reloaded")
    warnings = machine.journal(
        f"_SYSTEMD_INVOCATION_ID={invocation}", "JIBRIL_VARIABLE=JIBRIL_HEARTBEAT"
    )
    assert started["MESSAGE"] == (
        "WARNING: unknown variable ignored variable=JIBRIL_HEARTBEAT "
        "origin=/etc/default/jibril:3 did_you_mean=JIBRIL_HEARTBEAT_INTERVAL"
    )
    assert "4" == started["PRIORITY"]
    assert 2 == len(warnings)
    assert "planted-unknown-value" not in "".join(str(e) for e in warnings)


def test_watchdog_restarts_a_stopped_daemon(machine: Machine) -> None:
    """A daemon frozen with SIGSTOP misses its pings and systemd restarts it."""
    drop_in(machine, f"WatchdogSec={WATCHDOG_SECONDS}s")
    machine.systemctl("start", "jibril")
    pid = main_pid(machine)
    after = cursor(machine)

    machine.systemctl("kill", "--kill-whom=main", "--signal=SIGSTOP", "jibril")

    wait_until(lambda: machine.show("jibril", "NRestarts") == "1", "a restart")
    wait_until(lambda: machine.show("jibril", "ActiveState") == "active", "active")
    assert pid != main_pid(machine)
    journal = entries(machine, after)
    timeouts = [e for e in journal if "Watchdog timeout" in e["MESSAGE"]]
    assert 1 == len(timeouts)


def test_watchdog_spares_a_daemon_waiting_on_the_api(
    machine: Machine, garnet: LocalGarnet
) -> None:
    """While the API stalls for longer than WatchdogSec, requests time out
    and are retried, the event loop keeps pinging, and systemd leaves the
    daemon alone. A request timeout longer than the watchdog allows is cut
    below half of WatchdogSec, with a warning."""
    drop_in(machine, f"WatchdogSec={WATCHDOG_SECONDS}s")
    after = cursor(machine)
    configure(machine, garnet, JIBRIL_HEARTBEAT_INTERVAL="1", GARNET_API_TIMEOUT="10")
    machine.systemctl("start", "jibril")
    pid = main_pid(machine)

    garnet.add_fault(path="/api/v1/agent_heartbeat", delay=30)
    wait_for_message(machine, after, "heartbeat failed")
    # The stall goes on for longer than the watchdog would wait.
    time.sleep(WATCHDOG_SECONDS + 2)
    garnet.clear_faults()
    wait_for_message(machine, after, "heartbeat recovered")

    assert pid == main_pid(machine)
    assert "0" == machine.show("jibril", "NRestarts")
    failed = [e for e in entries(machine, after) if "heartbeat failed" in e["MESSAGE"]]
    assert {"4"} == {entry["PRIORITY"] for entry in failed}
    cut = [e for e in entries(machine, after) if "request timeout cut" in e["MESSAGE"]]
    assert 1 == len(cut), [e["MESSAGE"] for e in entries(machine, after)]


def test_revoked_agent_registers_again(machine: Machine, garnet: LocalGarnet) -> None:
    """A revoked agent token is logged with its MESSAGE_ID, then the daemon
    registers again in the same process."""
    configure(machine, garnet, JIBRIL_HEARTBEAT_INTERVAL="1")
    machine.systemctl("start", "jibril")
    pid = main_pid(machine)
    revoked_id = garnet.agents()[-1]["id"]

    garnet.revoke(revoked_id)

    rejected = wait_for_entry(machine, f"MESSAGE_ID={AGENT_TOKEN_REJECTED}")
    again = wait_for_entry(machine, f"MESSAGE_ID={REREGISTRATION}")
    assert "4" == rejected["PRIORITY"]
    assert "401" == rejected["JIBRIL_STATUS"]
    assert revoked_id == rejected["JIBRIL_AGENT_ID"]
    assert revoked_id == again["JIBRIL_PREVIOUS_AGENT_ID"]
    assert garnet.agents()[-1]["id"] == again["JIBRIL_AGENT_ID"]
    assert pid == main_pid(machine)


def test_rejected_project_token_fails_start(
    machine: Machine, garnet: LocalGarnet
) -> None:
    """A wrong project token fails `systemctl start` with exit 77, an error
    at PRIORITY 3, and no restart loop."""
    configure(machine, garnet, GARNET_API_TOKEN="not-a-project-token")
    after = cursor(machine)

    result = machine.run("systemctl", "start", "jibril", check=False)

    assert 0 != result.returncode
    assert "77" == machine.show("jibril", "ExecMainStatus")
    assert "failed" == machine.show("jibril", "ActiveState")
    assert "0" == machine.show("jibril", "NRestarts")
    errors = [e for e in entries(machine, after) if e.get("PRIORITY") == "3"]
    assert any("project token rejected" in e["MESSAGE"] for e in errors), errors


def test_project_token_from_load_credential(
    machine: Machine, garnet: LocalGarnet
) -> None:
    """A project token handed over with LoadCredential= registers the agent
    when /etc/default/jibril has none."""
    machine.write("/etc/jibril/garnet-api-token", CREDENTIAL_PROJECT_TOKEN, mode=0o600)
    drop_in(machine, "LoadCredential=garnet-api-token:/etc/jibril/garnet-api-token")
    configure(machine, garnet, GARNET_API_TOKEN="")
    garnet.clear_requests()

    machine.systemctl("start", "jibril")

    [registration] = [r for r in garnet.requests() if r["path"] == "/api/v1/agents"]
    assert 201 == registration["status"]
    used = registration["credentials"]["X-Project-Token"]
    assert fingerprint(CREDENTIAL_PROJECT_TOKEN) == used


def test_project_token_from_root_only_file(
    machine: Machine, garnet: LocalGarnet
) -> None:
    """GARNET_API_TOKEN_FILE naming a 0600 root file works under the unit,
    whose own user cannot read that file."""
    machine.write("/etc/jibril/garnet-api-token", CREDENTIAL_PROJECT_TOKEN, mode=0o600)
    configure(
        machine,
        garnet,
        GARNET_API_TOKEN="",
        GARNET_API_TOKEN_FILE="/etc/jibril/garnet-api-token",
    )
    garnet.clear_requests()

    machine.systemctl("start", "jibril")

    [registration] = [r for r in garnet.requests() if r["path"] == "/api/v1/agents"]
    used = registration["credentials"]["X-Project-Token"]
    assert fingerprint(CREDENTIAL_PROJECT_TOKEN) == used


def test_reload_fails_on_unreadable_file(machine: Machine, garnet: LocalGarnet) -> None:
    """A settings file that cannot be copied fails `systemctl reload`, and
    the daemon runs on with its settings."""
    machine.systemctl("start", "jibril")
    pid = main_pid(machine)
    machine.shell("mkdir /etc/jibril/config.yaml")

    result = machine.run("systemctl", "reload", "jibril", check=False)

    assert 0 != result.returncode
    assert pid == main_pid(machine)
    assert "active" == machine.show("jibril", "ActiveState")
    log = machine.run("journalctl", "-u", "jibril", "-n", "20", "-o", "cat").stdout
    assert "cannot copy /etc/jibril/config.yaml: it is a directory" in log


def test_stop_is_prompt_and_clean(machine: Machine) -> None:
    """`systemctl stop` ends the daemon with exit 0 well within the stop
    timeout (set to 5 s here, so a slow stop fails as a timeout)."""
    drop_in(machine, "TimeoutStopSec=5s")
    machine.systemctl("start", "jibril")

    machine.systemctl("stop", "jibril")

    assert "success" == machine.show("jibril", "Result")
    assert "0" == machine.show("jibril", "ExecMainStatus")
    assert "inactive" == machine.show("jibril", "ActiveState")


def test_security_exposure(machine: Machine) -> None:
    """`systemd-analyze security` scores the shipped unit at 1.5 or lower."""
    output = machine.run(
        "systemd-analyze", "security", "--no-pager", "jibril.service"
    ).stdout

    match = EXPOSURE.search(output)
    assert match is not None, output
    REPORT["exposure"] = f"jibril.service exposure: {match[1]} {match[2]}"
    assert float(match[1]) <= EXPOSURE_LIMIT, output
