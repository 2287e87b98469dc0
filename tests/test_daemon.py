"""End-to-end tests: the daemon as a subprocess against the local API."""

import ipaddress
import os
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from garnet_local.testing import LocalGarnet
from jibrild import __version__
from jibrild.environment import detect_runtime_environment
from jibrild.hostfacts import read_host_facts
from tests.agent import PROJECT_TOKEN, Agent, registrations, wait_for
from tests.daemon_process import DaemonProcess, clean_environ

FIRST_START_LINES = [
    "INFO: detected runtime environment: {environment}",
    "INFO: agent registration complete",
    "INFO: agent kind: {kind}",
    "INFO: token stored at: {path}",
]


def _expected_first_start_lines(token_path: Path) -> list[str]:
    facts = read_host_facts()
    runtime = detect_runtime_environment(
        Path("/"), clean_environ(), hostname=facts.hostname, cluster_name=None, job=None
    )
    first = FIRST_START_LINES[0].format(environment=runtime.name)
    if runtime.engine:
        first += f" engine={runtime.engine}"
    return [
        first,
        FIRST_START_LINES[1],
        FIRST_START_LINES[2].format(kind=runtime.agent_kind),
        FIRST_START_LINES[3].format(path=token_path),
    ]


def test_first_start_logs_four_lines(agent: Agent) -> None:
    """A first start registers and prints the four lines in order."""
    daemon = agent.start()

    daemon.wait_for_line("token stored at:")
    code = daemon.stop()

    expected = _expected_first_start_lines(agent.token_path)
    logged = [line for line in daemon.lines if line in expected]
    assert expected == logged
    assert 0 == code


def test_first_start_stores_token_privately(agent: Agent) -> None:
    """The agent token lands in a 0600 file inside a 0700 folder."""
    daemon = agent.start()
    daemon.wait_for_line("token stored at:")
    daemon.stop()

    assert 0o600 == stat.S_IMODE(agent.token_path.stat().st_mode)
    assert 0o700 == stat.S_IMODE(agent.token_path.parent.stat().st_mode)
    assert 3 == len(agent.token_path.read_text().strip().split("."))


def test_second_start_uses_stored_token(agent: Agent, api: LocalGarnet) -> None:
    """A restart uses the stored agent token and does not register again."""
    agent.register_and_stop()

    second = agent.start(project_token=None)
    line = second.wait_for_line("using stored agent token")
    code = second.stop()

    assert f"path={agent.token_path}" in line
    assert "INFO: detected runtime environment: " in second.output()
    assert "agent registration complete" not in second.output()
    assert 1 == len(registrations(api))
    assert 0 == code


def test_ready_after_registration(agent: Agent, api: LocalGarnet) -> None:
    """READY=1 is sent once the agent token is held, with the agent id in
    STATUS=, and STOPPING=1 on exit."""
    daemon = agent.start()

    ready = daemon.wait_for_message("READY=1")
    daemon.stop()

    agent_id = api.agents()[0]["id"]
    assert f"READY=1\nSTATUS=registered as {agent_id}" == ready
    assert daemon.wait_for_message("STOPPING=1")


def test_ready_with_stored_token(agent: Agent, api: LocalGarnet) -> None:
    """A start with a stored agent token is ready with the stored agent id."""
    agent.register_and_stop()

    second = agent.start(project_token=None)
    ready = second.wait_for_message("READY=1")
    second.stop()

    agent_id = api.agents()[0]["id"]
    assert f"READY=1\nSTATUS=registered as {agent_id}" == ready


def test_registration_body_matches_contract(agent: Agent, api: LocalGarnet) -> None:
    """The body sent has exactly the contract's fields for this host."""
    daemon = agent.start()
    daemon.wait_for_line("token stored at:")
    daemon.stop()

    [request] = registrations(api)
    body = request["body"]
    assert isinstance(body, dict)
    kind = body["kind"]
    required = {"os", "arch", "hostname", "version", "ip", "machine_id", "kind"}
    assert required | {f"{kind}_context"} == set(body)
    assert "linux" == body["os"]
    assert __version__ == body["version"]
    assert ipaddress.ip_address(body["ip"])
    assert ["X-Project-Token"] == list(request["credentials"])


