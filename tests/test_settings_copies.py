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
    copy_settings,
    read_copies,
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


def test_copies_keep_content_and_mode(tmp_path: Path) -> None:
    """Each copy has the original's bytes and mode, owned by the folder's owner."""
    paths = originals(tmp_path)
    paths[ENV_FILE_COPY].write_text("GARNET_API_TOKEN=copied-project-token\n")
    paths[ENV_FILE_COPY].chmod(0o600)
    paths[CONFIG_COPY].write_text("run-time:\n  heartbeat-interval: 7\n")
    paths[CONFIG_COPY].chmod(0o640)
    runtime = tmp_path / "run"
    runtime.mkdir(mode=0o700)
    os.chown(runtime, 65534, 65534)

    lines = copy_settings(runtime, paths)

    assert [f"{paths[ENV_FILE_COPY]}: copied", f"{paths[CONFIG_COPY]}: copied"] == lines
    env_copy = (runtime / ENV_FILE_COPY).stat()
    assert (
        "GARNET_API_TOKEN=copied-project-token\n"
        == (runtime / ENV_FILE_COPY).read_text()
    )
    assert 0o600 == env_copy.st_mode & 0o777
    assert (65534, 65534) == (env_copy.st_uid, env_copy.st_gid)
    assert 0o640 == (runtime / CONFIG_COPY).stat().st_mode & 0o777
    assert sorted([ENV_FILE_COPY, CONFIG_COPY]) == sorted(os.listdir(runtime))


def test_missing_original_removes_copy(tmp_path: Path) -> None:
    """An original that was removed takes its old copy with it."""
    paths = originals(tmp_path)
    runtime = tmp_path / "run"
    runtime.mkdir()
    (runtime / CONFIG_COPY).write_text("run-time: {}\n")

    lines = copy_settings(runtime, paths)

    assert f"{paths[CONFIG_COPY]}: missing" == lines[1]
    assert [] == os.listdir(runtime)


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


def test_settings_read_from_copies(tmp_path: Path) -> None:
    """The daemon reads the copies, and names the original files."""
    paths = originals(tmp_path)
    runtime = tmp_path / "run"
    runtime.mkdir()
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
    """`jibrild copy-settings` outside the unit says where it belongs."""
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
