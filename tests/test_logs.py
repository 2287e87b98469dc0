"""Tests of the log line format and of secret masking."""

import base64
import io
import os
from pathlib import Path

import pytest
import structlog
from pydantic import SecretStr

from jibrild.logs import MASK, configure_logs, get_logger, remember_secret


@pytest.fixture(autouse=True)
def _reset_structlog() -> None:
    structlog.reset_defaults()


def _log_to(stream: io.TextIOBase | object, environ: dict[str, str]) -> None:
    # No journald socket: these tests are about the stream's lines.
    configure_logs(  # type: ignore[arg-type]
        "debug", environ, stream, journal_path="/nonexistent/journal/socket"
    )


def test_plain_line_format() -> None:
    """Outside the journal a line is LEVEL: message key=value."""
    stream = io.StringIO()
    _log_to(stream, {})

    get_logger().warning("heartbeat failed", attempt=2, error="timed out")

    assert (
        'WARNING: heartbeat failed attempt=2 error="timed out"\n' == stream.getvalue()
    )


def test_message_without_fields_exact() -> None:
    """A message with no fields is printed exactly."""
    stream = io.StringIO()
    _log_to(stream, {})

    get_logger().info("agent registration complete")

    assert "INFO: agent registration complete\n" == stream.getvalue()


def test_journal_stream_gets_priority_prefix(tmp_path: Path) -> None:
    """When stderr is JOURNAL_STREAM, lines start with the syslog priority."""
    with (tmp_path / "journal").open("w+") as stream:
        stat = os.fstat(stream.fileno())
        environ = {"JOURNAL_STREAM": f"{stat.st_dev}:{stat.st_ino}"}
        _log_to(stream, environ)

        get_logger().info("agent kind: vanilla")
        get_logger().warning("heartbeat failed")
        get_logger().error("agent token rejected")

        stream.seek(0)
        lines = stream.read().splitlines()

    assert "<6>INFO: agent kind: vanilla" == lines[0]
    assert "<4>WARNING: heartbeat failed" == lines[1]
    assert "<3>ERROR: agent token rejected" == lines[2]


def test_other_journal_stream_is_plain(tmp_path: Path) -> None:
    """A JOURNAL_STREAM naming another file leaves lines plain."""
    with (tmp_path / "log").open("w+") as stream:
        _log_to(stream, {"JOURNAL_STREAM": "1:2"})

        get_logger().info("stopped")

        stream.seek(0)
        text = stream.read()

    assert "INFO: stopped\n" == text


def test_level_filters_debug() -> None:
    """At info level, debug lines are dropped."""
    stream = io.StringIO()
    configure_logs("info", {}, stream)

    get_logger().debug("heartbeat sent")

    assert "" == stream.getvalue()


def test_secrets_are_masked() -> None:
    """Known secrets, credential keys, SecretStr and JWT-like text are masked."""
    stream = io.StringIO()
    _log_to(stream, {})
    remember_secret("planted-secret-value")
    jwt_like = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ4In0.c2lnbmF0dXJl"

    get_logger().error(
        "failed",
        error="bad planted-secret-value here",
        project_token="abc",
        value=SecretStr("xyz"),
        body=jwt_like,
    )

    line = stream.getvalue()
    assert "planted-secret-value" not in line
    assert "abc" not in line
    assert "xyz" not in line
    assert jwt_like not in line
    assert line.count(MASK) == 4


@pytest.mark.parametrize("prefix", [b"", b"a", b"ab", b"abc"])
def test_base64_secret_masked(prefix: bytes) -> None:
    """A known secret inside base64 text is masked at every alignment."""
    stream = io.StringIO()
    _log_to(stream, {})
    remember_secret("base64-planted-secret")
    encoded = base64.b64encode(prefix + b"base64-planted-secret" + b"!").decode()

    get_logger().warning("failed", error=f"server said {encoded}")

    line = stream.getvalue()
    assert MASK in line
    assert encoded not in line


def test_newlines_do_not_split_a_line() -> None:
    """A value with a newline stays on one line, so one event is one entry."""
    stream = io.StringIO()
    _log_to(stream, {})

    get_logger().warning("failed", error="a\nb")

    assert 1 == len(stream.getvalue().splitlines())