def test_heartbeats_use_agent_token(agent: Agent, api: LocalGarnet) -> None:
    """Heartbeats go out every interval with X-Agent-Token and no body."""
    agent.config.write_text("run-time:\n  heartbeat-interval: 1\n")
    daemon = agent.start()
    daemon.wait_for_line("token stored at:")

    beats = [r for r in _wait_heartbeats(api, daemon, 3)]
    daemon.stop()

    assert all(["X-Agent-Token"] == list(r["credentials"]) for r in beats)
    assert all(r["body"] is None for r in beats)


def _wait_heartbeats(
    api: LocalGarnet, daemon: DaemonProcess, count: int
) -> list[dict[str, object]]:
    for _ in range(100):
        beats = [r for r in api.requests() if r["path"] == "/api/v1/agent_heartbeat"]
        if len(beats) >= count:
            return beats
        daemon.pause(0.1)
    raise AssertionError(f"fewer than {count} heartbeats:\n{daemon.output()}")


@pytest.mark.fault(
    case=4,
    behaviour="Heartbeat 401 (revoked) or 404 (deleted): the daemon registers again "
    "with the project token and stores the new agent token.",
)
@pytest.mark.parametrize(("action", "status"), [("revoke", 401), ("delete", 404)])
def test_rejected_agent_token_registers_again(
    agent: Agent, api: LocalGarnet, action: str, status: int
) -> None:
    """A revoked or deleted agent registers again with the project token."""
    agent.config.write_text("run-time:\n  heartbeat-interval: 1\n")
    daemon = agent.start()
    daemon.wait_for_line("token stored at:")
    first_token = agent.token_path.read_text()
    getattr(api, action)(api.agents()[0]["id"])

    rejected = daemon.wait_for_line("agent token rejected")
    wait_for(lambda: len(registrations(api)) == 2, daemon)
    daemon.stop()

    assert f"WARNING: agent token rejected; registering again status={status}" == (
        rejected
    )
    assert 2 == daemon.output().count("INFO: agent registration complete")
    assert first_token != agent.token_path.read_text()


@pytest.mark.fault(
    case=4,
    behaviour="Rejected with no project token: ERROR line, STATUS= with the fix, the "
    "daemon keeps running (no crash loop).",
)
def test_rejected_without_project_token_degrades(
    agent: Agent, api: LocalGarnet
) -> None:
    """With no project token, a rejected agent token is an error, not a crash."""
    agent.config.write_text("run-time:\n  heartbeat-interval: 1\n")
    agent.register_and_stop()
    api.revoke(api.agents()[0]["id"])

    daemon = agent.start(project_token=None)
    error = daemon.wait_for_line("agent token rejected and no project token")
    status = daemon.wait_for_message("no project token is set")
    alive = daemon.process.poll() is None
    code = daemon.stop()

    assert error.startswith("ERROR: ")
    assert (
        "STATUS=agent token rejected and no project token is set (HTTP 401); "
        "set GARNET_API_TOKEN, GARNET_API_TOKEN_FILE or run-time.api.token, "
        "then 'systemctl reload jibril'"
    ) == status
    assert alive
    assert 0 == code


@pytest.mark.fault(
    case=1,
    behaviour="503 at start: READY=1 after the first failure, a warning with attempt "
    "and next_attempt_in, then registration once the API recovers.",
)
def test_api_down_at_start_retries(agent: Agent, api: LocalGarnet) -> None:
    """Transient failures are retried; READY=1 is sent after the first one."""
    api.add_fault(path="/api/v1/agents", status=503, times=2)
    daemon = agent.start()

    warning = daemon.wait_for_line("agent registration failed")
    ready = daemon.wait_for_message("READY=1")
    daemon.wait_for_line("token stored at:", timeout=20)
    daemon.stop()

    assert warning.startswith("WARNING: agent registration failed attempt=1 ")
    assert "next_attempt_in=" in warning
    assert "registration attempt 1 failed" in ready


