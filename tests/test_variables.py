"""Tests of the warnings about GARNET_* and JIBRIL_* variables that
jibrild does not read."""

import ast
import os
import re
import signal
from pathlib import Path

import pytest

from jibrild.cli import main
from jibrild.errors import SettingsError
from jibrild.reload import SettingsReloader
from jibrild.settings import LoadedSettings, load_settings
from jibrild.sources.layer import Origin
from jibrild.sources.variables import (
    KNOWN_VARIABLES,
    UnknownVariable,
    find_unknown_variables,
)
from tests.agent import Agent
from tests.daemon_process import clean_environ

PACKAGE = Path(__file__).resolve().parent.parent / "jibrild"
SECRET_VALUE = "planted-value-of-a-misspelt-variable"
_VARIABLE_NAME = re.compile(r"\b(?:GARNET|JIBRIL)_[A-Z0-9_]*[A-Z0-9]\b")


def variable_names_in_source(source: str) -> set[str]:
    """Return the GARNET_* and JIBRIL_* names in the string literals of a
    module, docstrings left out."""
    tree = ast.parse(source)
    docstrings = {
        id(node.body[0].value)
        for node in ast.walk(tree)
        if isinstance(
            node,
            ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef,
        )
        and node.body
        and isinstance(node.body[0], ast.Expr)
        and isinstance(node.body[0].value, ast.Constant)
    }
    names: set[str] = set()
    for node in ast.walk(tree):
        if not isinstance(node, ast.Constant) or not isinstance(node.value, str):
            continue
        if id(node) in docstrings:
            continue
        names.update(_VARIABLE_NAME.findall(node.value))
    return names


def _load(tmp_path: Path, env_text: str, environ: dict[str, str]) -> LoadedSettings:
    env_file = tmp_path / "jibril.env"
    env_file.write_text(env_text)
    config = tmp_path / "config.yaml"
    config.write_text("")
    return load_settings({}, environ, config, env_file)


def _no_file_variables() -> dict[str, tuple[str, Origin]]:
    return {}


def test_scan_finds_variable_read() -> None:
    """The source scan finds a variable that code reads, so
    test_code_names_only_known_variables fails when a new variable is
    missing from KNOWN_VARIABLES."""
    source = (
        '"""Module docstring naming JIBRIL_IN_DOCSTRING."""\n'
        "import os\n"
        'value = os.environ.get("GARNET_NEW_SETTING")\n'
        'message = f"set JIBRIL_OTHER to {value}"\n'
    )

    names = variable_names_in_source(source)

    assert names == {"GARNET_NEW_SETTING", "JIBRIL_OTHER"}


def test_code_names_only_known_variables() -> None:
    """Every GARNET_* or JIBRIL_* variable named in jibrild's code is known,
    so that none of them is ever reported as unknown."""
    found: dict[str, str] = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        for name in variable_names_in_source(path.read_text()):
            found.setdefault(name, str(path.relative_to(PACKAGE.parent)))

    missing = {
        name: path for name, path in found.items() if name not in KNOWN_VARIABLES
    }
    assert missing == {}
    assert "JIBRIL_SETTINGS_COPIES" in found
    assert "GARNET_API_TOKEN_FILE" in found


@pytest.mark.fault(
    case=17,
    behaviour="A misspelt GARNET_* or JIBRIL_* variable is a warning naming "
    "file, line and the closest known variable, not an error.",
)
def test_env_file_variable_named_by_line(tmp_path: Path) -> None:
    """A misspelt variable of the env file is reported with its file and line."""
    text = f"# comment\nGARNET_API_TOKN={SECRET_VALUE}\n"

    loaded = _load(tmp_path, text, {})

    origin = f"{tmp_path / 'jibril.env'}:2"
    expected = UnknownVariable("GARNET_API_TOKN", origin, "GARNET_API_TOKEN")
    assert loaded.unknown_variables == (expected,)
    assert loaded.settings.project_token is None


def test_environment_variable_named(tmp_path: Path) -> None:
    """A misspelt variable of the environment is reported as the environment's."""
    loaded = _load(tmp_path, "", {"JIBRIL_HEARTBEAT": "30"})

    expected = UnknownVariable(
        "JIBRIL_HEARTBEAT", "environment", "JIBRIL_HEARTBEAT_INTERVAL"
    )
    assert loaded.unknown_variables == (expected,)
    assert loaded.settings.heartbeat_interval == 60.0


