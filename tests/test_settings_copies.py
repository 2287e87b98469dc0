"""Tests of the copies jibril.service makes of root-only settings files."""

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from jibrild.errors import SettingsError
from jibrild.settings import load_settings
from jibrild.settings_copies import (
    CONFIG_COPY,
    ENV_FILE_COPY,
    MANIFEST,
    TOKEN_FILE_COPY,
    copy_settings,
    files_to_copy,
    read_copies,
    signal_reload,
)
from jibrild.sources import files
from tests.daemon_process import clean_environ


@pytest.fixture(autouse=True)
def _no_stand_ins() -> Iterator[None]:
    yield
    files.clear_stand_ins()


def originals(tmp_path: Path) -> dict[str, Path]:
    etc = tmp_path / "etc"
    etc.mkdir()
    return {ENV_FILE_COPY: etc / "jibril", CONFIG_COPY: etc / "config.yaml"}


@pytest.mark.skipif(os.geteuid() != 0, reason="only root can give files away")
def test_copies_keep_content_and_mode(tmp_path: Path) -> None:
    """Each copy has the original's bytes and mode, owned by the folder's owner."""
    paths = originals(tmp_path)
    paths[ENV_FILE_COPY].write_text("GARNET_API_TOKEN=copied-project-token\n")
    paths[ENV_FILE_COPY].chmod(0o600)
    paths[CONFIG_COPY].write_text("run-time:\n  heartbeat-interval: 7\n")
    paths[CONFIG_COPY].chmod(0o4640)
    runtime = tmp_path / "run"
    runtime.mkdir(mode=0o700)
    os.chown(runtime, 65534, 65534)

    copy_settings(runtime, paths)

    env_copy = (runtime / ENV_FILE_COPY).stat()
    assert (
        "GARNET_API_TOKEN=copied-project-token\n"
        == (runtime / ENV_FILE_COPY).read_text()
    )
    assert 0o600 == env_copy.st_mode & 0o777
    assert (65534, 65534) == (env_copy.st_uid, env_copy.st_gid)
    assert 0o640 == (runtime / CONFIG_COPY).stat().st_mode & 0o777
    assert sorted([ENV_FILE_COPY, CONFIG_COPY, MANIFEST]) == sorted(os.listdir(runtime))


def test_missing_original_removes_copy(tmp_path: Path) -> None:
    """An original that was removed takes its old copy with it."""
    paths = originals(tmp_path)
    runtime = tmp_path / "run"
    runtime.mkdir()
    (runtime / CONFIG_COPY).write_text("run-time: {}\n")

    copy_settings(runtime, paths)

    assert [MANIFEST] == os.listdir(runtime)


def test_planted_link_is_replaced(tmp_path: Path) -> None:
    """A link the service's user put at a copy's name is replaced, and its
    target is never written."""
    paths = originals(tmp_path)
    paths[ENV_FILE_COPY].write_text("JIBRIL_HEARTBEAT_INTERVAL=5\n")
    victim = tmp_path / "victim"
    victim.write_text("unchanged\n")
    runtime = tmp_path / "run"
    runtime.mkdir()
    (runtime / ENV_FILE_COPY).symlink_to(victim)

    copy_settings(runtime, paths)

    assert "unchanged\n" == victim.read_text()
    assert not (runtime / ENV_FILE_COPY).is_symlink()
    assert "JIBRIL_HEARTBEAT_INTERVAL=5\n" == (runtime / ENV_FILE_COPY).read_text()


def test_fifo_original_rejected(tmp_path: Path) -> None:
    """An original that is not a regular file is an error naming it."""
    paths = originals(tmp_path)
    os.mkfifo(paths[CONFIG_COPY])
    runtime = tmp_path / "run"
    runtime.mkdir()

    with pytest.raises(SettingsError) as caught:
        copy_settings(runtime, paths)

    expected = f"cannot copy {paths[CONFIG_COPY]}: it is a FIFO, not a regular file"
    assert expected == str(caught.value)


def test_failed_copy_changes_nothing(tmp_path: Path) -> None:
    """When one original cannot be read, no copy is written, so a later
    SIGHUP cannot apply half of an edit."""
    paths = originals(tmp_path)
    paths[ENV_FILE_COPY].write_text("JIBRIL_HEARTBEAT_INTERVAL=77\n")
    paths[CONFIG_COPY].mkdir()
    runtime = tmp_path / "run"
    runtime.mkdir()
    (runtime / ENV_FILE_COPY).write_text("JIBRIL_HEARTBEAT_INTERVAL=5\n")

    with pytest.raises(SettingsError) as caught:
        copy_settings(runtime, paths)

    assert f"cannot copy {paths[CONFIG_COPY]}: it is a directory" in str(caught.value)
    assert "JIBRIL_HEARTBEAT_INTERVAL=5\n" == (runtime / ENV_FILE_COPY).read_text()


def test_folder_at_copy_name_is_an_error(tmp_path: Path) -> None:
    """A folder where a copy goes is a clean error, and no temporary file
    is left behind."""
    paths = originals(tmp_path)
    paths[CONFIG_COPY].write_text("run-time: {}\n")
    runtime = tmp_path / "run"
    runtime.mkdir()
    (runtime / CONFIG_COPY).mkdir()

    with pytest.raises(SettingsError) as caught:
        copy_settings(runtime, paths)

    assert str(caught.value).startswith(f"cannot write {runtime / CONFIG_COPY}: ")
    assert [CONFIG_COPY] == [n for n in os.listdir(runtime) if n != ENV_FILE_COPY]


