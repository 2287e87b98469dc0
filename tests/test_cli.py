"""Tests of the jibrild commands other than the daemon itself."""

import json
import os
from pathlib import Path

import pytest
from pydantic import SecretStr

from jibrild import __version__
from jibrild.cli import main
from jibrild.hostfacts import read_host_facts
from jibrild.tokenstore import Identity, TokenStore, token_fingerprint
from tests.daemon_process import clean_environ

PROJECT_TOKEN = "cli-planted-project-token"


@pytest.fixture
def files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Settings files in tmp_path, and a clean environment."""
    for name in os.environ.keys() - clean_environ().keys():
        monkeypatch.delenv(name)
    config = tmp_path / "config.yaml"
    config.write_text("run-time:\n  heartbeat-interval: 30\n")
    env_file = tmp_path / "jibril.env"
    env_file.write_text(f"GARNET_API_TOKEN={PROJECT_TOKEN}\n")
    env_file.chmod(0o600)
    token_path = tmp_path / "state" / "agent.token"
    return [
        "--config",
        str(config),
        "--env-file",
        str(env_file),
        "--agent-token-path",
        str(token_path),
    ]


def _save_identity(token_path: Path, machine_id: str) -> Identity:
    token = SecretStr("aaa.bbb.ccc")
    identity = Identity(
        agent_id="agent-7",
        agent_kind="vanilla",
        api_url="https://api.garnet.ai/",
        machine_id=machine_id,
        registered_at="2026-01-01T00:00:00+00:00",
        token_sha256=token_fingerprint(token),
    )
    store = TokenStore(token_path)
    store.prepare()
    store.save(token, identity)
    store.unlock()
    return identity


@pytest.mark.fault(
    case=19,
    behaviour="`jibrild config` masks the project token.",
)
def test_config_masks_token(
    files: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    """jibrild config prints the settings with the project token masked."""
    code = main(["config", *files])

    output = capsys.readouterr()
    assert 0 == code
    assert "    token: '**********'\n" in output.out
    assert "  heartbeat-interval: 30.0\n" in output.out
    assert PROJECT_TOKEN not in output.out + output.err


def test_config_show_origin(
    files: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    """--show-origin names the file and line of each value."""
    code = main(["config", "--show-origin", *files])

    out = capsys.readouterr().out
    assert 0 == code
    assert f"# {files[3]}:1 (GARNET_API_TOKEN)" in out
    assert f"# {files[1]}:2 (run-time.heartbeat-interval)" in out
    assert "# option --agent-token-path" in out
    assert "url: https://api.garnet.ai/  # default" in out


def test_detect_prints_body(
    files: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    """jibrild detect prints the runtime environment and the body as JSON."""
    code = main(["detect", *files])

    report = json.loads(capsys.readouterr().out)
    assert 0 == code
    assert report["registration_body"]["version"] == __version__
    assert report["agent_kind"] == report["registration_body"]["kind"]
    assert report["runtime_environment"] in {
        "vanilla",
        "container",
        "kubernetes",
        "github",
    }


def test_status_unregistered_exits_3(
    files: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    """Without an agent token on disk, status reports it and exits 3."""
    code = main(["status", *files])

    out = capsys.readouterr().out
    assert 3 == code
    assert "state:      not registered (no agent token on disk)" in out


def test_status_registered(
    files: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    """With an identity on disk, status shows it and the token file mode."""
    machine_id = read_host_facts().machine_id or "unknown"
    _save_identity(Path(files[5]), machine_id)

    code = main(["status", *files])

    out = capsys.readouterr().out
    assert 0 == code
    assert "agent id:        agent-7\n" in out
    assert "token file mode: 0600\n" in out
    assert "note:" not in out


def test_status_notes_other_machine(
    files: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    """An identity from another machine is flagged as one to be replaced."""
    _save_identity(Path(files[5]), "f" * 32)

    main(["status", *files])

    out = capsys.readouterr().out
    assert (
        "note:            issued on another machine; the daemon will register again"
        in out
    )


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    """--version prints the version."""
    with pytest.raises(SystemExit) as exited:
        main(["--version"])

    assert 0 == exited.value.code
    assert f"jibrild {__version__}\n" == capsys.readouterr().out


def test_help_lists_exit_codes(capsys: pytest.CaptureFixture[str]) -> None:
    """--help ends with the exit codes."""
    with pytest.raises(SystemExit):
        main(["--help"])

    out = capsys.readouterr().out
    assert "  77  project token rejected by the API (HTTP 401 or 403)\n" in out
    assert "  78  invalid or missing settings\n" in out


def test_help_lists_identity_commands(capsys: pytest.CaptureFixture[str]) -> None:
    """--help names register and reset and the exit code register gives up
    with."""
    with pytest.raises(SystemExit):
        main(["--help"])

    out = capsys.readouterr().out
    assert "    register     register now with the project token" in out
    assert "    reset        remove the agent identity" in out
    assert "  69  (register) the API kept failing until --wait ran out" in out


def test_register_wait_must_be_positive(capsys: pytest.CaptureFixture[str]) -> None:
    """register --wait rejects zero, a negative number, infinity and text."""
    for value in ("0", "-5", "soon", "inf"):
        with pytest.raises(SystemExit) as exited:
            main(["register", "--wait", value])

        err = capsys.readouterr().err
        assert 2 == exited.value.code
        assert f"expected a positive number, got '{value}'" in err


def test_unknown_values_not_echoed(capsys: pytest.CaptureFixture[str]) -> None:
    """A stray value, which may be a pasted token, is counted, not printed."""
    with pytest.raises(SystemExit) as exited:
        main(["run", "--bogus=x", "pasted-secret-value"])

    err = capsys.readouterr().err
    assert 2 == exited.value.code
    assert "unrecognized arguments: --bogus, 1 more value(s) not shown" in err
    assert "pasted-secret-value" not in err


def test_command_after_options(capsys: pytest.CaptureFixture[str]) -> None:
    """A command written after the options is named in the error."""
    with pytest.raises(SystemExit) as exited:
        main(["--config", "/dev/null", "config"])

    err = capsys.readouterr().err
    assert 2 == exited.value.code
    assert "jibrild: error: put the command first: jibrild config [options]" in err


def test_env_file_copy_in_environ_named_as_file(
    files: list[str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A bad value that systemd's EnvironmentFile= also put in the
    environment is reported at its line in the env file, not as a variable."""
    env_file = tmp_path / "jibril.env"
    env_file.write_text("GARNET_API_TOKEN=t0ken-value\nGARNET_API_URL=ftp://x\n")
    monkeypatch.setenv("GARNET_API_TOKEN", "t0ken-value")
    monkeypatch.setenv("GARNET_API_URL", "ftp://x")

    code = main(["config", *files])

    assert 78 == code
    error = capsys.readouterr().err
    assert f"{env_file}:2" in error
    assert "environment variable" not in error


def test_option_prefix_not_expanded(
    files: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    """`--agent-token VALUE` is not read as --agent-token-path, so the
    value, which may be a token, is never shown."""
    with pytest.raises(SystemExit) as caught:
        main(["status", "--agent-token", "planted-agent-token-value"])

    assert 2 == caught.value.code
    error = capsys.readouterr().err
    assert "--agent-token" in error
    assert "planted-agent-token-value" not in error
