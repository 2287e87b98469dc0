"""Tests of entries sent to journald's native socket, received here on a
real datagram socket bound in a temporary folder."""

import io
import os
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from jibrild import logs
from jibrild.journal import REGISTRATION_COMPLETE, encode, event, field_name
from jibrild.logs import configure_logs, get_logger, remember_secret


def decode(datagram: bytes) -> dict[str, str]:
    """Parse an entry the way journald does: NAME=value lines, or NAME, a
    newline, a 64-bit little-endian size and that many bytes."""
    fields: dict[str, str] = {}
    rest = datagram
    while rest:
        line, newline, after = rest.partition(b"\n")
        assert newline, rest
        if b"=" in line:
            name, _, value = line.partition(b"=")
            fields[name.decode()] = value.decode()
            rest = after
            continue
        size = int.from_bytes(after[:8], "little")
        fields[line.decode()] = after[8 : 8 + size].decode()
        assert b"\n" == after[8 + size : 9 + size]
        rest = after[9 + size :]
    return fields


@pytest.fixture
def journald(tmp_path: Path) -> Iterator[socket.socket]:
    """A datagram socket standing in for journald's, at a path of its own."""
    server = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    server.bind(str(tmp_path / "socket"))
    server.settimeout(5)
    yield server
    server.close()


@pytest.fixture
def journal_stderr(tmp_path: Path) -> Iterator[tuple[io.TextIOWrapper, dict[str, str]]]:
    """A stream and a JOURNAL_STREAM value naming it, as systemd sets them."""
    stream = (tmp_path / "stderr").open("w+")
    stat = os.fstat(stream.fileno())
    yield stream, {"JOURNAL_STREAM": f"{stat.st_dev}:{stat.st_ino}"}
    stream.close()


@pytest.fixture(autouse=True)
def _forget_journal_socket() -> Iterator[None]:
    yield
    if logs._journal is not None:
        logs._journal.close()
    logs._journal = None


def test_field_names() -> None:
    """Log keys become valid journal field names under a JIBRIL_ prefix."""
    assert "JIBRIL_AGENT_ID" == field_name("agent_id")
    assert "JIBRIL_NEXT_ATTEMPT_IN" == field_name("next-attempt-in")
    assert 64 == len(field_name("x" * 100))


def test_encode_plain_and_multiline_values() -> None:
    """A value with a newline is sent in the length-prefixed form."""
    data = encode({"MESSAGE": "one", "TRACE": "a\nb"})

    assert b"MESSAGE=one\nTRACE\n" + (3).to_bytes(8, "little") + b"a\nb\n" == data
    assert {"MESSAGE": "one", "TRACE": "a\nb"} == decode(data)


def test_key_event_fields_reach_the_journal(
    journald: socket.socket, journal_stderr: tuple[io.TextIOWrapper, dict[str, str]]
) -> None:
    """A key event carries its MESSAGE_ID and fields, and its MESSAGE is the
    plain line without them."""
    stream, environ = journal_stderr
    configure_logs("info", environ, stream, journal_path=journald.getsockname())

    get_logger().info(
        "agent registration complete",
        journal=event(REGISTRATION_COMPLETE, agent_id="a1", agent_kind="vanilla"),
    )

    fields = decode(journald.recv(65536))
    assert {
        "MESSAGE": "INFO: agent registration complete",
        "PRIORITY": "6",
        "SYSLOG_IDENTIFIER": "jibrild",
        "MESSAGE_ID": REGISTRATION_COMPLETE,
        "JIBRIL_AGENT_ID": "a1",
        "JIBRIL_AGENT_KIND": "vanilla",
    } == fields
    assert "" == Path(stream.name).read_text()


def test_line_fields_become_journal_fields(
    journald: socket.socket, journal_stderr: tuple[io.TextIOWrapper, dict[str, str]]
) -> None:
    """Every key=value of a line is also a field, masked like the line."""
    stream, environ = journal_stderr
    configure_logs("debug", environ, stream, journal_path=journald.getsockname())
    remember_secret("planted-secret-value")

    get_logger().warning(
        "heartbeat failed", attempt=2, error="refused planted-secret-value"
    )

    fields = decode(journald.recv(65536))
    assert "4" == fields["PRIORITY"]
    assert (
        'WARNING: heartbeat failed attempt=2 error="refused **********"'
        == fields["MESSAGE"]
    )
    assert "2" == fields["JIBRIL_ATTEMPT"]
    assert "refused **********" == fields["JIBRIL_ERROR"]


def test_plain_line_when_journald_refuses(
    tmp_path: Path, journal_stderr: tuple[io.TextIOWrapper, dict[str, str]]
) -> None:
    """An entry the socket does not take is written to stderr instead."""
    stream, environ = journal_stderr
    receiver = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    receiver.bind(str(tmp_path / "socket"))
    configure_logs("info", environ, stream, journal_path=str(tmp_path / "socket"))
    # Closing the receiver makes each send fail with ECONNREFUSED.
    receiver.close()

    get_logger().error("agent token rejected", status=401)

    assert (
        "<3>ERROR: agent token rejected status=401\n" == Path(stream.name).read_text()
    )


def test_no_socket_keeps_priority_lines(
    tmp_path: Path, journal_stderr: tuple[io.TextIOWrapper, dict[str, str]]
) -> None:
    """Without journald's socket, the stream gets `<N>` lines as before,
    and a key event's journal fields stay out of the line."""
    stream, environ = journal_stderr
    configure_logs("info", environ, stream, journal_path=str(tmp_path / "none"))

    get_logger().info(
        "agent registration complete", journal=event(REGISTRATION_COMPLETE, a="b")
    )

    assert "<6>INFO: agent registration complete\n" == Path(stream.name).read_text()


def test_plain_lines_outside_systemd(journald: socket.socket) -> None:
    """Without JOURNAL_STREAM nothing goes to the socket, even when one is
    there: a terminal or a container log gets plain lines."""
    stream = io.StringIO()
    configure_logs("info", {}, stream, journal_path=journald.getsockname())

    get_logger().info(
        "agent registration complete", journal=event(REGISTRATION_COMPLETE)
    )

    assert "INFO: agent registration complete\n" == stream.getvalue()
    journald.setblocking(False)
    with pytest.raises(BlockingIOError):
        journald.recv(65536)