def test_project_token_rejected_exits_77(agent: Agent) -> None:
    """A wrong project token ends the daemon with exit code 77, no traceback."""
    daemon = agent.start(project_token="wrong-project-token")

    code = daemon.wait()

    assert 77 == code
    assert (
        "ERROR: project token rejected: HTTP 401: invalid project token; check "
        "the project token set by environment variable GARNET_API_TOKEN "
        "exit_code=77"
    ) in daemon.lines
    assert "Traceback" not in daemon.output()
    assert "wrong-project-token" not in daemon.output()


def test_no_token_at_all_exits_78(agent: Agent) -> None:
    """No agent token and no project token is a settings error (78)."""
    daemon = agent.start(project_token=None)

    code = daemon.wait()

    assert 78 == code
    assert (
        f"ERROR: no stored agent token at {agent.token_path} and no project "
        "token is set; set GARNET_API_TOKEN, GARNET_API_TOKEN_FILE or "
        "run-time.api.token exit_code=78"
    ) in daemon.lines


@pytest.mark.fault(
    case=12,
    behaviour="A second daemon on the same state folder exits 75 naming the first "
    "one's PID.",
)
def test_second_daemon_refused(agent: Agent) -> None:
    """A second daemon on the same state folder exits 75 naming the first."""
    first = agent.start()
    first.wait_for_line("token stored at:")

    second = agent.start()
    code = second.wait()
    first.stop()

    assert 75 == code
    assert f"(PID {first.process.pid})" in second.output()


def test_sighup_reloads_interval(agent: Agent, api: LocalGarnet) -> None:
    """SIGHUP reads the settings again, and a shorter interval takes effect
    without a restart."""
    daemon = agent.start()
    daemon.wait_for_line("token stored at:")
    agent.config.write_text("run-time:\n  heartbeat-interval: 1\n")

    daemon.signal(signal.SIGHUP)
    line = daemon.wait_for_line("settings reloaded")
    _wait_heartbeats(api, daemon, 2)
    daemon.stop()

    assert "INFO: settings reloaded changed=run-time.heartbeat-interval" == line


def test_sighup_burst_merged(agent: Agent) -> None:
    """A burst of SIGHUPs makes a few reloads, not one for each signal."""
    daemon = agent.start()
    daemon.wait_for_line("token stored at:")

    for _ in range(50):
        daemon.signal(signal.SIGHUP)
    daemon.wait_for_line("settings reloaded")
    daemon.pause(1.0)
    code = daemon.stop()

    reloads = [line for line in daemon.lines if "settings reloaded" in line]
    assert 1 <= len(reloads) < 10
    assert 0 == code


def test_sighup_with_bad_settings_keeps_old(agent: Agent) -> None:
    """Invalid settings on reload are logged and the daemon keeps running."""
    daemon = agent.start()
    daemon.wait_for_line("token stored at:")
    agent.config.write_text("run-time:\n  heartbeat-interval: often\n")

    daemon.signal(signal.SIGHUP)
    line = daemon.wait_for_line("reload failed")
    alive = daemon.process.poll() is None
    code = daemon.stop()

    status = daemon.wait_for_message("reload failed")
    assert line.startswith("ERROR: reload failed; keeping the previous settings")
    assert status.startswith("STATUS=reload failed, previous settings kept: ")
    assert alive
    assert 0 == code


