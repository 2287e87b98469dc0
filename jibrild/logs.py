"""Log output: structlog set up once, in journald's form or as plain lines."""

import base64
import logging
import os
import re
import sys
from collections.abc import Mapping, MutableMapping
from functools import partial
from typing import TYPE_CHECKING, Any, TextIO

import structlog
from pydantic import SecretStr

from jibrild.journal import SOCKET_PATH as JOURNAL_SOCKET
from jibrild.journal import JournalSocket, field_name
from jibrild.journal import connect as connect_journal

if TYPE_CHECKING:
    from jibrild.settings import Settings

MASK = "**********"

# syslog(3) priorities; journald reads a leading "<N>" as the PRIORITY field
# of a stream line (systemd.exec(5), SyslogLevelPrefix=).
_PRIORITIES = {"debug": 7, "info": 6, "warning": 4, "error": 3, "critical": 2}

_LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "error": logging.ERROR,
}

_SENSITIVE_KEY = re.compile(r"(^|_)(token|secret|password|authorization)$", re.I)
_JWT_LIKE = re.compile(r"eyJ[\w-]{4,}\.[\w-]{4,}\.[\w-]{4,}")

# Every secret the daemon holds, so a last step can mask it wherever it
# turns up in a line, even inside an exception text from a library.
_known_secrets: set[str] = set()

# Shorter secrets get no base64 masks, whose cores would be too short to
# mask safely without hitting other text.
_MIN_BASE64_SECRET = 12


def remember_secret(value: str) -> None:
    """Mask ``value``, and its base64 forms, in every log line from now on."""
    if len(value) >= 4:
        _known_secrets.add(value)
    if len(value) >= _MIN_BASE64_SECRET:
        _known_secrets.update(_base64_cores(value))


