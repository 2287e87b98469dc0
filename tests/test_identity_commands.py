"""Tests of `jibrild reset` and `jibrild register`, run as processes
against the local API, with real files, a real pseudo-terminal and a real
daemon holding the lock."""

import contextlib
import json
import os
import pty
import select
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from garnet_local.testing import LocalGarnet
from tests.agent import PROJECT_TOKEN, Agent, registrations, wait_for
from tests.daemon_process import DaemonProcess, clean_environ
from tests.privileges import NOBODY
from tests.test_token_leaks import leaks

REPO = Path(__file__).resolve().parent.parent
PTY_TIMEOUT = 20.0


class Cli:
    """A runner of jibrild commands on an agent's settings files. It keeps
    every output and every agent token seen on disk, for the leak check."""

    def __init__(self, agent: Agent) -> None:
        self.agent = agent
        self.outputs: list[str] = []
        self.agent_tokens: set[str] = set()

    def environ(self, project_token: str | None) -> dict[str, str]:
        environ = clean_environ(GARNET_API_URL=self.agent.api.url)
        if project_token is not None:
            environ["GARNET_API_TOKEN"] = project_token
        return environ

    def args(self, command: str, *options: str) -> list[str]:
        return [
            sys.executable,
            "-m",
            "jibrild",
            command,
            *options,
            "--config",
            str(self.agent.config),
            "--env-file",
            str(self.agent.env_file),
            "--agent-token-path",
            str(self.agent.token_path),
        ]

    def run(
        self, command: str, *options: str, project_token: str | None = PROJECT_TOKEN
    ) -> subprocess.CompletedProcess[str]:
        """Run one command with no terminal on stdin."""
        self.note_agent_token()
        result = subprocess.run(
            self.args(command, *options),
            cwd=REPO,
            env=self.environ(project_token),
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        self.outputs.append(result.stdout + result.stderr)
        self.note_agent_token()
        return result

    def run_on_terminal(self, command: str, reply: str) -> tuple[int, str]:
        """Run one command on a pseudo-terminal, type ``reply`` at its
        [y/N] prompt, and return the exit code and everything it wrote."""
        self.note_agent_token()
        controller, terminal = pty.openpty()
        process = subprocess.Popen(
            self.args(command),
            cwd=REPO,
            env=self.environ(PROJECT_TOKEN),
            stdin=terminal,
            stdout=terminal,
            stderr=terminal,
        )
        os.close(terminal)
        try:
            output = _read_until(controller, "[y/N] ")
            os.write(controller, reply.encode() + b"\n")
            output += _read_until(controller, None)
            code = process.wait(PTY_TIMEOUT)
        finally:
            os.close(controller)
            if process.poll() is None:
                process.kill()
                process.wait()
        self.outputs.append(output)
        self.note_agent_token()
        return code, output

    def note_agent_token(self) -> None:
        if self.agent.token_path.is_file():
            self.agent_tokens.add(self.agent.token_path.read_text().strip())

    def leaked(self) -> list[str]:
        """Return each form of a token found in the outputs kept so far."""
        secrets = [PROJECT_TOKEN, *self.agent_tokens]
        return [form for output in self.outputs for form in leaks(output, secrets)]


def _read_until(fd: int, text: str | None) -> str:
    """Read from a pseudo-terminal until ``text`` appears, or until the
    other side closes it when ``text`` is None."""
    output = b""
    while text is None or text.encode() not in output:
        ready, _, _ = select.select([fd], [], [], PTY_TIMEOUT)
        if not ready:
            raise AssertionError(f"timed out waiting for {text!r} in {output!r}")
        try:
            chunk = os.read(fd, 4096)
        except OSError:  # Linux raises EIO once every process closed the terminal.
            chunk = b""
        if not chunk:
            if text is None:
                break
            raise AssertionError(f"no {text!r} before the end: {output!r}")
        output += chunk
    return output.decode(errors="replace")


@pytest.fixture
def cli(agent: Agent) -> Iterator[Cli]:
    """A Cli on the agent's files. After the test, no output may contain
    the project token or an agent token."""
    commands = Cli(agent)
    yield commands
    commands.note_agent_token()
    assert [] == commands.leaked(), "a token was printed by a command"


def _record(agent: Agent) -> dict[str, object]:
    record: dict[str, object] = json.loads(
        agent.token_path.with_name("agent.json").read_text()
    )
    return record


def _snapshot(agent: Agent) -> dict[str, bytes]:
    """Return the bytes of every file in the state folder but the lock."""
    return {
        path.name: path.read_bytes()
        for path in agent.token_path.parent.iterdir()
        if path.name != "agent.lock"
    }


def test_reset_yes_removes_identity(agent: Agent, api: LocalGarnet, cli: Cli) -> None:
    """reset --yes removes the agent token and the record, so the next run
    registers again."""
    agent.register_and_stop()
    record = agent.token_path.with_name("agent.json")

    result = cli.run("reset", "--yes")

    assert 0 == result.returncode, result.stderr
    assert f"removed {agent.token_path}\n" in result.stdout
    assert f"removed {record}\n" in result.stdout
    assert "/etc/machine-id" in result.stdout
    assert not agent.token_path.exists()
    assert not record.exists()

    daemon = agent.start()
    daemon.wait_for_line("token stored at:")
    daemon.stop()
    assert 2 == len(registrations(api))
    assert agent.token_path.is_file()


def test_reset_confirmed_on_terminal(agent: Agent, cli: Cli) -> None:
    """On a terminal, reset names the agent id and files, and the reply y
    removes them."""
    agent.register_and_stop()
    agent_id = _record(agent)["agent_id"]

    code, output = cli.run_on_terminal("reset", "y")

    assert 0 == code, output
    assert f"agent id: {agent_id}" in output
    assert f"  {agent.token_path}" in output
    assert f"removed {agent.token_path}" in output
    assert not agent.token_path.exists()
    assert not agent.token_path.with_name("agent.json").exists()


def test_reset_declined_on_terminal(agent: Agent, cli: Cli) -> None:
    """The reply n on the terminal leaves every file and exits 1."""
    agent.register_and_stop()
    before = _snapshot(agent)

    code, output = cli.run_on_terminal("reset", "n")

    assert 1 == code, output
    assert "nothing removed" in output
    assert before == _snapshot(agent)


def test_reset_without_terminal_needs_yes(agent: Agent, cli: Cli) -> None:
    """Without a terminal and without --yes, reset exits 2, prints that
    --yes is needed and removes nothing."""
    agent.register_and_stop()
    before = _snapshot(agent)

    result = cli.run("reset")

    assert 2 == result.returncode
    assert "standard input is not a terminal" in result.stderr
    assert "pass --yes" in result.stderr
    assert before == _snapshot(agent)


@pytest.mark.fault(
    case=12,
    behaviour="`jibrild reset` while a daemon runs exits 75 naming its PID and "
    "removes nothing.",
)
def test_reset_refused_while_daemon_runs(agent: Agent, cli: Cli) -> None:
    """reset exits 75 naming the daemon's PID while it holds the lock, and
    removes nothing."""
    daemon = agent.start()
    daemon.wait_for_line("token stored at:")
    before = _snapshot(agent)

    result = cli.run("reset", "--yes")
    daemon.stop()

    assert 75 == result.returncode
    assert f"another jibrild (PID {daemon.process.pid})" in result.stderr
    assert "stop jibril first" in result.stderr
    assert before == _snapshot(agent)


def test_reset_with_nothing_to_remove(agent: Agent, cli: Cli) -> None:
    """reset with no state folder, then with an empty one, prints that
    there is nothing to remove and exits 0."""
    missing = cli.run("reset", "--yes")
    agent.token_path.parent.mkdir(mode=0o700)
    empty = cli.run("reset")

    assert 0 == missing.returncode
    assert "nothing to remove: state folder" in missing.stdout
    assert 0 == empty.returncode
    assert "nothing to remove: no agent identity in" in empty.stdout


@pytest.mark.fault(
    case=9,
    behaviour="`jibrild reset` rejects a symbolic link at the token path and "
    "removes neither the link nor its target.",
)
def test_reset_rejects_symlinked_token(agent: Agent, cli: Cli, tmp_path: Path) -> None:
    """A symbolic link at the agent token path is rejected with 73, and
    neither the link nor its target is removed."""
    target = tmp_path / "elsewhere.token"
    target.write_text("not-a-real-token\n")
    agent.token_path.parent.mkdir(mode=0o700)
    agent.token_path.symlink_to(target)

    result = cli.run("reset", "--yes")

    assert 73 == result.returncode
    assert "is a symbolic link" in result.stderr
    assert agent.token_path.is_symlink()
    assert target.is_file()


def test_reset_removes_leftovers(agent: Agent, cli: Cli) -> None:
    """reset also removes what an interrupted write left and a record
    left alone by an interrupted reset."""
    agent.register_and_stop()
    agent.token_path.rename(agent.token_path.with_name(".tmp-agent.token.0a1b2c3d"))

    result = cli.run("reset", "--yes")

    assert 0 == result.returncode, result.stderr
    remaining = [path.name for path in agent.token_path.parent.iterdir()]
    assert ["agent.lock"] == remaining


@contextlib.contextmanager
def immutable(path: Path) -> Iterator[None]:
    """Make ``path`` immutable (chattr +i) for the block, so that removing
    it fails for real. Skip the test where the file system or user cannot
    set the flag."""
    chattr = shutil.which("chattr")
    if chattr is None:
        pytest.skip("chattr is not installed")
    result = subprocess.run([chattr, "+i", str(path)], capture_output=True, check=False)
    if result.returncode != 0:
        pytest.skip(f"chattr +i failed: {result.stderr.decode().strip()}")
    try:
        yield
    finally:
        subprocess.run([chattr, "-i", str(path)], check=True)


@pytest.mark.fault(
    case=11,
    behaviour="`jibrild reset` failing to remove the identity record (made "
    "immutable) has already removed the agent token, so the next start "
    "registers again and names the agent it replaces.",
)
def test_reset_interrupted_keeps_record(
    agent: Agent, api: LocalGarnet, cli: Cli
) -> None:
    """When the record cannot be removed, the agent token is already gone,
    so the next run registers again and names the agent it replaces."""
    agent.register_and_stop()
    old_id = _record(agent)["agent_id"]
    record = agent.token_path.with_name("agent.json")

    with immutable(record):
        result = cli.run("reset", "--yes")

    assert 73 == result.returncode
    assert f"cannot remove {record}: Operation not permitted" in result.stderr
    assert not agent.token_path.exists()
    assert record.is_file()

    daemon = agent.start()
    line = daemon.wait_for_line("registered again")
    daemon.stop()
    assert f"previous_agent_id={old_id}" in line
    assert 2 == len(registrations(api))


@pytest.mark.fault(
    case=19,
    behaviour="No output of `jibrild register` or `jibrild reset` in their tests "
    "contains the project token or an agent token.",
)
def test_register_force_replaces_identity(
    agent: Agent, api: LocalGarnet, cli: Cli
) -> None:
    """register --force stores a new identity whose record names the old
    agent. The next daemon uses it without registering."""
    agent.register_and_stop()
    old_id = _record(agent)["agent_id"]
    old_token = agent.token_path.read_text()

    result = cli.run("register", "--force")

    record = _record(agent)
    new_id = record["agent_id"]
    assert 0 == result.returncode, result.stderr
    assert old_id != new_id
    previous = record["previous"]
    assert isinstance(previous, dict)
    assert old_id == previous["agent_id"]
    assert old_token != agent.token_path.read_text()
    assert 2 == len(registrations(api))
    assert "INFO: agent registration complete" in result.stderr
    assert f"registered again agent_id={new_id} previous_agent_id={old_id}" in (
        result.stderr
    )

    agent.config.write_text("run-time:\n  heartbeat-interval: 1\n")
    daemon = agent.start()
    daemon.wait_for_line("using stored agent token")
    wait_for(lambda: api.agents()[-1]["heartbeats"] >= 1, daemon)
    daemon.stop()
    assert 2 == len(registrations(api))
    assert new_id == api.agents()[-1]["id"]


def test_register_when_registered_sends_nothing(
    agent: Agent, api: LocalGarnet, cli: Cli
) -> None:
    """Without --force, a usable stored identity is kept: no request is
    sent and the command prints how to replace it."""
    agent.register_and_stop()
    before = _snapshot(agent)
    api.clear_requests()

    result = cli.run("register")

    assert 0 == result.returncode, result.stderr
    assert f"already registered as agent {_record(agent)['agent_id']}" in (
        result.stdout
    )
    assert "jibrild register --force" in result.stdout
    assert [] == api.requests()
    assert before == _snapshot(agent)


def test_register_first_time(agent: Agent, api: LocalGarnet, cli: Cli) -> None:
    """With nothing stored, register registers and logs the daemon's
    lines, without --force."""
    result = cli.run("register")

    lines = result.stderr.splitlines()
    assert 0 == result.returncode, result.stderr
    assert 1 == len(registrations(api))
    assert "INFO: agent registration complete" in lines
    assert f"INFO: token stored at: {agent.token_path}" in lines
    assert agent.token_path.is_file()


def test_register_rejected_project_token(
    agent: Agent, api: LocalGarnet, cli: Cli
) -> None:
    """A rejected project token exits 77 and keeps the stored identity."""
    agent.register_and_stop()
    before = _snapshot(agent)

    result = cli.run("register", "--force", project_token="wrong-project-token")

    assert 77 == result.returncode
    assert "project token rejected: HTTP 401" in result.stderr
    assert before == _snapshot(agent)
    assert 2 == len(registrations(api))


@pytest.mark.fault(
    case=12,
    behaviour="`jibrild register --force` while a daemon runs exits 75 naming its "
    "PID and sends nothing.",
)
def test_register_refused_while_daemon_runs(
    agent: Agent, api: LocalGarnet, cli: Cli
) -> None:
    """register exits 75 naming the daemon's PID and sends nothing."""
    daemon = agent.start()
    daemon.wait_for_line("token stored at:")

    result = cli.run("register", "--force")
    daemon.stop()

    assert 75 == result.returncode
    assert f"another jibrild (PID {daemon.process.pid})" in result.stderr
    assert "then run jibrild register again" in result.stderr
    assert 1 == len(registrations(api))


@pytest.mark.fault(
    case=3,
    behaviour="`jibrild register` against a 503: each failed attempt logged, exit "
    "69 once --wait runs out, stored identity unchanged.",
)
def test_register_gives_up_after_wait(agent: Agent, api: LocalGarnet, cli: Cli) -> None:
    """While the API responds with 503, register retries, showing each attempt,
    then exits 69 once --wait runs out, changing nothing."""
    agent.register_and_stop()
    before = _snapshot(agent)
    api.add_fault(path="/api/v1/agents", method="POST", status=503)

    result = cli.run("register", "--force", "--wait", "1")

    assert 69 == result.returncode
    assert "WARNING: agent registration failed attempt=1" in result.stderr
    assert "registration did not succeed within --wait 1s" in result.stderr
    assert before == _snapshot(agent)


@pytest.mark.fault(
    case=11,
    behaviour="SIGINT while `jibrild register` retries: exit 69, nothing stored, "
    "nothing sent to the notify socket.",
)
def test_register_stopped_by_signal(agent: Agent, api: LocalGarnet, cli: Cli) -> None:
    """SIGINT during the retries ends register with 69, storing nothing
    and sending nothing to the notify socket."""
    api.add_fault(path="/api/v1/agents", method="POST", status=503)
    process = DaemonProcess(
        agent.tmp_path, cli.args("register")[3:], cli.environ(PROJECT_TOKEN)
    )
    agent.processes.append(process)

    process.wait_for_line("agent registration failed attempt=1")
    process.signal(signal.SIGINT)
    code = process.wait()

    assert 69 == code
    assert "registration stopped by SIGINT" in process.output()
    assert not agent.token_path.exists()
    assert [] == process.messages


def test_register_retries_transient_failure(
    agent: Agent, api: LocalGarnet, cli: Cli
) -> None:
    """One 500 is retried and the second attempt registers."""
    api.add_fault(path="/api/v1/agents", method="POST", status=500, times=1)

    result = cli.run("register")

    assert 0 == result.returncode, result.stderr
    assert "WARNING: agent registration failed attempt=1" in result.stderr
    assert 2 == len(registrations(api))
    assert 1 == len(api.agents())


def test_register_needs_project_token(agent: Agent, api: LocalGarnet, cli: Cli) -> None:
    """register with nothing stored and no project token exits 78."""
    result = cli.run("register", project_token=None)

    assert 78 == result.returncode
    assert "no project token is set" in result.stderr
    assert [] == api.requests()


@pytest.mark.skipif(os.geteuid() != 0, reason="changing a file's owner needs root")
def test_register_as_root_keeps_folder_owner(agent: Agent, cli: Cli) -> None:
    """Run as root in a folder owned by another user, register leaves
    every file it makes owned by that user."""
    folder = agent.token_path.parent
    folder.mkdir(mode=0o700)
    os.chown(folder, NOBODY, NOBODY)

    result = cli.run("register")

    owners = {path.name: path.stat().st_uid for path in folder.iterdir()}
    assert 0 == result.returncode, result.stderr
    assert "agent.token" in owners
    assert {name: NOBODY for name in owners} == owners
