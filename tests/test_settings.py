"""Tests of the settings model, source precedence and origins."""

import contextlib
import os
import signal
from collections.abc import Iterator
from pathlib import Path
from types import FrameType

import pytest

from jibrild.errors import SettingsError
from jibrild.settings import (
    SETTING_KEYS,
    LoadedSettings,
    Settings,
    load_settings,
)

FIXTURES = Path(__file__).parent / "fixtures"
URL_KEY = "GARNET_API_URL"


class Files:
    """A config file and an env file in tmp_path, written per test."""

    def __init__(self, folder: Path) -> None:
        self.config = folder / "config.yaml"
        self.env_file = folder / "jibril"
        self.config.write_text("")
        self.env_file.write_text("")

    def load(
        self,
        options: dict[str, object] | None = None,
        environ: dict[str, str] | None = None,
    ) -> LoadedSettings:
        """Load settings from the two files, the options and the environment."""
        return load_settings(
            options or {},
            environ or {},
            config_path=self.config,
            env_file_path=self.env_file,
        )

    def error(
        self,
        options: dict[str, object] | None = None,
        environ: dict[str, str] | None = None,
    ) -> str:
        """Load and return the SettingsError message."""
        with pytest.raises(SettingsError) as caught:
            self.load(options, environ)
        return str(caught.value)


@pytest.fixture
def files(tmp_path: Path) -> Files:
    """Empty config and env files."""
    return Files(tmp_path)


def test_defaults(files: Files) -> None:
    """With no source, every setting has its default and origin 'default'."""
    loaded = files.load()

    assert loaded.settings == Settings()
    assert loaded.settings.api_url == "https://api.garnet.ai/"
    assert loaded.settings.project_token is None
    assert loaded.settings.agent_token_path == Path("/var/lib/jibril/agent.token")
    assert loaded.settings.request_timeout == 10.0
    assert loaded.settings.heartbeat_interval == 60.0
    assert loaded.settings.labels == {}
    assert loaded.settings.runtime_environment == "auto"
    assert loaded.settings.log_level == "info"
    assert dict(loaded.origins) == {key.field: "default" for key in SETTING_KEYS}
    assert loaded.warnings == ()


