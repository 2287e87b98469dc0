"""Tests of the sd_notify messages, over a real notify socket."""

import os
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from jibrild.logs import remember_secret
from jibrild.notify import Notifier


@pytest.fixture
def notify_socket(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[socket.socket, str]]:
    """A datagram socket bound where NOTIFY_SOCKET points."""
    path = str(tmp_path / "notify.sock")
    receiver = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    receiver.bind(path)
    receiver.settimeout(2)
    monkeypatch.setenv("NOTIFY_SOCKET", path)
    yield receiver, path
    receiver.close()


def test_ready_carries_status(notify_socket: tuple[socket.socket, str]) -> None:
    """READY=1 goes out with the status line in the same datagram."""
    receiver, _ = notify_socket
    notifier = Notifier()

    notifier.ready("registered as a1")
    notifier.close()

    assert b"READY=1\nSTATUS=registered as a1" == receiver.recv(4096)


def test_non_latin1_status_sent_as_utf8(
    notify_socket: tuple[socket.socket, str],
) -> None:
    """A status quoting a server's text outside Latin-1 still carries
    READY=1, and goes out as UTF-8 as systemd reads it."""
    receiver, _ = notify_socket
    notifier = Notifier()

    notifier.ready("HTTP 503: maintenance \u2014 back soon, caf\u00e9")
    notifier.close()

    expected = "READY=1\nSTATUS=HTTP 503: maintenance \u2014 back soon, caf\u00e9"
    assert expected.encode("utf-8") == receiver.recv(4096)


def test_status_not_repeated(notify_socket: tuple[socket.socket, str]) -> None:
    """The same status twice in a row is sent once."""
    receiver, _ = notify_socket
    notifier = Notifier()

    notifier.set_status("registering (attempt 1)")
    notifier.set_status("registering (attempt 1)")
    notifier.set_status("registered as a1")
    notifier.close()

    assert b"STATUS=registering (attempt 1)" == receiver.recv(4096)
    assert b"STATUS=registered as a1" == receiver.recv(4096)


def test_status_sent_again_after_ready(
    notify_socket: tuple[socket.socket, str],
) -> None:
    """A status given again after READY=1 replaced it is sent again."""
    receiver, _ = notify_socket
    notifier = Notifier()

    notifier.set_status("registering (attempt 1)")
    notifier.ready("registered as a1")
    notifier.set_status("registering (attempt 1)")
    notifier.close()

    assert b"STATUS=registering (attempt 1)" == receiver.recv(4096)
    assert b"READY=1\nSTATUS=registered as a1" == receiver.recv(4096)
    assert b"STATUS=registering (attempt 1)" == receiver.recv(4096)


def test_abstract_socket_address(monkeypatch: pytest.MonkeyPatch) -> None:
    """An address starting with @ is a Linux abstract socket."""
    name = f"jibrild-test-{os.getpid()}"
    monkeypatch.setenv("NOTIFY_SOCKET", "@" + name)
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as receiver:
        receiver.bind("\0" + name)
        receiver.settimeout(2)
        notifier = Notifier()

        notifier.stopping()
        notifier.close()

        assert b"STOPPING=1\nSTATUS=stopping" == receiver.recv(4096)


def test_without_socket_sends_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    """Outside systemd every call is a no-op."""
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    notifier = Notifier()

    notifier.ready("x")
    notifier.ping_watchdog()

    assert notifier.enabled is False


def test_watchdog_interval_is_half(monkeypatch: pytest.MonkeyPatch) -> None:
    """Pings go out at half of WATCHDOG_USEC, in seconds."""
    monkeypatch.setenv("WATCHDOG_USEC", "20000000")
    monkeypatch.delenv("WATCHDOG_PID", raising=False)

    notifier = Notifier()

    assert 10.0 == notifier.watchdog_interval


def test_watchdog_for_another_pid_is_off(monkeypatch: pytest.MonkeyPatch) -> None:
    """WATCHDOG_PID naming another process turns the watchdog off here."""
    monkeypatch.setenv("WATCHDOG_USEC", "20000000")
    monkeypatch.setenv("WATCHDOG_PID", "1")

    notifier = Notifier()

    assert notifier.watchdog_interval is None


def test_watchdog_for_this_pid_is_on(monkeypatch: pytest.MonkeyPatch) -> None:
    """WATCHDOG_PID naming this process keeps the watchdog on."""
    monkeypatch.setenv("WATCHDOG_USEC", "3000000")
    monkeypatch.setenv("WATCHDOG_PID", str(os.getpid()))

    notifier = Notifier()

    assert 1.5 == notifier.watchdog_interval


def test_status_kept_on_one_line(
    notify_socket: tuple[socket.socket, str],
) -> None:
    """A server's text with a newline cannot add a notify assignment, and a
    known secret in it is masked."""
    receiver, _ = notify_socket
    remember_secret("notify-planted-secret")
    notifier = Notifier()

    notifier.set_status("HTTP 500: notify-planted-secret\nMAINPID=1")
    notifier.close()

    assert b"STATUS=HTTP 500: ********** MAINPID=1" == receiver.recv(4096)
