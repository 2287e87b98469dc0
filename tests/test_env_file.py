"""Tests of the env file parser and of the env file as a settings source."""

import contextlib
import tempfile
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from jibrild.errors import SettingsError
from jibrild.settings import LoadedSettings, load_settings
from jibrild.sources.env_file import (
    Assignment,
    EnvFileSyntaxError,
    parse_env_text,
    read_env_file,
)
from tests.privileges import as_nobody, open_folder


def _load(path: Path, environ: dict[str, str], config: Path) -> LoadedSettings:
    """Load settings from the env file at path next to an empty config file."""
    config.write_text("")
    return load_settings({}, environ, config_path=config, env_file_path=path)


def values(text: str) -> dict[str, str]:
    """Parse text and return the assigned values by name."""
    return {a.name: a.value for a in parse_env_text(text)}


def test_parse_plain_assignments() -> None:
    """Plain NAME=VALUE lines give their values with lines numbered from 1."""
    assignments = parse_env_text("A=1\nB=two words\n")

    assert assignments == [Assignment("A", "1", 1), Assignment("B", "two words", 2)]


@pytest.mark.fault(
    case=17,
    behaviour="Comment and blank lines are skipped.",
)
def test_parse_skips_comments_and_blank_lines() -> None:
    """Lines starting with # or ; and blank lines are skipped."""
    assignments = parse_env_text("# one\n  ; two\n\n   \nA=1\n")

    assert assignments == [Assignment("A", "1", 5)]


def test_parse_trims_unquoted_whitespace() -> None:
    """Whitespace around an unquoted value goes, interior whitespace stays."""
    assert values("A =  x   y  \n") == {"A": "x   y"}


def test_parse_keeps_escaped_trailing_space() -> None:
    """A backslash keeps the next character, even a trailing space."""
    assert values("A=x\\ \\#\\\\\n") == {"A": "x #\\"}


def test_parse_unquoted_continuation() -> None:
    """A backslash at the end of a line joins the next line without newline."""
    assignments = parse_env_text("A=one\\\n  two\nB=3\n")

    assert assignments == [Assignment("A", "one  two", 1), Assignment("B", "3", 3)]


@pytest.mark.fault(
    case=17,
    behaviour="Single quotes keep their content verbatim.",
)
def test_parse_single_quotes_verbatim() -> None:
    """Single quotes keep backslashes, # and newlines verbatim."""
    assignments = parse_env_text("A='x \\n # y\nz'  \nB=1\n")

    assert assignments == [Assignment("A", "x \\n # y\nz", 1), Assignment("B", "1", 3)]


@pytest.mark.fault(
    case=17,
    behaviour="Double quotes take systemd's escapes.",
)
def test_parse_double_quote_escapes() -> None:
    """Double quotes know only the escapes of systemd.exec(5)."""
    text = 'A="q\\" b\\\\ t\\` d\\$ n\\n cont\\\nx"\n'

    assert values(text) == {"A": 'q" b\\ t` d$ n\\n contx'}


@pytest.mark.fault(
    case=17,
    behaviour="An export prefix is accepted.",
)
def test_parse_export_prefix() -> None:
    """An optional `export ` prefix is ignored."""
    assert values("export A=1\nexport\tB=2\nexport=3\n") == {
        "A": "1",
        "B": "2",
        "export": "3",
    }


def test_parse_inline_hash_is_value() -> None:
    """A # after the value belongs to the value, as in systemd."""
    assert values("A=x # y\n") == {"A": "x # y"}


def test_parse_empty_value() -> None:
    """NAME= assigns the empty string."""
    assert values("A=\nB=''\n") == {"A": "", "B": ""}


def test_parse_last_line_without_newline() -> None:
    """The last line needs no newline."""
    assert values("A=1\nB='2'") == {"A": "1", "B": "2"}


@pytest.mark.parametrize(
    ("text", "line", "problem"),
    [
        ("A=1\nnot an assignment\n", 2, "expected NAME=VALUE"),
        (
            "1A=x\n",
            1,
            "invalid variable name; use letters, digits and '_', "
            "not starting with a digit",
        ),
        (
            "\nA='open\n",
            2,
            "unterminated single-quoted value; add the closing '",
        ),
        ('A="open\\"\n', 1, 'unterminated double-quoted value; add the closing "'),
        (
            "A='x' y\n",
            1,
            "unexpected text after the closing quote; quote the whole value",
        ),
    ],
)
def test_parse_malformed_line(text: str, line: int, problem: str) -> None:
    """Each malformed line raises with its line number and the problem."""
    with pytest.raises(EnvFileSyntaxError) as caught:
        parse_env_text(text)

    assert caught.value.line == line
    assert caught.value.problem == problem