def test_good_reload_clears_failed_status(agent: Agent) -> None:
    """After a failed reload, one that succeeds shows the agent's status
    again instead of the old failure."""
    daemon = agent.start()
    daemon.wait_for_line("token stored at:")
    agent.config.write_text("run-time:\n  heartbeat-interval: often\n")
    daemon.signal(signal.SIGHUP)
    daemon.wait_for_message("reload failed")
    agent.config.write_text("run-time:\n  heartbeat-interval: 45\n")

    daemon.signal(signal.SIGHUP)
    daemon.wait_for_line("settings reloaded")
    daemon.pause(0.3)
    code = daemon.stop()

    statuses = [m for m in daemon.messages if m.startswith("STATUS=")]
    assert statuses[-2].startswith("STATUS=reload failed")
    assert statuses[-1].startswith("STATUS=registered as ")
    assert 0 == code


def test_sigint_stops_with_zero(agent: Agent) -> None:
    """SIGINT, as from Ctrl-C, stops the daemon with exit code 0."""
    daemon = agent.start()
    daemon.wait_for_line("token stored at:")

    daemon.signal(signal.SIGINT)
    code = daemon.wait()

    assert 0 == code
    assert "INFO: stopping signal=SIGINT" in daemon.output()


@pytest.mark.fault(
    case=19,
    behaviour="Every end-to-end test runs the daemon at debug level, and the "
    "agent fixture fails the test when any output or STATUS= contains its "
    "project token or the stored agent token.",
)
def test_no_token_in_output(agent: Agent, api: LocalGarnet) -> None:
    """Neither the project token nor the agent token is ever printed."""
    agent.config.write_text("run-time:\n  heartbeat-interval: 1\n  log-level: debug\n")
    daemon = agent.start()
    daemon.wait_for_line("token stored at:")
    first_token = agent.token_path.read_text().strip()
    wait_for(lambda: api.agents()[0]["heartbeats"] >= 1, daemon)
    api.revoke(api.agents()[0]["id"])
    daemon.wait_for_line("registering again")
    wait_for(lambda: len(registrations(api)) == 2, daemon)
    daemon.stop()
    second_token = agent.token_path.read_text().strip()

    output = daemon.output() + "".join(daemon.messages)
    assert "DEBUG: heartbeat sent" in output
    assert PROJECT_TOKEN not in output
    assert first_token not in output
    assert second_token not in output


@pytest.mark.fault(
    case=19,
    behaviour="A server error that quotes the project token is masked in logs and "
    "STATUS=.",
)
def test_echoed_project_token_masked(agent: Agent, api: LocalGarnet) -> None:
    """A server error that quotes the project token is logged and shown in
    STATUS= with the token masked and on one line."""
    echo = f'{{"error": "bad token {PROJECT_TOKEN}\\nMAINPID=1"}}'
    api.add_fault(path="/api/v1/agents", status=500, body=echo, times=1)
    daemon = agent.start()

    warning = daemon.wait_for_line("agent registration failed")
    status = daemon.wait_for_message("registration attempt 1 failed")
    daemon.wait_for_line("token stored at:", timeout=20)
    daemon.stop()

    assert 'error="HTTP 500: bad token ********** MAINPID=1"' in warning
    assert PROJECT_TOKEN not in daemon.output()
    assert PROJECT_TOKEN not in "".join(daemon.messages)
    assert "\nMAINPID" not in status


@pytest.mark.fault(
    case=2,
    behaviour="With WATCHDOG_USEC set, WATCHDOG=1 goes out from the event loop every "
    "half of it.",
)
def test_watchdog_pings_from_loop(agent: Agent) -> None:
    """With WATCHDOG_USEC set, WATCHDOG=1 goes out every half of it."""
    daemon = agent.start(WATCHDOG_USEC="1000000")
    daemon.wait_for_line("token stored at:")

    daemon.wait_for_message("READY=1")
    wait_for(lambda: daemon.messages.count("WATCHDOG=1") >= 3, daemon)
    code = daemon.stop()

    assert 0 == code


