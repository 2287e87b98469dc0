"""Tests of the YAML configuration file as a settings source."""

import contextlib
import shutil
import tempfile
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import SecretStr

from jibrild.errors import SettingsError
from jibrild.settings import LoadedSettings, Settings, load_settings
from jibrild.sources.yaml_file import YamlFileSettingsSource
from tests.privileges import as_nobody, open_folder

FIXTURES = Path(__file__).parent / "fixtures"


def load_yaml(path: Path, text: str | bytes) -> LoadedSettings:
    """Write text to path and load settings from it with an empty env file."""
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text)
    env_file = path.parent / "empty-env"
    env_file.write_text("")
    return load_settings({}, {}, config_path=path, env_file_path=env_file)


def yaml_error(path: Path, text: str | bytes) -> str:
    """Load text as the config file and return the SettingsError message."""
    with pytest.raises(SettingsError) as caught:
        load_yaml(path, text)
    return str(caught.value)


@pytest.mark.fault(
    case=16,
    behaviour="Jibril's default config with all its sections plus a run-time: section "
    "loads.",
)
def test_default_config_with_run_time_loads(tmp_path: Path) -> None:
    """Jibril's default config plus a run-time section loads."""
    path = tmp_path / "config.yaml"
    shutil.copy(FIXTURES / "jibril-default-config.yaml", path)
    with path.open("a") as stream:
        stream.write("run-time:\n  api:\n    url: https://garnet.example/\n")

    loaded = load_yaml(path, path.read_bytes())

    assert loaded.settings.api_url == "https://garnet.example/"
    assert loaded.settings.log_level == "info"
    assert loaded.origins["log_level"] == f"{path}:5 (log-level)"


def test_every_key_is_read(tmp_path: Path) -> None:
    """Each run-time key sets its field and records its line."""
    path = tmp_path / "config.yaml"
    text = (
        "run-time:\n"
        "  api:\n"
        "    url: https://garnet.example/prefix/\n"
        "    token: abc.def\n"
        "    agent-token-path: /srv/agent.token\n"
        "    request-timeout: 2.5\n"
        f"    ca-file: {FIXTURES / 'ca.pem'}\n"
        "    allow-insecure-http: yes\n"
        "  heartbeat-interval: 30\n"
        "  labels:\n"
        "    team: infra\n"
        "    example.com/tier: '1'\n"
        "  job: nightly\n"
        "  cluster-name: prod.example\n"
        "  runtime-environment: Container\n"
        "  log-level: WARNING\n"
    )

    loaded = load_yaml(path, text)

    expected = Settings(
        api_url="https://garnet.example/prefix/",
        project_token=SecretStr("abc.def"),
        agent_token_path=Path("/srv/agent.token"),
        request_timeout=2.5,
        ca_file=FIXTURES / "ca.pem",
        allow_insecure_http=True,
        heartbeat_interval=30.0,
        labels={"team": "infra", "example.com/tier": "1"},
        job="nightly",
        cluster_name="prod.example",
        runtime_environment="container",
        log_level="warning",
    )
    assert loaded.settings == expected
    assert loaded.origins["api_url"] == f"{path}:3 (run-time.api.url)"
    assert loaded.origins["labels"] == f"{path}:10 (run-time.labels)"


def test_run_time_log_level_beats_top_level(tmp_path: Path) -> None:
    """run-time.log-level wins over the top-level log-level."""
    path = tmp_path / "config.yaml"

    loaded = load_yaml(path, "log-level: debug\nrun-time:\n  log-level: error\n")

    assert loaded.settings.log_level == "error"
    assert loaded.origins["log_level"] == f"{path}:3 (run-time.log-level)"


@pytest.mark.parametrize(
    ("jibril_level", "expected"),
    [("warn", "warning"), ("trace", "debug"), ("fatal", "error"), ("INFO", "info")],
)
def test_jibril_top_level_log_level_mapped(
    tmp_path: Path, jibril_level: str, expected: str
) -> None:
    """Level names of the rest of Jibril map to jibrild's."""
    path = tmp_path / "config.yaml"

    loaded = load_yaml(path, f"log-level: {jibril_level}\n")

    assert loaded.settings.log_level == expected


def test_unknown_top_level_log_level_ignored(tmp_path: Path) -> None:
    """A top-level log-level jibrild does not know is left to Jibril."""
    path = tmp_path / "config.yaml"

    loaded = load_yaml(path, "log-level: verbose\n")

    assert loaded.settings.log_level == "info"
    assert loaded.origins["log_level"] == "default"


