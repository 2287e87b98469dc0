"""The stored identity against the host and the settings of now: a cloned
machine, another API installation, a rotated project token."""

import json
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from garnet_local.testing import LocalGarnet
from garnet_local.tokens import fingerprint
from tests.agent import PROJECT_TOKEN, Agent, registrations

ROTATED_TOKEN = "rotated-project-token"


@pytest.fixture
def api(tmp_path: Path) -> Iterator[LocalGarnet]:
    """The local Garnet API accepting the first and the rotated project token."""
    tokens = {PROJECT_TOKEN: "write", ROTATED_TOKEN: "write"}
    with LocalGarnet(tmp_path / "api", tokens) as server:
        yield server


def _record(agent: Agent) -> dict[str, str]:
    record: dict[str, str] = json.loads(
        agent.token_path.with_suffix(".json").read_text()
    )
    return record


@pytest.mark.fault(
    case=13,
    behaviour="Identity record made on another machine-id: the stored agent "
    "token is not used; the daemon registers as a new agent and logs why.",
)
def test_cloned_machine_registers_anew(agent: Agent, api: LocalGarnet) -> None:
    """A state folder copied from another machine is not reused."""
    agent.register_and_stop()
    first_token = agent.token_path.read_text()
    record = _record(agent)
    record["machine_id"] = "0123456789abcdef0123456789abcdef"
    agent.token_path.with_suffix(".json").write_text(json.dumps(record))

    daemon = agent.start()
    reason = daemon.wait_for_line("registering again")
    daemon.wait_for_line("token stored at:")
    code = daemon.stop()

    assert (
        'WARNING: registering again reason="stored agent token was issued on '
        'another machine"'
    ) == reason
    assert 2 == len(api.agents())
    assert first_token != agent.token_path.read_text()
    assert record["machine_id"] != _record(agent)["machine_id"]
    assert 0 == code


def _with_machine_id(machine_id_file: Path) -> tuple[str, ...]:
    """Return a command prefix that runs the rest of the command in a new
    mount namespace where /etc/machine-id shows ``machine_id_file``."""
    script = 'mount --bind "$0" /etc/machine-id && exec "$@"'
    return (
        "unshare",
        "--mount",
        "--propagation",
        "private",
        "sh",
        "-c",
        script,
        str(machine_id_file),
    )


@pytest.mark.fault(
    case=13,
    behaviour="The same state folder started where /etc/machine-id differs "
    "(bind-mounted in a mount namespace): registers as a new agent and logs "
    "why.",
)
def test_other_etc_machine_id_registers_anew(
    agent: Agent, api: LocalGarnet, tmp_path: Path
) -> None:
    """A clone with its own /etc/machine-id does not reuse the agent token."""
    if not Path("/etc/machine-id").is_file():
        pytest.skip("this host has no /etc/machine-id to stand in for")
    clone_id = tmp_path / "machine-id"
    clone_id.write_text("fedcba9876543210fedcba9876543210\n")
    probe = subprocess.run(
        [*_with_machine_id(clone_id), "cat", "/etc/machine-id"],
        capture_output=True,
        text=True,
        check=False,
    )
    if probe.stdout != clone_id.read_text():
        pytest.skip(f"cannot bind-mount /etc/machine-id here: {probe.stderr}")
    agent.register_and_stop()

    daemon = agent.start(command_prefix=_with_machine_id(clone_id))
    reason = daemon.wait_for_line("registering again")
    daemon.wait_for_line("token stored at:")
    code = daemon.stop()

    assert (
        'WARNING: registering again reason="stored agent token was issued on '
        'another machine"'
    ) == reason
    assert 2 == len(api.agents())
    assert "fedcba9876543210fedcba9876543210" == _record(agent)["machine_id"]
    assert 0 == code


@pytest.mark.fault(
    case=14,
    behaviour="API URL changed to another installation: the daemon registers "
    "with the new one and logs why; the old one sees no call.",
)
def test_new_api_url_registers_there(
    agent: Agent, api: LocalGarnet, tmp_path: Path
) -> None:
    """A stored agent token of another API is not sent to the new one."""
    agent.register_and_stop()
    api.clear_requests()

    with LocalGarnet(tmp_path / "other-api") as other:
        daemon = agent.start(GARNET_API_URL=other.url)
        reason = daemon.wait_for_line("registering again")
        daemon.wait_for_line("token stored at:")
        code = daemon.stop()
        other_agents = other.agents()
        other_beats = [
            request
            for request in other.requests()
            if request["path"] == "/api/v1/agent_heartbeat"
        ]

    assert (
        'WARNING: registering again reason="stored agent token belongs to '
        'another API URL"'
    ) == reason
    assert 1 == len(other_agents)
    assert all(beat["status"] == 200 for beat in other_beats)
    assert [] == api.requests()
    assert other.url == _record(agent)["api_url"]
    assert 0 == code


@pytest.mark.fault(
    case=15,
    behaviour="Project token rotated while the agent token is valid: at "
    "restart and at reload the stored agent token is kept, no registration.",
)
def test_rotated_project_token_keeps_agent(agent: Agent, api: LocalGarnet) -> None:
    """A new project token alone does not make a new agent."""
    agent.register_and_stop()
    first_token = agent.token_path.read_text()

    daemon = agent.start(project_token=ROTATED_TOKEN)
    daemon.wait_for_line("using stored agent token")
    agent.env_file.write_text(f"GARNET_API_TOKEN={PROJECT_TOKEN}-reloaded\n")
    agent.env_file.chmod(0o600)
    daemon.signal(signal.SIGHUP)
    daemon.wait_for_line("settings reloaded")
    code = daemon.stop()

    assert 1 == len(registrations(api))
    assert first_token == agent.token_path.read_text()
    assert "agent registration complete" not in daemon.output()
    assert 0 == code


@pytest.mark.fault(
    case=4,
    behaviour="An agent revoked while stopped registers again with the "
    "project token set since the last start.",
)
def test_revoked_uses_new_project_token(agent: Agent, api: LocalGarnet) -> None:
    """The registration after a 401 uses the project token of now."""
    agent.config.write_text("run-time:\n  heartbeat-interval: 1\n")
    agent.register_and_stop()
    api.revoke(api.agents()[0]["id"])

    daemon = agent.start(project_token=ROTATED_TOKEN)
    daemon.wait_for_line("agent token rejected; registering again")
    daemon.wait_for_line("agent registration complete")
    code = daemon.stop()

    latest = registrations(api)[-1]
    assert {"X-Project-Token": fingerprint(ROTATED_TOKEN)} == latest["credentials"]
    assert 2 == len(api.agents())
    assert 0 == code