def test_journal_lines_carry_priority(agent: Agent, tmp_path: Path) -> None:
    """When stderr is the journal stream, each line starts with its syslog
    priority and the four first-start lines follow it unchanged."""
    log_path = tmp_path / "journal-stream"
    with log_path.open("w") as stream:
        stat_result = os.fstat(stream.fileno())
        environ = clean_environ(
            GARNET_API_URL=agent.api.url,
            GARNET_API_TOKEN=PROJECT_TOKEN,
            JOURNAL_STREAM=f"{stat_result.st_dev}:{stat_result.st_ino}",
        )
        process = subprocess.Popen(
            [sys.executable, "-m", "jibrild", *agent.run_args()],
            env=environ,
            stdout=subprocess.DEVNULL,
            stderr=stream,
        )
        try:
            _wait_for_file_text(log_path, "token stored at:")
        finally:
            process.send_signal(signal.SIGTERM)
            code = process.wait(10)

    lines = log_path.read_text().splitlines()
    expected = ["<6>" + line for line in _expected_first_start_lines(agent.token_path)]
    assert expected == [line for line in lines if line in expected]
    assert all(line.startswith(("<6>", "<7>", "<4>", "<3>")) for line in lines)
    assert 0 == code


def _wait_for_file_text(path: Path, text: str) -> None:
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        if text in path.read_text():
            return
        time.sleep(0.05)
    raise AssertionError(f"no {text!r} in {path}:\n{path.read_text()}")


@pytest.mark.fault(
    case=4,
    behaviour="A path that rejects every agent token does not cause a registration at "
    "every heartbeat.",
)
def test_rejections_do_not_storm(agent: Agent, api: LocalGarnet) -> None:
    """A heartbeat path that rejects every agent token does not make the
    daemon register at every beat."""
    agent.config.write_text("run-time:\n  heartbeat-interval: 1\n")
    api.add_fault(path="/api/v1/agent_heartbeat", status=401)
    daemon = agent.start()

    delaying = daemon.wait_for_line("delaying the next registration", timeout=10)
    time.sleep(3)
    registration_count = len(registrations(api))
    daemon.stop()

    assert 2 == registration_count
    assert delaying.startswith(
        "WARNING: agent token rejected again before any heartbeat succeeded; "
        "delaying the next registration status=401 next_attempt_in="
    )


def test_sighup_while_registering(agent: Agent, api: LocalGarnet) -> None:
    """A reload before the agent token is held sends no READY=1 early."""
    api.add_fault(path="/api/v1/agents", delay=2.0, times=1)
    daemon = agent.start()
    daemon.wait_for_message("STATUS=registering (attempt 1)")

    daemon.signal(signal.SIGHUP)
    daemon.wait_for_line("settings reloaded")
    ready = daemon.wait_for_message("READY=1")
    daemon.stop()

    assert "READY=1\nSTATUS=registered as " in ready
    assert not any("RELOADING=1" in message for message in daemon.messages[:2])


def test_registration_400_exits_65(agent: Agent, api: LocalGarnet) -> None:
    """A 400 to the registration ends the daemon with 65 and the reason."""
    body = '{"error": "invalid field \'ip\': not an IP address"}'
    api.add_fault(path="/api/v1/agents", status=400, body=body, times=1)
    daemon = agent.start()

    code = daemon.wait()

    assert 65 == code
    assert (
        "ERROR: registration rejected: HTTP 400: invalid field 'ip': not an IP "
        "address exit_code=65"
    ) in daemon.lines


def test_failure_status_survives_stop(agent: Agent) -> None:
    """The last STATUS= of a failed daemon gives the reason, not 'stopping'."""
    daemon = agent.start(project_token="wrong-project-token")

    daemon.wait()

    last = daemon.messages[-1]
    assert last.startswith("STOPPING=1\nSTATUS=failed: project token rejected")