@pytest.mark.fault(
    case=16,
    behaviour="An empty file or section gives the defaults.",
)
@pytest.mark.parametrize(
    "text", ["", "# only a comment\n", "---\n", "run-time:\n", "run-time:\n  api:\n"]
)
def test_empty_file_or_section(tmp_path: Path, text: str) -> None:
    """An empty file or empty section gives no settings."""
    loaded = load_yaml(tmp_path / "config.yaml", text)

    assert loaded.settings == Settings()
    assert set(loaded.origins.values()) == {"default"}


def test_null_value_is_unset(tmp_path: Path) -> None:
    """A key without a value leaves the default."""
    loaded = load_yaml(
        tmp_path / "config.yaml", "run-time:\n  job:\n  api:\n    url:\n"
    )

    assert loaded.origins["job"] == "default"
    assert loaded.origins["api_url"] == "default"


@pytest.mark.fault(
    case=16,
    behaviour="A byte-order mark and CRLF line ends load.",
)
def test_bom_and_crlf(tmp_path: Path) -> None:
    """A UTF-8 BOM and CRLF line ends are accepted."""
    text = b"\xef\xbb\xbfrun-time:\r\n  job: nightly\r\n"

    loaded = load_yaml(tmp_path / "config.yaml", text)

    assert loaded.settings.job == "nightly"
    assert loaded.origins["job"] == f"{tmp_path / 'config.yaml'}:2 (run-time.job)"


def test_other_sections_ignored(tmp_path: Path) -> None:
    """Sections of the rest of Jibril are not checked."""
    text = "plugin: [a, b]\nrun-time:\n  job: x\ncadences: {flow: 5}\nplugin: [c]\n"

    loaded = load_yaml(tmp_path / "config.yaml", text)

    assert loaded.settings.job == "x"


def test_missing_optional_file(tmp_path: Path) -> None:
    """A missing file at a default-style path gives no values."""
    source = YamlFileSettingsSource(Settings, tmp_path / "absent", required=False)

    assert source() == {}


def test_missing_explicit_file(tmp_path: Path) -> None:
    """A missing file given with --config is an error."""
    path = tmp_path / "absent.yaml"
    env_file = tmp_path / "env"
    env_file.write_text("")

    with pytest.raises(SettingsError) as caught:
        load_settings({}, {}, config_path=path, env_file_path=env_file)

    expected = f"config file {path} not found; check the path given with --config"
    assert str(caught.value) == expected


@pytest.mark.fault(
    case=16,
    behaviour="A config file the daemon's user cannot read (mode 000, read "
    "as nobody when the tests run as root) is one error naming the file and "
    "its permissions.",
)
def test_unreadable_file() -> None:
    """An unreadable config file names the file and its permissions."""
    with open_folder() as folder:
        path = folder / "config.yaml"
        path.write_text("run-time:\n")
        path.chmod(0o000)

        with as_nobody(), pytest.raises(SettingsError) as caught:
            load_settings({}, {}, config_path=path, env_file_path=Path("/dev/null"))

    expected = (
        f"cannot read config file {path}: permission denied; run jibrild as root "
        "or as a user that can read it, or give another path with --config"
    )
    assert str(caught.value) == expected


@pytest.mark.fault(
    case=16,
    behaviour="Each kind of invalid file (syntax, tab, wrong type, unknown key, "
    "duplicate key, ...) raises with file, line and the fix.",
)
@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("run-time:\n  job: [x\n", "3: invalid YAML: expected ',' or ']', but got"),
        (
            "run-time:\n\tjob: x\n",
            "2: tab character in the indentation; indent with spaces",
        ),
        ("- a\n- b\n", "1: expected a mapping, got a list"),
        (
            "run-time: yes\n",
            "1: run-time: expected a mapping of settings, got a single value",
        ),
        (
            "run-time:\n  api: https://x/\n",
            "2: run-time.api: expected a mapping of settings, got a single value",
        ),
        (
            "run-time:\n  api:\n    urll: https://x/\n",
            "3: run-time.api.urll: unknown key; did you mean 'run-time.api.url'?",
        ),
        (
            "run-time:\n  heartbeat_interval: 5\n",
            "2: run-time.heartbeat_interval: unknown key; "
            "did you mean 'run-time.heartbeat-interval'?",
        ),
        (
            "run-time:\n  job: 2024\n",
            "2: run-time.job: expected a non-empty string without control "
            "characters, got 2024, which YAML reads as a number; put it in quotes "
            "to make it a string",
        ),
        (
            "run-time:\n  api:\n    url: [a]\n",
            "3: run-time.api.url: expected an http:// or https:// URL, got a list",
        ),
        (
            "run-time:\n  heartbeat-interval: true\n",
            "2: run-time.heartbeat-interval: expected a number of seconds "
            "from 1 to 86400, got true, which YAML reads as a boolean",
        ),
        (
            "run-time:\n  job: a\n  job: b\n",
            "3: run-time.job: duplicate key (first on line 2)",
        ),
        (
            "run-time:\n  labels: [a]\n",
            "2: run-time.labels: expected a mapping of label keys to strings, "
            "got a list",
        ),
        (
            "run-time:\n  labels:\n    tier: 1\n",
            "3: run-time.labels.tier: expected a string, got 1, which YAML "
            "reads as a number; put it in quotes",
        ),
        (
            "run-time:\n  labels:\n    on: yes\n",
            "3: run-time.labels.on: expected a string, got yes, which YAML "
            "reads as a boolean; put it in quotes",
        ),
        (
            "run-time:\n  labels:\n    tier:\n",
            "3: run-time.labels.tier: the label has no value; "
            "write '' for an empty one",
        ),
        (
            "run-time:\n  labels:\n    -bad: x\n",
            "3: run-time.labels: invalid label key '-bad': use letters, digits, "
            "'-', '_' and '.', starting and ending with a letter or digit",
        ),
    ],
)
def test_invalid_file(tmp_path: Path, text: str, problem: str) -> None:
    """Each kind of invalid file raises with file, line and the problem."""
    path = tmp_path / "config.yaml"

    message = yaml_error(path, text)

    assert message.startswith(f"{path}:{problem}")