def _base64_cores(value: str) -> set[str]:
    """Return, for each alphabet and each of the three byte alignments the
    secret can have inside longer base64 text, the characters that depend
    on the secret's bytes alone."""
    data = value.encode()
    cores = set()
    for encode in (base64.b64encode, base64.urlsafe_b64encode):
        for offset in range(3):
            encoded = encode(b"\0" * offset + data).decode()
            # Skip the characters that mix in the leading filler bytes and
            # the last group, which mixes in padding or following bytes.
            cores.add(encoded[-(-offset * 4 // 3) + 1 : -4])
    return cores


def remember_project_token(settings: "Settings") -> None:
    """Mask the project token of ``settings`` in every log line from now on."""
    if settings.project_token is not None:
        remember_secret(settings.project_token.get_secret_value())


def journal_is_stderr(environ: Mapping[str, str], stream: TextIO) -> bool:
    """Tell whether ``stream`` is the journal stream systemd named in
    JOURNAL_STREAM (systemd.exec(5)), compared by device and inode."""
    device_inode = environ.get("JOURNAL_STREAM", "")
    device, _, inode = device_inode.partition(":")
    if not device.isdigit() or not inode.isdigit():
        return False

    try:
        stat = os.fstat(stream.fileno())
    except (OSError, ValueError):
        return False

    return (stat.st_dev, stat.st_ino) == (int(device), int(inode))


def mask_secrets(text: str) -> str:
    """Return ``text`` with every known or JWT-like secret masked."""
    for secret in _known_secrets:
        text = text.replace(secret, MASK)
    return _JWT_LIKE.sub(MASK, text)


def one_line(text: str) -> str:
    """Return ``text`` masked and with control characters made spaces, so a
    server's message can neither leak a secret nor start a new line (or a
    new sd_notify assignment)."""
    masked = mask_secrets(text)
    return "".join(
        " " if ord(char) < 32 or ord(char) == 127 else char for char in masked
    )


def redact(
    _logger: object, _method: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """Mask values that are, or look like, credentials."""
    for key, value in event_dict.items():
        if isinstance(value, SecretStr) or _SENSITIVE_KEY.search(key):
            event_dict[key] = MASK
        elif isinstance(value, str):
            event_dict[key] = one_line(value)
        elif isinstance(value, BaseException):
            event_dict[key] = one_line(str(value) or type(value).__name__)
    return event_dict


def _format_value(value: object) -> str:
    text = str(value)
    if text == "" or any(char.isspace() or char in "\"'=" for char in text):
        return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return text


def _line(level: str, event_dict: Mapping[str, Any]) -> str:
    event = one_line(str(event_dict.get("event", "")))
    fields = "".join(
        f" {key}={_format_value(value)}"
        for key, value in event_dict.items()
        if key != "event"
    )
    return f"{level.upper()}: {event}{fields}"


class LineRenderer:
    """Render ``LEVEL: message key=value``, with the syslog priority prefix
    when journald reads the stream (it adds its own timestamps)."""

    def __init__(self, journal: bool) -> None:
        self.journal = journal

    def __call__(
        self, _logger: object, method: str, event_dict: MutableMapping[str, Any]
    ) -> str:
        level = event_dict.pop("level", method)
        event_dict.pop("journal", None)
        line = _line(level, event_dict)
        if self.journal:
            return f"<{_PRIORITIES.get(level, 6)}>{line}"
        return line


class JournalRenderer:
    """Render the fields of a journal entry: MESSAGE is the plain line, and
    each key=value of it, plus a key event's ``journal=`` fields, becomes a
    field of its own that journalctl can match."""

    def __call__(
        self, _logger: object, method: str, event_dict: MutableMapping[str, Any]
    ) -> dict[str, dict[str, str]]:
        level = event_dict.pop("level", method)
        extra = event_dict.pop("journal", None) or {}
        fields = {
            "MESSAGE": _line(level, event_dict),
            "PRIORITY": str(_PRIORITIES.get(level, 6)),
            "SYSLOG_IDENTIFIER": "jibrild",
        }
        for key, value in event_dict.items():
            if key != "event":
                fields[field_name(key)] = str(value)
        for name, value in extra.items():
            fields[name] = mask_secrets(str(value))
        return {"fields": fields}


class JournalLogger:
    """Send each entry to journald's socket. An entry the socket rejects is
    written to the stream as a plain line instead."""

    def __init__(self, journal: JournalSocket, stream: TextIO) -> None:
        self._journal = journal
        self._stream = stream

    def msg(self, fields: Mapping[str, str]) -> None:
        """Send one entry."""
        if self._journal.send(fields):
            return
        self._stream.write(f"<{fields['PRIORITY']}>{fields['MESSAGE']}\n")
        self._stream.flush()

    debug = info = warning = error = critical = msg


def _journal_logger(
    journal: JournalSocket, stream: TextIO, *_args: object
) -> JournalLogger:
    return JournalLogger(journal, stream)


# Opened once: configure_logs runs again at every reload.
_journal: JournalSocket | None = None


def _journal_socket(path: str) -> JournalSocket | None:
    global _journal  # noqa: PLW0603 - one socket for the life of the process
    if _journal is None:
        _journal = connect_journal(path)
    return _journal


def configure_logs(
    level: str = "info",
    environ: Mapping[str, str] | None = None,
    stream: TextIO | None = None,
    journal_path: str = JOURNAL_SOCKET,
) -> None:
    """Configure structlog for the whole process; call again to change the
    level (on reload).

    Under systemd with the journal, entries go to journald's native socket
    with fields of their own; elsewhere they are plain lines on ``stream``.
    """
    stream = stream or sys.stderr
    journal = journal_is_stderr(os.environ if environ is None else environ, stream)
    native = _journal_socket(journal_path) if journal else None

    renderer: Any = JournalRenderer() if native else LineRenderer(journal)
    factory: Any = structlog.WriteLoggerFactory(stream)
    if native is not None:
        factory = partial(_journal_logger, native, stream)
    structlog.configure(
        processors=[structlog.processors.add_log_level, redact, renderer],
        wrapper_class=structlog.make_filtering_bound_logger(_LEVELS[level]),
        logger_factory=factory,
        cache_logger_on_first_use=False,
    )


def get_logger() -> Any:
    """Return the process logger."""
    return structlog.get_logger()