@pytest.mark.parametrize(
    ("name", "suggestion"),
    [
        ("GARNET_URL", "GARNET_API_URL"),
        ("GARNET_API_TOKN", "GARNET_API_TOKEN"),
        ("GARNET_TOKEN", "GARNET_API_TOKEN"),
        ("JIBRIL_HEARTBEAT", "JIBRIL_HEARTBEAT_INTERVAL"),
        ("JIBRIL_LOGLEVEL", "JIBRIL_LOG_LEVEL"),
        ("garnet_api_url", "GARNET_API_URL"),
        ("GARNET_HEARTBEAT_INTERVAL", "JIBRIL_HEARTBEAT_INTERVAL"),
        ("JIBRIL_WIDGET_COLOR", None),
        ("GARNET_ENDPOINT", None),
    ],
)
def test_suggestion_is_closest_variable(name: str, suggestion: str | None) -> None:
    """The suggestion is the closest known variable, or none when none is close."""
    unknown = find_unknown_variables([name], _no_file_variables())

    assert unknown == (UnknownVariable(name, "environment", suggestion),)


def test_other_names_not_reported() -> None:
    """Only names that start with GARNET_ or JIBRIL_ are checked."""
    names = ["HOME", "GARNET", "GARNETX_URL", "MY_GARNET_URL", "JIBRILD_LOG"]

    assert find_unknown_variables(names, _no_file_variables()) == ()


def test_known_variables_not_reported() -> None:
    """No known variable is reported, from the environment or the env file."""
    file_variables = {
        name: ("value", Origin.at_line(Path("/etc/default/jibril"), line, name))
        for line, name in enumerate(sorted(KNOWN_VARIABLES), start=1)
    }

    unknown = find_unknown_variables(KNOWN_VARIABLES, file_variables)

    assert unknown == ()


def test_known_settings_variables_load_clean(tmp_path: Path) -> None:
    """Loading with every settings variable set reports no unknown variable."""
    token_file = tmp_path / "token"
    token_file.write_text("project-token")
    token_file.chmod(0o600)
    environ = {
        "GARNET_API_URL": "https://garnet.example/",
        "GARNET_AGENT_TOKEN_PATH": str(tmp_path / "agent.token"),
        "GARNET_API_TIMEOUT": "5",
        "GARNET_API_ALLOW_INSECURE_HTTP": "false",
        "JIBRIL_HEARTBEAT_INTERVAL": "30",
        "JIBRIL_LABELS": "team=platform",
        "JIBRIL_JOB": "build",
        "JIBRIL_CLUSTER_NAME": "prod",
        "JIBRIL_RUNTIME_ENVIRONMENT": "vanilla",
        "JIBRIL_LOG_LEVEL": "debug",
        "JIBRIL_SETTINGS_COPIES": str(tmp_path),
    }
    env_text = f"GARNET_API_TOKEN_FILE={token_file}\nGARNET_API_CA_FILE=\n"

    loaded = _load(tmp_path, env_text, environ)

    assert loaded.unknown_variables == ()
    assert loaded.settings.heartbeat_interval == 30.0


def test_variable_in_both_reported_once(tmp_path: Path) -> None:
    """A variable in the environment and the env file is reported once, as
    the env file's."""
    loaded = _load(tmp_path, "GARNET_URL=https://a.example/\n", {"GARNET_URL": "x"})

    origin = f"{tmp_path / 'jibril.env'}:1"
    assert loaded.unknown_variables == (
        UnknownVariable("GARNET_URL", origin, "GARNET_API_URL"),
    )


def test_reload_under_environment_file(tmp_path: Path) -> None:
    """With the env file copied into the environment, as EnvironmentFile=
    does, a variable is the file's, and a reload after fixing the file
    reports it no more."""
    env_file = tmp_path / "jibril.env"
    env_file.write_text(f"GARNET_API_TOKN={SECRET_VALUE}\n")
    config = tmp_path / "config.yaml"
    config.write_text("")
    environ = {"GARNET_API_TOKN": SECRET_VALUE, "JIBRIL_JOBS": "build"}
    reloader = SettingsReloader({}, environ, config, env_file)

    first = reloader.load()
    env_file.write_text(f"GARNET_API_TOKEN={SECRET_VALUE}\nJIBRIL_LABEL=a=b\n")
    second = reloader.load()

    assert first.unknown_variables == (
        UnknownVariable("GARNET_API_TOKN", f"{env_file}:1", "GARNET_API_TOKEN"),
        UnknownVariable("JIBRIL_JOBS", "environment", "JIBRIL_JOB"),
    )
    assert second.unknown_variables == (
        UnknownVariable("JIBRIL_LABEL", f"{env_file}:2", "JIBRIL_LABELS"),
        UnknownVariable("JIBRIL_JOBS", "environment", "JIBRIL_JOB"),
    )


def test_settings_error_carries_unknown(tmp_path: Path) -> None:
    """An invalid setting raises with the unknown variables found before it,
    since a misspelt variable may be the cause."""
    with pytest.raises(SettingsError) as raised:
        _load(tmp_path, "JIBRIL_HEARTBEAT_INTERVAL=often\nGARNET_URL=x\n", {})

    origin = f"{tmp_path / 'jibril.env'}:2"
    assert raised.value.unknown_variables == (
        UnknownVariable("GARNET_URL", origin, "GARNET_API_URL"),
    )