def test_invalid_utf8(tmp_path: Path) -> None:
    """Bytes that are not UTF-8 raise with their line."""
    path = tmp_path / "config.yaml"

    message = yaml_error(path, b"run-time:\n  job: \xff\n")

    assert message == f"{path}:2: invalid UTF-8"


def test_invalid_value_from_model(tmp_path: Path) -> None:
    """A value the model rejects names the file, line and dotted key."""
    path = tmp_path / "config.yaml"

    message = yaml_error(path, "run-time:\n  heartbeat-interval: often\n")

    expected = (
        f"{path}:2: run-time.heartbeat-interval: expected a number of seconds "
        "from 1 to 86400, got 'often'"
    )
    assert message == expected


@pytest.mark.parametrize(
    ("value", "kind", "fix"),
    [
        ("123456", "a number", "put it in quotes"),
        ("0x1F", "a number", "put it in quotes"),
        ("12.5", "a number", "put it in quotes"),
        ("yes", "a boolean", "put it in quotes"),
        ("2024-01-01", "a date", "put it in quotes"),
        ("<<", "the merge key '<<'", "put it in quotes"),
        ("=", "the value key '='", "put it in quotes"),
        ("!!binary aGVsbG8=", "a value tagged !!binary", "remove the !!binary tag"),
        ("!!int 5", "a number", "put it in quotes"),
        ("!vault abc", "a value tagged !vault", "remove the !vault tag"),
    ],
)
def test_token_read_as_other_type(
    tmp_path: Path, value: str, kind: str, fix: str
) -> None:
    """A token YAML reads as another type names that type and the fix."""
    path = tmp_path / "config.yaml"

    message = yaml_error(path, f"run-time:\n  api:\n    token: {value}\n")

    expected = (
        f"{path}:3: run-time.api.token: the project token was read as {kind}; {fix}"
    )
    assert message == expected


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        (
            "run-time:\n  job: a\nplugin: [x]\nrun-time:\n  job: b\n",
            "4: run-time: duplicate key (first on line 1)",
        ),
        (
            "log-level: info\nrun-time:\n  job: a\nlog-level: debug\n",
            "4: log-level: duplicate key (first on line 1)",
        ),
        (
            "run-time:\n  job: !!binary aGVsbG8=\n",
            "2: run-time.job: expected a non-empty string without control "
            "characters, got aGVsbG8=, which YAML reads as a value tagged "
            "!!binary; remove the !!binary tag to make it a string",
        ),
        (
            "run-time:\n  labels:\n    tier: !!binary aGVsbG8=\n",
            "3: run-time.labels.tier: expected a string, got aGVsbG8=, which "
            "YAML reads as a value tagged !!binary; remove the !!binary tag",
        ),
        (
            "run-time:\n  heartbeat-interval: !!int often\n",
            "2: run-time.heartbeat-interval: expected a number of seconds "
            "from 1 to 86400, got 'often'",
        ),
        (
            "run-time:\n  zzzzzzzz: 1\n",
            "2: run-time.zzzzzzzz: unknown key; valid keys are run-time.api, "
            "run-time.api.agent-token-path, run-time.api.allow-insecure-http, "
            "run-time.api.ca-file, run-time.api.request-timeout, "
            "run-time.api.token, run-time.api.url, run-time.cluster-name, "
            "run-time.heartbeat-interval, run-time.job, run-time.labels, "
            "run-time.log-level, run-time.runtime-environment",
        ),
    ],
)
def test_invalid_file_exact(tmp_path: Path, text: str, problem: str) -> None:
    """Duplicate own sections, tagged values and unknown keys, exact messages."""
    path = tmp_path / "config.yaml"

    message = yaml_error(path, text)

    assert message == f"{path}:{problem}"


