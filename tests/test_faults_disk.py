"""Faults of the state folder: read-only, full, and writes cut by kill -9.

The read-only and full-disk tests mount a small tmpfs, which needs root
(or CAP_SYS_ADMIN); they are skipped with the reason where mount fails.
"""

import dataclasses
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from pydantic import SecretStr

from garnet_local.testing import LocalGarnet
from jibrild.errors import TokenStoreError
from jibrild.tokenstore import Identity, TokenStore, token_fingerprint
from tests.agent import Agent, registrations, wait_for

REPO = Path(__file__).resolve().parent.parent
KILL_ROUNDS = 1000


def _identity(token: SecretStr) -> Identity:
    return Identity(
        agent_id="agent-1",
        agent_kind="vanilla",
        api_url="http://127.0.0.1:1/",
        machine_id="0" * 32,
        registered_at="2026-01-01T00:00:00+00:00",
        token_sha256=token_fingerprint(token),
    )


def _mount(*args: str) -> None:
    subprocess.run(["mount", *args], check=True, capture_output=True, text=True)


@pytest.fixture
def small_tmpfs(tmp_path: Path) -> Iterator[Path]:
    """A 256 KiB tmpfs, unmounted after the test."""
    mount_point = tmp_path / "small"
    mount_point.mkdir()
    try:
        _mount("-t", "tmpfs", "-o", "size=256k,mode=0700", "tmpfs", str(mount_point))
    except (OSError, subprocess.CalledProcessError) as error:
        detail = getattr(error, "stderr", "") or str(error)
        pytest.skip(f"cannot mount a tmpfs here: {detail.strip()}")
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", "-l", str(mount_point)], check=False)


def _fill(folder: Path) -> Path:
    """Write a file until the file system is full; return its path."""
    filler = folder / "filler"
    with filler.open("wb", buffering=0) as file:
        try:
            while True:
                file.write(b"\0" * 4096)
        except OSError:
            pass
    return filler


def _temporary_files(folder: Path) -> list[str]:
    return sorted(path.name for path in folder.glob(".tmp-*"))


@pytest.mark.fault(
    case=10,
    behaviour="Read-only state folder: saving fails with an error naming the "
    "file and the read-only file system; the previous token is intact.",
)
def test_read_only_folder_keeps_token(small_tmpfs: Path) -> None:
    """A write to a read-only state folder fails cleanly."""
    first = SecretStr("agent.token.first")
    store = TokenStore(small_tmpfs / "state" / "agent.token")
    store.prepare()
    store.save(first, _identity(first))
    store.unlock()
    _mount("-o", "remount,ro", str(small_tmpfs))

    second = SecretStr("agent.token.second")
    with pytest.raises(TokenStoreError) as raised:
        TokenStore(store.token_path).save(second, _identity(second))

    assert str(raised.value).startswith(f"cannot write {store.record_path}: ")
    assert str(raised.value).endswith("; the file system is read-only")
    assert "agent.token.first\n" == store.token_path.read_text()
    assert dataclasses.asdict(_identity(first)) == json.loads(
        store.record_path.read_text()
    )
    assert [] == _temporary_files(store.folder)


@pytest.mark.fault(
    case=10,
    behaviour="Read-only state folder at start: exit 73 with one line naming "
    "the folder; the stored token is untouched.",
)
def test_read_only_folder_at_start(agent: Agent, small_tmpfs: Path) -> None:
    """The daemon rejects a state folder it cannot write, keeping the token."""
    agent.token_path = small_tmpfs / "state" / "agent.token"
    agent.register_and_stop()
    stored = agent.token_path.read_text()
    _mount("-o", "remount,ro", str(small_tmpfs))

    daemon = agent.start()
    code = daemon.wait()

    assert 73 == code
    assert (
        f"ERROR: cannot open lock file {agent.token_path.with_suffix('.lock')}: "
        f"Read-only file system; jibrild needs write access to "
        f"{agent.token_path.parent} exit_code=73"
    ) in daemon.lines
    assert stored == agent.token_path.read_text()
    assert "Traceback" not in daemon.output()


@pytest.mark.fault(
    case=10,
    behaviour="Disk full during the write: the error says to free space, "
    "the previous token stays whole, no temporary file is left.",
)
def test_disk_full_keeps_previous_token(small_tmpfs: Path) -> None:
    """A write that runs out of space leaves the old token in place."""
    first = SecretStr("agent.token.first")
    store = TokenStore(small_tmpfs / "state" / "agent.token")
    store.prepare()
    store.save(first, _identity(first))
    _fill(small_tmpfs)

    second = SecretStr("agent.token.second-" + "x" * 8192)
    with pytest.raises(TokenStoreError) as raised:
        store.save(second, _identity(second))
    store.unlock()

    assert (
        f"cannot write {store.record_path}: No space left on device; "
        "free some space" == str(raised.value)
    )
    assert "agent.token.first\n" == store.token_path.read_text()
    assert dataclasses.asdict(_identity(first)) == json.loads(
        store.record_path.read_text()
    )
    assert [] == _temporary_files(store.folder)