@pytest.mark.fault(
    case=17,
    behaviour="A malformed line is one error naming file and line.",
)
def test_malformed_line_names_file_and_line(tmp_path: Path) -> None:
    """A malformed line in a file raises SettingsError with file:line."""
    path = tmp_path / "jibril"
    path.write_text("JIBRIL_JOB=x\nGARNET_API_URL\n")

    with pytest.raises(SettingsError) as caught:
        _load(path, {}, tmp_path / "c.yaml")

    assert str(caught.value) == f"{path}:2: expected NAME=VALUE"


def test_malformed_line_hides_pasted_token(tmp_path: Path) -> None:
    """A token pasted alone on a line is not echoed in the error."""
    path = tmp_path / "jibril"
    path.write_text("s3cr3t-token-value\n")

    with pytest.raises(SettingsError) as caught:
        _load(path, {}, tmp_path / "c.yaml")

    assert "s3cr3t" not in str(caught.value)


@pytest.mark.fault(
    case=17,
    behaviour="A byte-order mark and CRLF line ends load.",
)
def test_env_file_bom_and_crlf(tmp_path: Path) -> None:
    """A UTF-8 BOM and CRLF line ends are accepted."""
    path = tmp_path / "jibril"
    path.write_bytes(b'\xef\xbb\xbfJIBRIL_JOB="nightly"\r\nJIBRIL_LOG_LEVEL=debug\r\n')

    loaded = _load(path, {}, tmp_path / "c.yaml")

    assert loaded.settings.job == "nightly"
    assert loaded.settings.log_level == "debug"
    assert loaded.origins["log_level"] == f"{path}:2 (JIBRIL_LOG_LEVEL)"


def test_env_file_invalid_utf8(tmp_path: Path) -> None:
    """Bytes that are not UTF-8 raise with the line they are on."""
    path = tmp_path / "jibril"
    path.write_bytes(b"A=1\nJIBRIL_JOB=\xff\n")

    with pytest.raises(SettingsError) as caught:
        _load(path, {}, tmp_path / "c.yaml")

    assert str(caught.value) == f"{path}:2: invalid UTF-8; save the file as UTF-8"


def test_env_file_nul_character(tmp_path: Path) -> None:
    """A NUL character raises with its line."""
    path = tmp_path / "jibril"
    path.write_bytes(b"A=1\nB=2\x00\n")

    with pytest.raises(SettingsError) as caught:
        _load(path, {}, tmp_path / "c.yaml")

    assert str(caught.value) == f"{path}:2: NUL character; remove it"


def test_env_file_ignores_other_variables(tmp_path: Path) -> None:
    """Variables that are not settings of jibrild are ignored."""
    path = tmp_path / "jibril"
    path.write_text("JIBRIL_EXTRA_ARGS=--foo\nPATH=/bin\n")

    loaded = _load(path, {}, tmp_path / "c.yaml")

    assert loaded.origins["job"] == "default"


def test_env_file_empty_value_is_unset(tmp_path: Path) -> None:
    """An empty assignment leaves the setting to lower sources."""
    path = tmp_path / "jibril"
    path.write_text("GARNET_API_URL=\n")
    config = tmp_path / "c.yaml"

    loaded = load_settings({}, {}, config_path=_yaml(config), env_file_path=path)

    assert loaded.settings.api_url == "https://yaml.example/"


def _yaml(path: Path) -> Path:
    path.write_text("run-time:\n  api:\n    url: https://yaml.example/\n")
    return path


def test_explicit_env_file_missing(tmp_path: Path) -> None:
    """A missing file given with --env-file is an error."""
    path = tmp_path / "absent"

    with pytest.raises(SettingsError) as caught:
        _load(path, {}, tmp_path / "c.yaml")

    expected = f"env file {path} not found; check the path given with --env-file"
    assert str(caught.value) == expected


@pytest.mark.fault(
    case=17,
    behaviour="An env file the daemon's user cannot read (mode 000, read as "
    "nobody when the tests run as root) is one error naming the file and "
    "its permissions.",
)
def test_env_file_unreadable() -> None:
    """An unreadable env file names the file and its permissions."""
    with open_folder() as folder:
        path = folder / "jibril"
        path.write_text("JIBRIL_JOB=x\n")
        path.chmod(0o000)

        with as_nobody(), pytest.raises(SettingsError) as caught:
            _load(path, {}, Path("/dev/null"))

    expected = (
        f"cannot read env file {path}: permission denied; run jibrild as root "
        "or as a user that can read it, or give another path with --env-file"
    )
    assert str(caught.value) == expected


