"""The daemon's start on a stored agent token file that needs care: the
warnings it logs, naming the file, and the identity it uses."""

import hashlib
import json
import stat

import pytest

from tests.agent import Agent, registrations


@pytest.mark.fault(
    case=8,
    behaviour="Daemon with an empty token file: logs a warning naming the "
    "file and registers as if there were no token.",
)
def test_empty_token_file_warned(agent: Agent) -> None:
    """An empty token file is logged as ignored, then replaced."""
    agent.token_path.parent.mkdir(mode=0o700)
    agent.token_path.write_bytes(b"")
    agent.token_path.chmod(0o600)

    daemon = agent.start()
    daemon.wait_for_line("token stored at:")
    code = daemon.stop()

    assert (
        f"WARNING: agent token file {agent.token_path} is empty or not a "
        "token; ignoring it"
    ) in daemon.lines
    assert 1 == len(registrations(agent.api))
    assert agent.token_path.read_text().strip()
    assert 0 == code


@pytest.mark.fault(
    case=9,
    behaviour="Daemon with a token file of mode 0644: logs a warning naming "
    "the file, sets it to 0600 and uses the stored token.",
)
def test_wide_token_file_warned(agent: Agent) -> None:
    """A token file readable by others is logged, tightened and still used."""
    agent.register_and_stop()
    agent.token_path.chmod(0o644)

    daemon = agent.start()
    daemon.wait_for_line("using stored agent token")
    code = daemon.stop()

    assert (
        f"WARNING: agent token file {agent.token_path} had mode 0644; "
        "setting it to 0600"
    ) in daemon.lines
    assert 0o600 == stat.S_IMODE(agent.token_path.stat().st_mode)
    assert 1 == len(registrations(agent.api))
    assert 0 == code


@pytest.mark.fault(
    case=11,
    behaviour="kill -9 after the identity record of a new agent token was "
    "written but before the token: the next start uses the stored token "
    "with its own identity, not as an unknown agent.",
)
def test_interrupted_save_keeps_identity(agent: Agent) -> None:
    """A record written for a token that never reached the disk still
    gives the stored token its identity."""
    agent.register_and_stop()
    record_path = agent.token_path.with_suffix(".json")
    stored = json.loads(record_path.read_text())
    lost_token = "token-that-never-reached-the-disk"
    lost = {
        **stored,
        "agent_id": "agent-lost",
        "token_sha256": hashlib.sha256(lost_token.encode()).hexdigest(),
    }
    record_path.write_text(json.dumps({**lost, "previous": stored}))

    daemon = agent.start()
    using = daemon.wait_for_line("using stored agent token")
    status = daemon.wait_for_message("STATUS=registered as")
    code = daemon.stop()

    assert using.endswith(f"agent_id={stored['agent_id']}")
    assert status.endswith(f"STATUS=registered as {stored['agent_id']}")
    assert (
        f"WARNING: identity record {record_path} was written for an agent "
        f"token that never reached {agent.token_path}, as a save was "
        "interrupted; using the identity of the stored token"
    ) in daemon.lines
    assert stored == json.loads(record_path.read_text())
    assert 1 == len(registrations(agent.api))
    assert 0 == code