@pytest.mark.fault(
    case=10,
    behaviour="Disk full when the daemon registers again: it logs the error "
    "once, keeps the new token in memory (STATUS= says not stored) and stores "
    "it once space is freed.",
)
def test_disk_full_daemon_keeps_running(
    agent: Agent, api: LocalGarnet, small_tmpfs: Path
) -> None:
    """A full disk does not stop the agent; the token is stored later."""
    agent.config.write_text("run-time:\n  heartbeat-interval: 1\n")
    agent.token_path = small_tmpfs / "state" / "agent.token"
    daemon = agent.start()
    daemon.wait_for_line("token stored at:")
    first_token = agent.token_path.read_text()
    filler = _fill(small_tmpfs)
    api.revoke(api.agents()[0]["id"])

    error = daemon.wait_for_line("cannot store agent token")
    status = daemon.wait_for_message("agent token not stored")
    token_while_full = agent.token_path.read_text()
    leftovers = _temporary_files(agent.token_path.parent)
    filler.unlink()
    wait_for(lambda: agent.token_path.read_text() != first_token, daemon)
    code = daemon.stop()

    assert error.startswith(
        'ERROR: cannot store agent token; keeping it in memory error="cannot '
        f"write {agent.token_path.with_suffix('.json')}: No space left on "
        'device; free some space"'
    )
    assert status.startswith("STATUS=registered as ")
    assert first_token == token_while_full
    assert [] == leftovers
    assert 2 == len(registrations(api))
    assert 2 == daemon.output().count(f"INFO: token stored at: {agent.token_path}")
    assert 0 == code


@pytest.mark.fault(
    case=10,
    behaviour="Disk full at first start: the lock file cannot take the PID; "
    "exit 73 with one line naming the lock file and saying to free space.",
)
def test_disk_full_lock_at_start(agent: Agent, small_tmpfs: Path) -> None:
    """The daemon rejects a full state folder before it registers."""
    agent.token_path = small_tmpfs / "state" / "agent.token"
    agent.token_path.parent.mkdir(mode=0o700)
    _fill(small_tmpfs)

    daemon = agent.start()
    code = daemon.wait()

    assert 73 == code
    assert (
        "ERROR: cannot write the PID to lock file "
        f"{agent.token_path.with_suffix('.lock')}: No space left on device; "
        "free some space exit_code=73"
    ) in daemon.lines
    assert [] == registrations(agent.api)
    assert "Traceback" not in daemon.output()


def test_disk_full_lock_released(small_tmpfs: Path) -> None:
    """A lock that cannot take the PID raises and is not left held."""
    store = TokenStore(small_tmpfs / "state" / "agent.token")
    store.folder.mkdir(mode=0o700)
    filler = _fill(small_tmpfs)

    with pytest.raises(TokenStoreError) as raised:
        store.prepare()
    filler.unlink()
    store.prepare()
    store.unlock()

    assert (
        f"cannot write the PID to lock file {store.lock_path}: No space left "
        "on device; free some space"
    ) == str(raised.value)


@pytest.mark.fault(
    case=11,
    behaviour="kill -9 at random points of 1,000 token writes: a "
    "starting daemon always finds the token absent, or complete and valid "
    "with its own identity, with no temporary file left.",
)
def test_kill_9_never_leaves_partial_token(tmp_path: Path) -> None:
    """SIGKILL during writes never leaves a partial agent token, nor one
    without its identity."""
    result = subprocess.run(
        [sys.executable, "-m", "tests.kill_loop", str(tmp_path), str(KILL_ROUNDS), "1"],
        cwd=REPO,
        check=True,
        capture_output=True,
        text=True,
        timeout=120,
    )
    report = json.loads(result.stdout)

    assert KILL_ROUNDS == report["rounds"]
    assert [] == report["broken"]
    assert KILL_ROUNDS == sum(report["outcomes"].values())
    assert report["outcomes"].get("absent", 0) > 0
    assert report["outcomes"].get("complete", 0) > 0
    # Kills between the record's rename and the token's: proof that the
    # loop reaches the window where the previous identity is needed.
    assert report["outcomes"].get("complete, previous identity", 0) > 0