def test_other_top_level_duplicates_ignored(tmp_path: Path) -> None:
    """A duplicate section of the rest of Jibril is left to Jibril."""
    text = "printer: {a: 1}\nrun-time:\n  job: x\nprinter: {a: 2}\n"

    loaded = load_yaml(tmp_path / "config.yaml", text)

    assert loaded.settings.job == "x"


def test_run_time_log_level_alias(tmp_path: Path) -> None:
    """run-time.log-level takes Jibril's level names, in any case."""
    path = tmp_path / "config.yaml"

    loaded = load_yaml(path, "run-time:\n  log-level: WARN\n")

    assert loaded.settings.log_level == "warning"
    assert loaded.origins["log_level"] == f"{path}:2 (run-time.log-level)"


def test_file_over_size_limit(tmp_path: Path) -> None:
    """A config file larger than 1 MiB is rejected."""
    path = tmp_path / "config.yaml"

    message = yaml_error(path, "#" * (1024 * 1024) + "\n")

    expected = (
        f"config file {path} is larger than the 1 MiB limit; "
        "check the path given with --config"
    )
    assert message == expected


def test_file_at_size_limit(tmp_path: Path) -> None:
    """A config file of exactly 1 MiB is read."""
    path = tmp_path / "config.yaml"
    text = "run-time:\n  job: x\n"

    loaded = load_yaml(path, text + "#" * (1024 * 1024 - len(text)))

    assert loaded.settings.job == "x"


def test_default_path_device() -> None:
    """A device at the default path is rejected with advice to replace it."""
    with pytest.raises(SettingsError) as caught:
        YamlFileSettingsSource(Settings, Path("/dev/zero"), required=False)

    expected = (
        "config file /dev/zero is a character device, not a regular file; "
        "replace it, or give another path with --config"
    )
    assert str(caught.value) == expected


def test_syntax_error_hides_token_line(tmp_path: Path) -> None:
    """A syntax error does not quote the line that contains the token."""
    path = tmp_path / "config.yaml"

    message = yaml_error(path, 'run-time:\n  api:\n    token: "s3cr3t-value\n')

    assert "s3cr3t" not in message


def test_token_mode_warning(tmp_path: Path) -> None:
    """A config file with the project token readable by others gives a warning."""
    path = tmp_path / "config.yaml"
    path.write_text("run-time:\n  api:\n    token: abc\n")
    path.chmod(0o640)

    loaded = load_yaml(path, path.read_text())

    expected = (
        f"{path} contains the project token and is readable by group or others "
        f"(mode 0640); run 'chmod 600 {path}'"
    )
    assert loaded.warnings == (expected,)


def test_no_warning_without_token(tmp_path: Path) -> None:
    """A world-readable config file without a token gives no warning."""
    path = tmp_path / "config.yaml"
    path.write_text("run-time:\n  job: x\n")
    path.chmod(0o644)

    loaded = load_yaml(path, path.read_text())

    assert loaded.warnings == ()


_YAML_PIECES = [
    "run-time:",
    "api:",
    "url:",
    "token:",
    "labels:",
    "job:",
    "log-level:",
    "heartbeat-interval:",
    "\n",
    "  ",
    "    ",
    "\t",
    "- ",
    " ",
    "'",
    '"',
    "[",
    "]",
    "{",
    "}",
    "1",
    "yes",
    "null",
    "x",
    "&a ",
    "*a",
    "!!binary ",
    "#",
    ":",
    "https://h/",
    "\r\n",
    "\ufeff",
    "---\n",
]
_YAML_TEXT = st.lists(st.sampled_from(_YAML_PIECES), max_size=40).map("".join)


@pytest.mark.fault(
    case=20,
    behaviour="Any YAML-like text as the config file (hypothesis): settings or a "
    "SettingsError.",
)
@given(text=_YAML_TEXT)
@settings(max_examples=400, deadline=None)
def test_any_yaml_loads_or_raises(text: str) -> None:
    """Any file content gives settings or a SettingsError, nothing else."""
    # A fresh folder per example, because hypothesis reuses tmp_path.
    with tempfile.TemporaryDirectory() as folder, contextlib.suppress(SettingsError):
        load_yaml(Path(folder) / "config.yaml", text)