def test_direct_settings_ignore_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Settings() reads no environment variable of its own."""
    monkeypatch.setenv(URL_KEY, "https://env.example/")

    assert Settings().api_url == "https://api.garnet.ai/"


def test_settings_frozen() -> None:
    """Settings cannot be changed after they are built."""
    settings = Settings()

    with pytest.raises(ValueError, match="frozen"):
        settings.job = "x"  # type: ignore[misc]


def test_setting_keys_cover_every_field() -> None:
    """The key table lists each model field once."""
    fields = [key.field for key in SETTING_KEYS]

    assert sorted(fields) == sorted(Settings.model_fields)


# Precedence, one pair of adjacent sources at a time, then a few others.


def test_option_beats_environment(files: Files) -> None:
    """An option wins over the environment."""
    loaded = files.load(
        {"api_url": "https://option.example/"}, {URL_KEY: "https://env.example/"}
    )

    assert loaded.settings.api_url == "https://option.example/"
    assert loaded.origins["api_url"] == "option --api-url"


def test_environment_beats_env_file(files: Files) -> None:
    """The process environment wins over the env file."""
    files.env_file.write_text("GARNET_API_URL=https://file.example/\n")

    loaded = files.load(environ={URL_KEY: "https://env.example/"})

    assert loaded.settings.api_url == "https://env.example/"
    assert loaded.origins["api_url"] == "environment variable GARNET_API_URL"


def test_env_file_beats_secret_file(files: Files, tmp_path: Path) -> None:
    """A token in the env file wins over a systemd credential."""
    credentials = tmp_path / "credentials"
    credentials.mkdir()
    (credentials / "garnet-api-token").write_text("from-credential\n")
    files.env_file.write_text("GARNET_API_TOKEN=from-env-file\n")
    files.env_file.chmod(0o600)

    loaded = files.load(environ={"CREDENTIALS_DIRECTORY": str(credentials)})

    assert loaded.settings.project_token is not None
    assert loaded.settings.project_token.get_secret_value() == "from-env-file"
    assert loaded.origins["project_token"] == f"{files.env_file}:1 (GARNET_API_TOKEN)"


def test_secret_file_beats_yaml(files: Files, tmp_path: Path) -> None:
    """A token file wins over the token in the YAML file."""
    token_file = tmp_path / "token"
    token_file.write_text("from-file\n")
    files.config.write_text("run-time:\n  api:\n    token: from-yaml\n")
    files.config.chmod(0o600)

    loaded = files.load(environ={"GARNET_API_TOKEN_FILE": str(token_file)})

    assert loaded.settings.project_token is not None
    assert loaded.settings.project_token.get_secret_value() == "from-file"
    expected = f"secret file $GARNET_API_TOKEN_FILE ({token_file})"
    assert loaded.origins["project_token"] == expected


def test_yaml_beats_default(files: Files) -> None:
    """A YAML value wins over the default."""
    files.config.write_text("run-time:\n  api:\n    request-timeout: 3\n")

    loaded = files.load()

    assert loaded.settings.request_timeout == 3.0
    expected = f"{files.config}:3 (run-time.api.request-timeout)"
    assert loaded.origins["request_timeout"] == expected


def test_option_beats_yaml(files: Files) -> None:
    """An option wins over the YAML file."""
    files.config.write_text("run-time:\n  heartbeat-interval: 30\n")

    loaded = files.load({"heartbeat_interval": "15"})

    assert loaded.settings.heartbeat_interval == 15.0
    assert loaded.origins["heartbeat_interval"] == "option --heartbeat-interval"


def test_environment_beats_yaml(files: Files) -> None:
    """The environment wins over the YAML file."""
    files.config.write_text("run-time:\n  job: from-yaml\n")

    loaded = files.load(environ={"JIBRIL_JOB": "from-env"})

    assert loaded.settings.job == "from-env"
    assert loaded.origins["job"] == "environment variable JIBRIL_JOB"


def test_env_file_beats_yaml(files: Files) -> None:
    """The env file wins over the YAML file."""
    files.env_file.write_text("JIBRIL_LOG_LEVEL=error\n")
    files.config.write_text("run-time:\n  log-level: debug\n")

    loaded = files.load()

    assert loaded.settings.log_level == "error"
    assert loaded.origins["log_level"] == f"{files.env_file}:1 (JIBRIL_LOG_LEVEL)"


def test_environment_beats_credential(files: Files, tmp_path: Path) -> None:
    """GARNET_API_TOKEN in the environment wins over a systemd credential."""
    credentials = tmp_path / "credentials"
    credentials.mkdir()
    (credentials / "garnet-api-token").write_text("from-credential")

    loaded = files.load(
        environ={
            "GARNET_API_TOKEN": "from-env",
            "CREDENTIALS_DIRECTORY": str(credentials),
        }
    )

    assert loaded.settings.project_token is not None
    assert loaded.settings.project_token.get_secret_value() == "from-env"
    assert loaded.origins["project_token"] == "environment variable GARNET_API_TOKEN"


def test_labels_replaced_not_merged(files: Files) -> None:
    """Labels of a higher source replace those of a lower one as a whole."""
    files.config.write_text("run-time:\n  labels:\n    a: '1'\n")

    loaded = files.load(environ={"JIBRIL_LABELS": "b=2, c=3,"})

    assert loaded.settings.labels == {"b": "2", "c": "3"}
    assert loaded.origins["labels"] == "environment variable JIBRIL_LABELS"


def test_label_options(files: Files) -> None:
    """Repeated --label options build the labels."""
    loaded = files.load({"labels": ["team=infra", "example.com/tier=1"]})

    assert loaded.settings.labels == {"team": "infra", "example.com/tier": "1"}
    assert loaded.origins["labels"] == "option --label"


def test_empty_environment_value_is_unset(files: Files) -> None:
    """An empty variable leaves the setting to lower sources."""
    files.config.write_text("run-time:\n  job: from-yaml\n")

    loaded = files.load(environ={"JIBRIL_JOB": "", "GARNET_API_TOKEN": " \n"})

    assert loaded.settings.job == "from-yaml"
    assert loaded.settings.project_token is None


def test_unknown_environment_ignored(files: Files) -> None:
    """Variables that are not settings are ignored."""
    loaded = files.load(environ={"GARNET_API_URLS": "x", "HOME": "/root"})

    assert loaded.settings == Settings()


# Secret files.


def test_token_file_from_env_file(files: Files, tmp_path: Path) -> None:
    """GARNET_API_TOKEN_FILE may come from the env file."""
    token_file = tmp_path / "token"
    token_file.write_text("  tok-123\n")
    files.env_file.write_text(f"GARNET_API_TOKEN_FILE={token_file}\n")

    loaded = files.load()

    assert loaded.settings.project_token is not None
    assert loaded.settings.project_token.get_secret_value() == "tok-123"


def test_token_file_beats_credential(files: Files, tmp_path: Path) -> None:
    """GARNET_API_TOKEN_FILE wins over the credentials directory."""
    token_file = tmp_path / "token"
    token_file.write_text("from-file")
    credentials = tmp_path / "credentials"
    credentials.mkdir()
    (credentials / "garnet-api-token").write_text("from-credential")

    loaded = files.load(
        environ={
            "GARNET_API_TOKEN_FILE": str(token_file),
            "CREDENTIALS_DIRECTORY": str(credentials),
        }
    )

    assert loaded.settings.project_token is not None
    assert loaded.settings.project_token.get_secret_value() == "from-file"


def test_credential_read(files: Files, tmp_path: Path) -> None:
    """The systemd credential garnet-api-token gives the project token."""
    credentials = tmp_path / "credentials"
    credentials.mkdir()
    (credentials / "garnet-api-token").write_text("from-credential\n")

    loaded = files.load(environ={"CREDENTIALS_DIRECTORY": str(credentials)})

    assert loaded.settings.project_token is not None
    assert loaded.settings.project_token.get_secret_value() == "from-credential"
    assert loaded.origins["project_token"] == "credential garnet-api-token"


def test_missing_credential_is_fine(files: Files, tmp_path: Path) -> None:
    """A credentials directory without our credential gives no token."""
    loaded = files.load(environ={"CREDENTIALS_DIRECTORY": str(tmp_path)})

    assert loaded.settings.project_token is None


def test_token_and_token_file_conflict(files: Files, tmp_path: Path) -> None:
    """GARNET_API_TOKEN and GARNET_API_TOKEN_FILE together are an error."""
    files.env_file.write_text("GARNET_API_TOKEN=abc\n")
    files.env_file.chmod(0o600)

    message = files.error(environ={"GARNET_API_TOKEN_FILE": str(tmp_path / "t")})

    expected = (
        f"GARNET_API_TOKEN ({files.env_file}:1) and GARNET_API_TOKEN_FILE "
        "(environment variable) are both set; keep only one of them"
    )
    assert message == expected


def test_token_file_conflict_in_env_file(files: Files, tmp_path: Path) -> None:
    """The conflict names the env file line of GARNET_API_TOKEN_FILE."""
    files.env_file.write_text(f"# token\n\nGARNET_API_TOKEN_FILE={tmp_path / 't'}\n")

    message = files.error(environ={"GARNET_API_TOKEN": "abc"})

    expected = (
        "GARNET_API_TOKEN (environment variable) and GARNET_API_TOKEN_FILE "
        f"({files.env_file}:3) are both set; keep only one of them"
    )
    assert message == expected


def test_missing_token_file(files: Files, tmp_path: Path) -> None:
    """A missing token file names the variable and the path."""
    path = tmp_path / "absent"

    message = files.error(environ={"GARNET_API_TOKEN_FILE": str(path)})

    expected = (
        "environment variable GARNET_API_TOKEN_FILE: project token file "
        f"{path} not found; check the path"
    )
    assert message == expected


def test_token_file_directory(files: Files, tmp_path: Path) -> None:
    """A directory as token file names the variable and the path."""
    files.env_file.write_text(f"GARNET_API_TOKEN_FILE={tmp_path}\n")

    message = files.error()

    expected = (
        f"{files.env_file}:1: GARNET_API_TOKEN_FILE: project token file "
        f"{tmp_path} is a directory, not a regular file; check the path"
    )
    assert message == expected


def test_token_file_too_large(files: Files, tmp_path: Path) -> None:
    """A token file larger than 64 KiB is rejected."""
    path = tmp_path / "token"
    path.write_text("a" * (64 * 1024 + 1))

    message = files.error(environ={"GARNET_API_TOKEN_FILE": str(path)})

    expected = (
        "environment variable GARNET_API_TOKEN_FILE: project token file "
        f"{path} is larger than 64 KiB; it must contain only the token"
    )
    assert message == expected


def test_token_file_mode_warning(files: Files, tmp_path: Path) -> None:
    """A token file readable by group or others gives a chmod 600 warning."""
    path = tmp_path / "token"
    path.write_text("abc\n")
    path.chmod(0o644)

    loaded = files.load(environ={"GARNET_API_TOKEN_FILE": str(path)})

    expected = (
        f"{path} contains the project token and is readable by group or others "
        f"(mode 0644); run 'chmod 600 {path}'"
    )
    assert loaded.warnings == (expected,)


def test_token_file_empty_warned(files: Files, tmp_path: Path) -> None:
    """An empty token file sets no project token, and a warning reports it."""
    path = tmp_path / "token"
    path.write_text("\n")
    path.chmod(0o600)

    loaded = files.load(environ={"GARNET_API_TOKEN_FILE": str(path)})

    assert loaded.settings.project_token is None
    expected = (
        "environment variable GARNET_API_TOKEN_FILE: project token file "
        f"{path} is empty; it sets no project token"
    )
    assert loaded.warnings == (expected,)


def test_token_file_byte_order_mark(files: Files, tmp_path: Path) -> None:
    """A byte-order mark before the token is dropped."""
    path = tmp_path / "token"
    path.write_bytes(b"\xef\xbb\xbfabc\n")
    path.chmod(0o600)

    loaded = files.load(environ={"GARNET_API_TOKEN_FILE": str(path)})

    assert loaded.settings.project_token is not None
    assert "abc" == loaded.settings.project_token.get_secret_value()


def test_token_file_relative_rejected(files: Files) -> None:
    """A relative GARNET_API_TOKEN_FILE is rejected with the variable."""
    message = files.error(environ={"GARNET_API_TOKEN_FILE": "token"})

    expected = (
        "environment variable GARNET_API_TOKEN_FILE: project token file token "
        "is not an absolute path; give the full path"
    )
    assert message == expected


def test_private_token_file_no_warning(files: Files, tmp_path: Path) -> None:
    """A token file of mode 600 gives no warning."""
    path = tmp_path / "token"
    path.write_text("abc\n")
    path.chmod(0o600)

    loaded = files.load(environ={"GARNET_API_TOKEN_FILE": str(path)})

    assert loaded.warnings == ()


def test_credential_mode_no_warning(files: Files, tmp_path: Path) -> None:
    """A systemd credential gives no mode warning, as systemd sets its mode."""
    credentials = tmp_path / "credentials"
    credentials.mkdir()
    (credentials / "garnet-api-token").write_text("abc\n")
    (credentials / "garnet-api-token").chmod(0o644)

    loaded = files.load(environ={"CREDENTIALS_DIRECTORY": str(credentials)})

    assert loaded.settings.project_token is not None
    assert loaded.warnings == ()


# Paths that name a FIFO or a device instead of a regular file.


@contextlib.contextmanager
def fails_after(seconds: int) -> Iterator[None]:
    """Raise TimeoutError if the block is still running after seconds."""

    def _raise(signal_number: int, frame: FrameType | None) -> None:
        raise TimeoutError(f"still blocked after {seconds} seconds")

    previous = signal.signal(signal.SIGALRM, _raise)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def _point_at(files: Files, file_role: str, path: Path) -> dict[str, str]:
    """Point the config file, env file or token file at path; return the environment."""
    if file_role == "config":
        files.config = path
    elif file_role == "env_file":
        files.env_file = path
    else:
        return {"GARNET_API_TOKEN_FILE": str(path)}
    return {}


_SPECIAL_FILE_PROBLEMS = {
    "config": "config file {path} is {kind}, not a regular file; "
    "check the path given with --config",
    "env_file": "env file {path} is {kind}, not a regular file; "
    "check the path given with --env-file",
    "token_file": "environment variable GARNET_API_TOKEN_FILE: project token "
    "file {path} is {kind}, not a regular file; check the path",
}


@pytest.mark.parametrize("file_role", sorted(_SPECIAL_FILE_PROBLEMS))
def test_fifo_rejected_without_blocking(
    files: Files, tmp_path: Path, file_role: str
) -> None:
    """A FIFO without a writer is rejected at once instead of read."""
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    environ = _point_at(files, file_role, fifo)

    with fails_after(5):
        message = files.error(environ=environ)

    expected = _SPECIAL_FILE_PROBLEMS[file_role].format(path=fifo, kind="a FIFO")
    assert message == expected


@pytest.mark.parametrize("file_role", sorted(_SPECIAL_FILE_PROBLEMS))
def test_device_rejected(files: Files, file_role: str) -> None:
    """A character device such as /dev/zero is not read as a file."""
    device = Path("/dev/zero")
    environ = _point_at(files, file_role, device)

    message = files.error(environ=environ)

    kind = "a character device"
    assert message == _SPECIAL_FILE_PROBLEMS[file_role].format(path=device, kind=kind)


# Log level names of Jibril, accepted wherever the log level is set.


@pytest.mark.parametrize(
    ("name", "level"),
    [
        ("WARN", "warning"),
        ("Trace", "debug"),
        ("fatal", "error"),
        ("PANIC", "error"),
        ("critical", "error"),
        (" Warning ", "warning"),
    ],
)
def test_log_level_aliases_everywhere(files: Files, name: str, level: str) -> None:
    """Jibril's level names map to jibrild's from each source."""
    files.config.write_text(f"run-time:\n  log-level: '{name}'\n")
    from_yaml = files.load()
    files.env_file.write_text(f"JIBRIL_LOG_LEVEL='{name}'\n")
    from_env_file = files.load()

    from_environment = files.load(environ={"JIBRIL_LOG_LEVEL": name})
    from_option = files.load({"log_level": name})

    assert from_yaml.settings.log_level == level
    assert from_yaml.origins["log_level"] == f"{files.config}:2 (run-time.log-level)"
    assert from_env_file.settings.log_level == level
    assert (
        from_env_file.origins["log_level"] == f"{files.env_file}:1 (JIBRIL_LOG_LEVEL)"
    )
    assert from_environment.settings.log_level == level
    assert (
        from_environment.origins["log_level"] == "environment variable JIBRIL_LOG_LEVEL"
    )
    assert from_option.settings.log_level == level
    assert from_option.origins["log_level"] == "option --log-level"


def test_interval_and_timeout_of_one_second(files: Files) -> None:
    """One second is the smallest heartbeat interval and request timeout."""
    loaded = files.load({"heartbeat_interval": "1", "request_timeout": "1.0"})

    assert loaded.settings.heartbeat_interval == 1.0
    assert loaded.settings.request_timeout == 1.0


# Values the model rejects, one message per field.


@pytest.mark.parametrize(
    ("variable", "value", "problem"),
    [
        (URL_KEY, "ftp://x", "expected an http:// or https:// URL, got 'ftp://x'"),
        (
            URL_KEY,
            "https://",
            "expected an http:// or https:// URL with a host, got 'https://'",
        ),
        (
            URL_KEY,
            "https://u:p@h/",
            "expected a URL without a user name or password, got 'https://***@h/'",
        ),
        (
            URL_KEY,
            "https://user@h/x@y",
            "expected a URL without a user name or password, got 'https://***@h/x@y'",
        ),
        (
            URL_KEY,
            "https://u:p@h:99999/",
            "expected an http:// or https:// URL with a valid port, "
            "got 'https://***@h:99999/'",
        ),
        (
            URL_KEY,
            "https://h/?a=1",
            "expected a URL without a query, fragment or spaces, got 'https://h/?a=1'",
        ),
        (
            URL_KEY,
            "https://h:99999/",
            "expected an http:// or https:// URL with a valid port, got 'https://h:99999/'",
        ),
        (
            URL_KEY,
            "http://garnet.example/",
            "plain http:// to garnet.example would send tokens unencrypted, "
            "got 'http://garnet.example/'; use https://, or set "
            "GARNET_API_ALLOW_INSECURE_HTTP=true (run-time.api.allow-insecure-http)",
        ),
        (
            "GARNET_AGENT_TOKEN_PATH",
            "agent.token",
            "expected an absolute path, got 'agent.token'",
        ),
        (
            "GARNET_API_TIMEOUT",
            "0",
            "expected a number of seconds from 1 to 300, got '0'",
        ),
        (
            "GARNET_API_TIMEOUT",
            "0.5",
            "expected a number of seconds from 1 to 300, got '0.5'",
        ),
        (
            "GARNET_API_TIMEOUT",
            "301",
            "expected a number of seconds from 1 to 300, got '301'",
        ),
        (
            "GARNET_API_TIMEOUT",
            "nan",
            "expected a number of seconds from 1 to 300, got 'nan'",
        ),
        (
            "JIBRIL_HEARTBEAT_INTERVAL",
            "often",
            "expected a number of seconds from 1 to 86400, got 'often'",
        ),
        (
            "JIBRIL_HEARTBEAT_INTERVAL",
            "1e-9",
            "expected a number of seconds from 1 to 86400, got '1e-9'",
        ),
        (
            "JIBRIL_HEARTBEAT_INTERVAL",
            "0.999",
            "expected a number of seconds from 1 to 86400, got '0.999'",
        ),
        (
            "JIBRIL_HEARTBEAT_INTERVAL",
            "86401",
            "expected a number of seconds from 1 to 86400, got '86401'",
        ),
        (
            "GARNET_API_ALLOW_INSECURE_HTTP",
            "maybe",
            "expected true or false (or 1/0, yes/no), got 'maybe'",
        ),
        ("JIBRIL_LABELS", "a=1,b", "expected a label as KEY=VALUE, got 'b'"),
        ("JIBRIL_LABELS", "a=1,a=2", "label 'a' is given more than once"),
        (
            "JIBRIL_LABELS",
            "bad key=1",
            "invalid label key 'bad key': use letters, digits, '-', '_' and "
            "'.', starting and ending with a letter or digit",
        ),
        (
            "JIBRIL_LABELS",
            "Ex.com/a=1",
            "invalid label key 'Ex.com/a': the prefix before '/' must be a "
            "DNS-1123 subdomain such as 'example.com'",
        ),
        (
            "JIBRIL_LABELS",
            f"{'a' * 64}=1",
            f"invalid label key '{'a' * 64}': the name after any prefix is "
            "longer than 63 characters",
        ),
        (
            "JIBRIL_JOB",
            "a\x07b",
            "expected a non-empty string without control characters, got 'a\\x07b'",
        ),
        (
            "JIBRIL_CLUSTER_NAME",
            "Prod_1",
            "expected a DNS-1123 subdomain (lower-case letters, digits, '-' "
            "and '.'), got 'Prod_1'",
        ),
        (
            "JIBRIL_RUNTIME_ENVIRONMENT",
            "docker",
            "expected one of auto, vanilla, container, kubernetes, github, "
            "got 'docker'",
        ),
        (
            "JIBRIL_LOG_LEVEL",
            "verbose",
            "expected one of debug, info, warning, error, got 'verbose'",
        ),
    ],
)
def test_invalid_environment_value(
    files: Files, variable: str, value: str, problem: str
) -> None:
    """Each invalid value names its variable and what is expected."""
    message = files.error(environ={variable: value})

    assert message == f"environment variable {variable}: {problem}"


def test_several_invalid_values_in_one_line(files: Files) -> None:
    """Every invalid field is reported, on one line, each with its origin."""
    files.env_file.write_text("JIBRIL_LOG_LEVEL=loud\n")

    message = files.error({"request_timeout": "-1"})

    expected = (
        "option --request-timeout: expected a number of seconds from 1 to 300, "
        "got '-1'; "
        f"{files.env_file}:1: JIBRIL_LOG_LEVEL: expected one of debug, info, "
        "warning, error, got 'loud'"
    )
    assert message == expected
    assert "\n" not in message


def test_labels_size_limit(files: Files) -> None:
    """Labels over 256 kB in total are rejected."""
    labels = [f"k{i}={'v' * 1000}" for i in range(300)]

    message = files.error({"labels": labels})

    assert message.startswith("option --label: labels take ")
    assert message.endswith("bytes, more than the 256 kB limit")


@pytest.mark.fault(
    case=7,
    behaviour="Plain http:// to a loopback host needs no opt-in.",
)
@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:8080/",
        "http://127.1.2.3/",
        "http://[::1]/",
        "http://localhost/garnet/",
    ],
)
def test_plain_http_to_loopback_allowed(files: Files, url: str) -> None:
    """Plain http:// to a loopback host needs no opt-in."""
    loaded = files.load(environ={URL_KEY: url})

    assert loaded.settings.api_url == url


