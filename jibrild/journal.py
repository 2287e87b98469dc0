"""Entries sent to journald over its native socket, with fields of their
own (systemd.journal-fields(7), and the protocol of sd_journal_sendv(3))."""

import re
import socket
from collections.abc import Mapping

SOCKET_PATH = "/run/systemd/journal/socket"

# Stable ids of the key events, so `journalctl MESSAGE_ID=...` finds them on
# every host and in every version. Never change one.
REGISTRATION_COMPLETE = "b23cd8b8758846e692f1dcb9a3a1e6f2"
AGENT_TOKEN_REJECTED = "3233c7652cb2458d93ed0251bc288b93"  # noqa: S105 - an id
REREGISTRATION = "26d6185c93944d5fb2c9781d35d8d939"
IDENTITY_RESET = "800d290868e048f187ccc5170d6d7771"

# Field names are upper-case letters, digits and underscores, start with a
# letter and have at most 64 characters (systemd.journal-fields(7)).
_NOT_IN_NAME = re.compile(r"[^A-Z0-9_]")
_PREFIX = "JIBRIL_"
_NAME_LIMIT = 64


def field_name(key: str) -> str:
    """Return the journal field for a log key: ``agent_id`` -> ``JIBRIL_AGENT_ID``."""
    name = _NOT_IN_NAME.sub("_", key.upper())
    return (_PREFIX + name)[:_NAME_LIMIT]


def event(message_id: str, **fields: object) -> dict[str, str]:
    """Return the journal fields of a key event, for a log call's
    ``journal=`` keyword; the plain line never shows them."""
    named = {field_name(key): str(value) for key, value in fields.items()}
    return {"MESSAGE_ID": message_id, **named}


def encode(fields: Mapping[str, str]) -> bytes:
    """Serialize one entry: ``NAME=value`` lines, and a length-prefixed form
    for a value that contains a newline."""
    parts = []
    for name, value in fields.items():
        data = value.encode("utf-8", errors="replace")
        if b"\n" in data:
            size = len(data).to_bytes(8, "little")
            parts.append(name.encode() + b"\n" + size + data + b"\n")
        else:
            parts.append(name.encode() + b"=" + data + b"\n")
    return b"".join(parts)


class JournalSocket:
    """A datagram socket connected to journald."""

    def __init__(self, path: str = SOCKET_PATH) -> None:
        self._socket = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        try:
            self._socket.connect(path)
        except OSError:
            self._socket.close()
            raise

    def send(self, fields: Mapping[str, str]) -> bool:
        """Send one entry; return False when journald did not take it (an
        entry too big for a datagram, say), so the caller can fall back."""
        try:
            self._socket.send(encode(fields))
        except OSError:
            return False
        return True

    def close(self) -> None:
        """Close the socket."""
        self._socket.close()


def connect(path: str = SOCKET_PATH) -> JournalSocket | None:
    """Return a socket to journald, or None when there is none."""
    try:
        return JournalSocket(path)
    except OSError:
        return None