def test_token_file_is_copied_too(tmp_path: Path) -> None:
    """The file GARNET_API_TOKEN_FILE names is copied, and the daemon's
    secret-file source reads the copy."""
    paths = originals(tmp_path)
    paths[CONFIG_COPY].write_text("run-time: {}\n")
    paths[ENV_FILE_COPY].write_text("# empty\n")
    token_file = tmp_path / "etc" / "garnet-api-token"
    token_file.write_text("copied-project-token\n")
    token_file.chmod(0o600)
    runtime = tmp_path / "run"
    runtime.mkdir()
    environ = {"GARNET_API_TOKEN_FILE": str(token_file)}

    copy_settings(runtime, files_to_copy(paths, environ))
    token_file.unlink()
    read_copies(runtime, paths)

    loaded = load_settings({}, environ, paths[CONFIG_COPY], paths[ENV_FILE_COPY])
    assert loaded.settings.project_token is not None
    assert "copied-project-token" == loaded.settings.project_token.get_secret_value()
    assert "copied-project-token\n" == (runtime / TOKEN_FILE_COPY).read_text()


def test_other_paths_than_copied_rejected(tmp_path: Path) -> None:
    """A daemon given another --config than copy-settings was reports it,
    instead of reading the wrong copy."""
    paths = originals(tmp_path)
    runtime = tmp_path / "run"
    runtime.mkdir()
    copy_settings(runtime, paths)
    other = {**paths, CONFIG_COPY: tmp_path / "etc" / "site.yaml"}

    with pytest.raises(SettingsError) as caught:
        read_copies(runtime, other)

    assert str(caught.value) == (
        f"copy-settings copied {paths[CONFIG_COPY]} but the daemon reads "
        f"{other[CONFIG_COPY]}; give ExecStartPre= and ExecReload= the same "
        "--config and --env-file options as ExecStart="
    )


@pytest.mark.parametrize("pid", [1, 0, -1])
def test_reload_pid_must_be_a_daemon(pid: int) -> None:
    """SIGHUP never goes to PID 1, a process group or every process."""
    with pytest.raises(SettingsError):
        signal_reload(pid)


def test_settings_read_from_copies(tmp_path: Path) -> None:
    """The daemon reads the copies, and names the original files."""
    paths = originals(tmp_path)
    runtime = tmp_path / "run"
    runtime.mkdir()
    copy_settings(runtime, paths)
    (runtime / ENV_FILE_COPY).write_text("JIBRIL_HEARTBEAT_INTERVAL=9\n")
    (runtime / CONFIG_COPY).write_text("run-time:\n  log-level: loud\n")

    read_copies(runtime, paths)

    with pytest.raises(SettingsError) as caught:
        load_settings({}, {}, paths[CONFIG_COPY], paths[ENV_FILE_COPY])
    assert str(caught.value).startswith(f"{paths[CONFIG_COPY]}:2:")
    (runtime / CONFIG_COPY).write_text("run-time: {}\n")
    loaded = load_settings({}, {}, paths[CONFIG_COPY], paths[ENV_FILE_COPY])
    assert 9 == loaded.settings.heartbeat_interval
    assert f"{paths[ENV_FILE_COPY]}:1" in loaded.origins["heartbeat_interval"]


def test_command_needs_runtime_directory(tmp_path: Path) -> None:
    """`jibrild copy-settings` outside the unit names where it belongs."""
    result = subprocess.run(
        [sys.executable, "-m", "jibrild", "copy-settings"],
        env=clean_environ(),
        capture_output=True,
        text=True,
        check=False,
        cwd=tmp_path,
    )

    assert 78 == result.returncode
    assert "RUNTIME_DIRECTORY is not set" in result.stderr


def test_command_copies_and_signals(tmp_path: Path) -> None:
    """With --reload-pid, the command copies, then sends SIGHUP to the PID."""
    paths = originals(tmp_path)
    paths[ENV_FILE_COPY].write_text("JIBRIL_HEARTBEAT_INTERVAL=4\n")
    runtime = tmp_path / "run"
    runtime.mkdir()
    sleeper = subprocess.Popen(["sleep", "60"])
    environ = clean_environ()
    environ["RUNTIME_DIRECTORY"] = str(runtime)

    result = subprocess.run(
        [
            *(sys.executable, "-m", "jibrild", "copy-settings"),
            *("--env-file", str(paths[ENV_FILE_COPY])),
            *("--config", str(paths[CONFIG_COPY])),
            *("--reload-pid", str(sleeper.pid)),
        ],
        env=environ,
        capture_output=True,
        text=True,
        check=False,
    )

    assert 0 == result.returncode, result.stderr
    assert -1 == sleeper.wait(10)
    assert "JIBRIL_HEARTBEAT_INTERVAL=4\n" == (runtime / ENV_FILE_COPY).read_text()


def test_missing_runtime_folder_is_an_error(tmp_path: Path) -> None:
    """A runtime folder that is not there is one line naming it."""
    with pytest.raises(SettingsError) as caught:
        copy_settings(tmp_path / "gone", originals(tmp_path))

    assert str(caught.value).startswith(f"cannot open runtime folder {tmp_path}/gone")


def test_reload_pid_of_no_process() -> None:
    """SIGHUP to a PID no process has is one line naming it."""
    # Above pid_max no process can exist, so no one else gets the signal.
    pid = int(Path("/proc/sys/kernel/pid_max").read_text()) + 1

    with pytest.raises(SettingsError) as caught:
        signal_reload(pid)

    assert f"cannot send SIGHUP to PID {pid}: No such process" == str(caught.value)