@pytest.mark.fault(
    case=7,
    behaviour="allow-insecure-http permits plain http:// to another host.",
)
def test_plain_http_allowed_with_opt_in(files: Files) -> None:
    """allow-insecure-http permits plain http:// to another host."""
    loaded = files.load(
        {"allow_insecure_http": True}, {URL_KEY: "http://garnet.example/"}
    )

    assert loaded.settings.allow_insecure_http is True


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("true", True),
        ("1", True),
        ("YES", True),
        ("false", False),
        ("0", False),
        ("no", False),
    ],
)
def test_flag_words(files: Files, text: str, expected: bool) -> None:
    """The flag accepts true/false, 1/0 and yes/no."""
    loaded = files.load(environ={"GARNET_API_ALLOW_INSECURE_HTTP": text})

    assert loaded.settings.allow_insecure_http is expected


def test_ca_file_valid(files: Files) -> None:
    """A readable PEM file is accepted as CA file."""
    loaded = files.load({"ca_file": str(FIXTURES / "ca.pem")})

    assert loaded.settings.ca_file == FIXTURES / "ca.pem"


def test_ca_file_missing(files: Files, tmp_path: Path) -> None:
    """A missing CA file is rejected with its path."""
    path = tmp_path / "absent.pem"

    message = files.error({"ca_file": str(path)})

    assert message == f"option --ca-file: CA file '{path}' not found; check the path"