def test_heartbeat_failure_and_recovery(agent: Agent, api: LocalGarnet) -> None:
    """Failed heartbeats are warned about with their attempt number, shown
    in STATUS=, and their end is logged."""
    agent.config.write_text("run-time:\n  heartbeat-interval: 1\n")
    daemon = agent.start()
    daemon.wait_for_line("token stored at:")
    api.add_fault(path="/api/v1/agent_heartbeat", status=503, times=2)

    failed = daemon.wait_for_line("heartbeat failed")
    status = daemon.wait_for_message("STATUS=heartbeat failing")
    recovered = daemon.wait_for_line("heartbeat recovered", timeout=20)
    daemon.stop()

    assert failed.startswith("WARNING: heartbeat failed attempt=1 error=")
    assert "STATUS=heartbeat failing: attempt 1 failed (HTTP 503" in status
    assert "INFO: heartbeat recovered failed_attempts=2" == recovered


@pytest.mark.fault(
    case=11,
    behaviour="SIGTERM while the registration request hangs: exit 0 at once, no agent "
    "token left; the next start registers cleanly.",
)
def test_sigterm_during_registration(agent: Agent, api: LocalGarnet) -> None:
    """SIGTERM while the registration request hangs exits 0 at once and
    leaves no agent token behind."""
    api.add_fault(path="/api/v1/agents", delay=30.0, times=1)
    daemon = agent.start()
    daemon.wait_for_message("STATUS=registering (attempt 1)")
    time.sleep(0.3)

    started = time.monotonic()
    code = daemon.stop()
    elapsed = time.monotonic() - started

    assert 0 == code
    # The request would hang for 30 s; stopping must not wait for it.
    assert elapsed < 20
    assert not agent.token_path.exists()

    api.clear_faults()
    again = agent.start()
    again.wait_for_line("token stored at:")
    assert 0 == again.stop()
    assert 1 == again.output().count("INFO: agent registration complete")


def test_reload_fixes_project_token(agent: Agent, api: LocalGarnet) -> None:
    """A project token corrected and reloaded between two attempts is used
    by the next attempt."""
    agent.env_file.write_text("GARNET_API_TOKEN=wrong-project-token\n")
    agent.env_file.chmod(0o600)
    api.add_fault(path="/api/v1/agents", status=503, retry_after="2", times=1)
    daemon = agent.start(project_token=None)
    daemon.wait_for_line("agent registration failed")

    agent.env_file.write_text(f"GARNET_API_TOKEN={PROJECT_TOKEN}\n")
    daemon.signal(signal.SIGHUP)
    daemon.wait_for_line("token stored at:", timeout=15)
    code = daemon.stop()

    assert 0 == code
    assert 1 == len(api.agents())


@pytest.mark.fault(
    case=4,
    behaviour="Registering again refused: degraded with the fix in the log, then "
    "registers at once after a reload fixes the project token.",
)
def test_failed_reregistration_degrades(agent: Agent, api: LocalGarnet) -> None:
    """When registering again is refused, the daemon keeps running, logs
    what to fix, and registers at once when a reload fixes it."""
    agent.config.write_text("run-time:\n  heartbeat-interval: 1\n")
    agent.env_file.write_text(f"GARNET_API_TOKEN={PROJECT_TOKEN}\n")
    agent.env_file.chmod(0o600)
    daemon = agent.start(project_token=None)
    daemon.wait_for_line("token stored at:")
    agent.env_file.write_text("GARNET_API_TOKEN=rotated-but-wrong\n")
    daemon.signal(signal.SIGHUP)
    daemon.wait_for_line("settings reloaded")
    api.revoke(api.agents()[0]["id"])

    error = daemon.wait_for_line("registering again failed")
    alive = daemon.process.poll() is None
    agent.env_file.write_text(f"GARNET_API_TOKEN={PROJECT_TOKEN}\n")
    daemon.signal(signal.SIGHUP)
    wait_for(lambda: len(registrations(api)) == 3, daemon)
    code = daemon.stop()

    assert error.startswith("ERROR: registering again failed status=401 fix=")
    assert alive
    assert "delaying the next registration" not in daemon.output()
    assert 2 == daemon.output().count("INFO: agent registration complete")
    assert 0 == code
