"""Checks of single setting values that the model applies to every source."""

import ipaddress
import re
import ssl
from pathlib import Path
from urllib.parse import urlsplit

from jibrild.sources.files import special_file_kind

_LOOPBACK_NAMES = {"localhost"}

# The user name and password part of a URL: from "//" up to the last "@"
# before the path, query or fragment, as urlsplit reads it.
_USERINFO = re.compile(r"(?<=//)[^/?#]*@")
# "user:password@" or "user@" anywhere in a text, after "scheme://" or not.
_CREDENTIALS = re.compile(r"[^\s/@'\"<>]+@")


def url_problem(url: str) -> str | None:
    """Describe what makes url unusable as the API base URL, or return None."""
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 -- the property raises ValueError for a bad port
    except ValueError:
        return "expected an http:// or https:// URL with a valid port"

    if parts.scheme.lower() not in {"http", "https"}:
        return "expected an http:// or https:// URL"
    if not parts.hostname:
        return "expected an http:// or https:// URL with a host"
    if parts.username is not None or parts.password is not None:
        return "expected a URL without a user name or password"
    if parts.query or parts.fragment or any(c.isspace() for c in url):
        return "expected a URL without a query, fragment or spaces"
    return None


def hide_userinfo(url: str) -> str:
    """Replace the user name and password of a URL with `***`, for messages."""
    return _USERINFO.sub("***@", url, count=1)


def hide_credentials(text: str) -> str:
    """Replace each ``user:password@`` in a free text, such as a library's
    error message or a proxy variable without a scheme, with `***@`."""
    return _CREDENTIALS.sub("***@", text)


def is_loopback_host(host: str) -> bool:
    """Tell whether host is `localhost`, an address in 127.0.0.0/8 or ::1."""
    if host.lower() in _LOOPBACK_NAMES:
        return True

    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def is_visible_ascii(text: str) -> bool:
    """Tell whether text holds only ASCII characters from '!' to '~'."""
    return all("!" <= character <= "~" for character in text)


def check_pem_file(path: Path) -> None:
    """Raise ValueError unless path is a readable file of PEM certificates."""
    quoted_path = repr(str(path))
    # OpenSSL would block on a FIFO, so anything else than a regular file is
    # rejected first. A path swapped in after this check is not caught.
    kind = _special_file_kind(path)
    if kind is not None:
        message = f"CA file {quoted_path} is {kind}, not a regular file; check the path"
        raise ValueError(message)

    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    try:
        context.load_verify_locations(cafile=path)
    except FileNotFoundError:
        message = f"CA file {quoted_path} not found; check the path"
        raise ValueError(message) from None
    except PermissionError:
        message = (
            f"cannot read CA file {quoted_path}: permission denied; "
            "check its permissions"
        )
        raise ValueError(message) from None
    except ssl.SSLError:
        message = f"CA file {quoted_path} contains no PEM certificate"
        raise ValueError(message) from None
    except OSError as error:
        message = f"cannot read CA file {quoted_path}: {error.strerror}"
        raise ValueError(message) from None


def _special_file_kind(path: Path) -> str | None:
    """Name what path is when it exists and is not a regular file."""
    try:
        return special_file_kind(path.stat().st_mode)
    except OSError:
        return None  # loading the file reports the error