def test_unknown_variable_has_no_value(tmp_path: Path) -> None:
    """No unknown variable contains its value."""
    environ = {"JIBRIL_TOKN": SECRET_VALUE}
    loaded = _load(tmp_path, f"GARNET_API_TOKN={SECRET_VALUE}\n", environ)

    assert len(loaded.unknown_variables) == 2
    assert SECRET_VALUE not in repr(loaded.unknown_variables)


@pytest.fixture
def settings_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Options naming settings files in tmp_path, in a clean environment
    that has one misspelt variable."""
    for name in os.environ.keys() - clean_environ().keys():
        monkeypatch.delenv(name)
    monkeypatch.setenv("JIBRIL_HEARTBEAT", SECRET_VALUE)
    config = tmp_path / "config.yaml"
    config.write_text("")
    env_file = tmp_path / "jibril.env"
    env_file.write_text(f"GARNET_API_TOKEN=token\n\nGARNET_URL={SECRET_VALUE}\n")
    env_file.chmod(0o600)
    return ["--config", str(config), "--env-file", str(env_file)]


def test_config_command_warns_once(
    settings_files: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    """`jibrild config` logs one key=value warning for each unknown variable,
    without its value."""
    code = main(["config", *settings_files])

    output = capsys.readouterr()
    env_file = settings_files[3]
    assert 0 == code
    assert output.err.splitlines() == [
        "WARNING: unknown variable ignored variable=GARNET_URL "
        f"origin={env_file}:3 did_you_mean=GARNET_API_URL",
        "WARNING: unknown variable ignored variable=JIBRIL_HEARTBEAT "
        "origin=environment did_you_mean=JIBRIL_HEARTBEAT_INTERVAL",
    ]
    assert SECRET_VALUE not in output.out
    assert SECRET_VALUE not in output.err


def test_config_command_warns_before_error(
    settings_files: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    """When the settings are invalid, the warnings still come, before the error."""
    code = main(["config", "--heartbeat-interval", "0", *settings_files])

    lines = capsys.readouterr().err.splitlines()
    assert 78 == code
    assert len(lines) == 3
    assert lines[0].startswith("WARNING: unknown variable ignored variable=GARNET_URL")
    assert lines[1].startswith("WARNING: unknown variable ignored variable=JIBRIL_")
    assert lines[2].startswith("ERROR: ")
    assert SECRET_VALUE not in "\n".join(lines)


def test_daemon_warns_at_start_and_reload(agent: Agent) -> None:
    """The daemon warns once at start and again at each reload, with the
    variables of the env file as they are at the reload."""
    agent.env_file.write_text(f"JIBRIL_HEARTBEAT={SECRET_VALUE}\n")
    daemon = agent.start(GARNET_API_TOKN=SECRET_VALUE)
    daemon.wait_for_line("token stored at:")

    agent.env_file.write_text(f"\nJIBRIL_LABEL={SECRET_VALUE}\n")
    daemon.signal(signal.SIGHUP)
    daemon.wait_for_line("settings reloaded")
    code = daemon.stop()

    warnings = [line for line in daemon.lines if "unknown variable" in line]
    assert 0 == code
    assert warnings == [
        "WARNING: unknown variable ignored variable=JIBRIL_HEARTBEAT "
        f"origin={agent.env_file}:1 did_you_mean=JIBRIL_HEARTBEAT_INTERVAL",
        "WARNING: unknown variable ignored variable=GARNET_API_TOKN "
        "origin=environment did_you_mean=GARNET_API_TOKEN",
        "WARNING: unknown variable ignored variable=JIBRIL_LABEL "
        f"origin={agent.env_file}:2 did_you_mean=JIBRIL_LABELS",
        "WARNING: unknown variable ignored variable=GARNET_API_TOKN "
        "origin=environment did_you_mean=GARNET_API_TOKEN",
    ]
    assert SECRET_VALUE not in daemon.output()


def test_daemon_warns_before_reload_failure(agent: Agent) -> None:
    """A reload that fails on an invalid setting still warns about an
    unknown variable, before the error."""
    daemon = agent.start()
    daemon.wait_for_line("token stored at:")
    agent.env_file.write_text(f"GARNET_URL={SECRET_VALUE}\n")
    agent.config.write_text("run-time:\n  heartbeat-interval: often\n")

    daemon.signal(signal.SIGHUP)
    daemon.wait_for_line("reload failed")
    code = daemon.stop()

    lines = [
        line
        for line in daemon.lines
        if "unknown variable" in line or "reload failed" in line
    ]
    assert 0 == code
    assert len(lines) == 2
    assert lines[0] == (
        "WARNING: unknown variable ignored variable=GARNET_URL "
        f"origin={agent.env_file}:1 did_you_mean=GARNET_API_URL"
    )
    assert lines[1].startswith("ERROR: reload failed; keeping the previous settings")
    assert SECRET_VALUE not in daemon.output()