def test_ca_file_relative_rejected(files: Files) -> None:
    """A relative CA file path is rejected, whatever the working folder."""
    message = files.error({"ca_file": "ca.pem"})

    assert message == "option --ca-file: expected an absolute path, got 'ca.pem'"


def test_ca_file_not_pem(files: Files, tmp_path: Path) -> None:
    """A file without a PEM certificate is rejected."""
    path = tmp_path / "ca.pem"
    path.write_text("not a certificate\n")

    message = files.error({"ca_file": str(path)})

    assert message == f"option --ca-file: CA file '{path}' contains no PEM certificate"


def test_ca_file_fifo(files: Files, tmp_path: Path) -> None:
    """A FIFO as CA file is rejected instead of read."""
    fifo = tmp_path / "ca.pem"
    os.mkfifo(fifo)

    with fails_after(5):
        message = files.error({"ca_file": str(fifo)})

    expected = (
        f"option --ca-file: CA file '{fifo}' is a FIFO, not a regular file; "
        "check the path"
    )
    assert message == expected


def test_api_url_with_path_prefix(files: Files) -> None:
    """A base URL may carry a path prefix."""
    loaded = files.load(environ={URL_KEY: " https://x.example/garnet/ "})

    assert loaded.settings.api_url == "https://x.example/garnet/"


def test_dev_null_files_read_as_empty() -> None:
    """--config /dev/null and --env-file /dev/null mean no file at all."""
    null = Path("/dev/null")

    loaded = load_settings({}, {}, config_path=null, env_file_path=null)

    assert loaded.settings == Settings()
    assert set(loaded.origins.values()) == {"default"}
