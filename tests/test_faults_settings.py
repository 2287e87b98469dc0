"""Operators' mistakes in the settings, seen from the command line.

Each mistake gives one line naming the source and the fix, never a
traceback. Any input to the settings sources ends in settings or a
SettingsError."""

import contextlib
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from garnet_local.testing import LocalGarnet
from jibrild.errors import SettingsError
from jibrild.settings import SETTING_KEYS, load_settings
from tests.agent import Agent, registrations
from tests.daemon_process import clean_environ

REPO = Path(__file__).resolve().parent.parent


def _run_cli(*args: str, **environ: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "jibrild", *args],
        cwd=REPO,
        env=clean_environ(**environ),
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


@pytest.mark.fault(
    case=7,
    behaviour="http:// to a host other than loopback: exit 78 before any "
    "request, with the setting that would allow it.",
)
def test_cleartext_remote_url_rejected(agent: Agent, api: LocalGarnet) -> None:
    """The daemon does not start against a cleartext remote API."""
    daemon = agent.start(GARNET_API_URL="http://garnet.example/")

    code = daemon.wait()

    assert 78 == code
    assert [
        "ERROR: environment variable GARNET_API_URL: plain http:// to "
        "garnet.example would send tokens unencrypted, got "
        "'http://garnet.example/'; use https://, or set "
        "GARNET_API_ALLOW_INSECURE_HTTP=true (run-time.api.allow-insecure-http) "
        "exit_code=78"
    ] == [line for line in daemon.lines if line.startswith("ERROR")]
    assert [] == registrations(api)


# Each broken config file, and the line its error must start with after
# the path.
_BROKEN_CONFIGS = {
    "syntax error": ("run-time:\n  job: [x\n", ":3: invalid YAML: "),
    "tab indent": (
        "run-time:\n\tjob: x\n",
        ":2: tab character in the indentation; indent with spaces",
    ),
    "byte-order mark and CRLF": (
        "\ufeffrun-time:\r\n  heartbeat-interval: often\r\n",
        ":2: run-time.heartbeat-interval: expected ",
    ),
    "wrong type": (
        "run-time:\n  heartbeat-interval: true\n",
        ":2: run-time.heartbeat-interval: expected a number of seconds",
    ),
    "unknown key": (
        "run-time:\n  api:\n    urll: https://x/\n",
        ":3: run-time.api.urll: unknown key; did you mean 'run-time.api.url'?",
    ),
}


@pytest.mark.fault(
    case=16,
    behaviour="Syntax error, tab indent, BOM with CRLF, wrong type, unknown "
    "key under run-time: `jibrild run` exits 78 with one line giving "
    "file:line and the fix, no traceback.",
)
@pytest.mark.parametrize("name", sorted(_BROKEN_CONFIGS))
def test_broken_config_one_line(tmp_path: Path, name: str) -> None:
    """A broken config file ends the daemon with one clear line."""
    text, problem = _BROKEN_CONFIGS[name]
    config = tmp_path / "config.yaml"
    config.write_bytes(text.encode())
    env_file = tmp_path / "jibril"
    env_file.write_text("")

    result = _run_cli("run", "--config", str(config), "--env-file", str(env_file))

    lines = (result.stdout + result.stderr).splitlines()
    assert 78 == result.returncode
    assert 1 == len(lines), lines
    assert lines[0].startswith(f"ERROR: {config}{problem}")
    assert "Traceback" not in result.stderr


@pytest.mark.fault(
    case=18,
    behaviour="`jibrild run --token ...` exits 78 with the safe ways to pass "
    "the token and never prints the value.",
)
@pytest.mark.parametrize(
    "args",
    [["--token", "cmdline-secret-1"], ["--project-token=cmdline-secret-1"]],
)
def test_token_on_command_line_rejected(args: list[str]) -> None:
    """The daemon will not take a token from its command line."""
    result = _run_cli("run", *args)

    output = result.stdout + result.stderr
    assert 78 == result.returncode
    assert "not accepted on the command line" in output
    assert "GARNET_API_TOKEN_FILE" in output
    assert "LoadCredential=garnet-api-token" in output
    assert "cmdline-secret-1" not in output
    assert "Traceback" not in output


_TEXT = st.text(
    st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=30
) | st.sampled_from(["", " ", "1", "0", "-1", "1e9", "nan", "true", "a=b", "/x"])
_ENVIRON = st.dictionaries(
    st.sampled_from([key.env_var for key in SETTING_KEYS]),
    _TEXT.filter(lambda value: "\0" not in value),
    max_size=6,
)
_OPTIONS = st.dictionaries(
    st.sampled_from([key.field for key in SETTING_KEYS if key.option is not None]),
    _TEXT | st.lists(_TEXT, max_size=3),
    max_size=4,
)


@pytest.mark.fault(
    case=20,
    behaviour="Any environment and any option values (hypothesis): valid "
    "settings or a SettingsError, never another exception.",
)
@given(environ=_ENVIRON, options=_OPTIONS)
@settings(max_examples=300, deadline=None)
def test_any_environment_and_options(
    environ: dict[str, str], options: dict[str, object]
) -> None:
    """Settings from arbitrary environment and option values load or fail
    with a SettingsError."""
    with contextlib.suppress(SettingsError):
        load_settings(options, environ, Path("/dev/null"), Path("/dev/null"))