def test_env_file_directory(tmp_path: Path) -> None:
    """A directory given as env file raises."""
    with pytest.raises(SettingsError) as caught:
        _load(tmp_path, {}, tmp_path / "c.yaml")

    expected = (
        f"env file {tmp_path} is a directory, not a regular file; "
        "check the path given with --env-file"
    )
    assert str(caught.value) == expected


def test_env_file_over_size_limit(tmp_path: Path) -> None:
    """An env file larger than 1 MiB is rejected."""
    path = tmp_path / "jibril"
    path.write_text("#" * (1024 * 1024) + "\n")

    with pytest.raises(SettingsError) as caught:
        _load(path, {}, tmp_path / "c.yaml")

    expected = (
        f"env file {path} is larger than the 1 MiB limit; "
        "check the path given with --env-file"
    )
    assert str(caught.value) == expected


def test_env_file_at_size_limit(tmp_path: Path) -> None:
    """An env file of exactly 1 MiB is read."""
    path = tmp_path / "jibril"
    text = "JIBRIL_JOB=x\n"
    path.write_text(text + "#" * (1024 * 1024 - len(text)))

    loaded = _load(path, {}, tmp_path / "c.yaml")

    assert loaded.settings.job == "x"


def test_read_env_file_rejects_device() -> None:
    """read_env_file, used on reload, rejects a device too."""
    with pytest.raises(SettingsError) as caught:
        read_env_file(Path("/dev/zero"))

    expected = (
        "env file /dev/zero is a character device, not a regular file; "
        "check the path given with --env-file"
    )
    assert str(caught.value) == expected


def test_env_file_token_mode_warning(tmp_path: Path) -> None:
    """An env file with the project token readable by others gives a warning."""
    path = tmp_path / "jibril"
    path.write_text("GARNET_API_TOKEN=abc\n")
    path.chmod(0o644)

    loaded = _load(path, {}, tmp_path / "c.yaml")

    expected = (
        f"{path} contains the project token and is readable by group or others "
        f"(mode 0644); run 'chmod 600 {path}'"
    )
    assert loaded.warnings == (expected,)


def test_env_file_private_mode_no_warning(tmp_path: Path) -> None:
    """An env file of mode 600 with the project token gives no warning."""
    path = tmp_path / "jibril"
    path.write_text("GARNET_API_TOKEN=abc\n")
    path.chmod(0o600)

    loaded = _load(path, {}, tmp_path / "c.yaml")

    assert loaded.warnings == ()


def test_read_env_file_returns_all_variables(tmp_path: Path) -> None:
    """read_env_file returns every assignment, the last one winning."""
    path = tmp_path / "jibril"
    path.write_text("A=1\nOTHER=x\nA=2\n")

    assert read_env_file(path) == {"A": "2", "OTHER": "x"}


# Pieces that reach every branch of the parser, joined at random.
_ENV_PIECES = [*"AJ_=#;'\"\\ \t\r\n$`xy0", "GARNET_API_URL=", "JIBRIL_LABELS="]
_ENV_TEXT = st.lists(st.sampled_from(_ENV_PIECES), max_size=40).map("".join)


@pytest.mark.fault(
    case=20,
    behaviour="Any text given to the EnvironmentFile parser (hypothesis): assignments "
    "or EnvFileSyntaxError.",
)
@given(text=_ENV_TEXT)
@settings(max_examples=300, deadline=None)
def test_parser_any_text(text: str) -> None:
    """Any text gives assignments or an EnvFileSyntaxError, nothing else."""
    with contextlib.suppress(EnvFileSyntaxError):
        parse_env_text(text)


@pytest.mark.fault(
    case=20,
    behaviour="Any bytes as the env file (hypothesis): settings or a SettingsError.",
)
@given(data=st.binary(max_size=120) | _ENV_TEXT.map(str.encode))
@settings(max_examples=200, deadline=None)
def test_env_file_any_bytes_loads_or_raises(data: bytes) -> None:
    """Any file content gives settings or a SettingsError, nothing else."""
    # A fresh folder per example, because hypothesis reuses tmp_path.
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "jibril"
        path.write_bytes(data)
        with contextlib.suppress(SettingsError):
            _load(path, {}, Path(folder) / "c.yaml")
