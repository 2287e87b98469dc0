"""Reading of settings files: regular files only, of bounded size, with their mode."""

import os
import stat
from dataclasses import dataclass
from pathlib import Path

from jibrild.errors import SettingsError

# A config file or env file takes a few kB. The cap keeps a wrong path, such
# as a log file, from being read whole into memory.
MAX_SETTINGS_FILE_SIZE = 1024 * 1024
_READ_CHUNK_SIZE = 64 * 1024

_SPECIAL_FILE_KINDS = (
    (stat.S_ISDIR, "a directory"),
    (stat.S_ISFIFO, "a FIFO"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISSOCK, "a socket"),
)


@dataclass(frozen=True)
class FileContent:
    """The bytes of a settings file and its permission bits."""

    data: bytes
    mode: int


class SpecialFileError(Exception):
    """A path that names something other than a regular file, such as a FIFO."""

    def __init__(self, kind: str) -> None:
        super().__init__(kind)
        self.kind = kind  # e.g. "a FIFO", to follow "is"


class FileTooLargeError(Exception):
    """A file larger than its reader accepts."""


_DEV_NULL = Path("/dev/null")

# Settings files read from another path while their own path is still shown
# in messages: the copies jibril.service makes of root-only files.
_stand_ins: dict[Path, Path] = {}


def use_stand_in(original: Path, stand_in: Path) -> None:
    """Read ``original`` from ``stand_in`` from now on."""
    _stand_ins[original] = stand_in


def clear_stand_ins() -> None:
    """Read every settings file from its own path again."""
    _stand_ins.clear()


def read_regular_file(path: Path, max_size: int) -> FileContent:
    """Read a regular file of at most max_size bytes.

    The path is checked before the open, so that a FIFO or a device is never
    opened. The open descriptor is checked again, because the path may have
    changed in between; O_NONBLOCK keeps that open from waiting for a FIFO
    writer. Raises OSError as os.open does, SpecialFileError and
    FileTooLargeError.
    """
    # /dev/null is the usual way to say "no file": read it as empty.
    if path == _DEV_NULL:
        return FileContent(b"", 0o666)
    path = _stand_ins.get(path, path)
    _check_regular(os.stat(path).st_mode)

    descriptor = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY)
    try:
        mode = os.fstat(descriptor).st_mode
        _check_regular(mode)
        data = _read_up_to(descriptor, max_size + 1)
    finally:
        os.close(descriptor)

    if len(data) > max_size:
        raise FileTooLargeError
    return FileContent(data, stat.S_IMODE(mode))


def special_file_kind(mode: int) -> str | None:
    """Name the file type of an st_mode, e.g. "a FIFO", or None for a regular file."""
    if stat.S_ISREG(mode):
        return None

    kinds = (kind for is_kind, kind in _SPECIAL_FILE_KINDS if is_kind(mode))
    return next(kinds, "a special file")


def _check_regular(mode: int) -> None:
    kind = special_file_kind(mode)
    if kind is not None:
        raise SpecialFileError(kind)


def _read_up_to(descriptor: int, limit: int) -> bytes:
    chunks: list[bytes] = []
    size = 0
    while size < limit:
        chunk = os.read(descriptor, min(limit - size, _READ_CHUNK_SIZE))
        if not chunk:
            break

        chunks.append(chunk)
        size += len(chunk)

    return b"".join(chunks)


def read_settings_file(
    path: Path, *, required: bool, description: str, option: str
) -> FileContent | None:
    """Read a whole settings file, or return None when an optional one is missing.

    The error names the file and what to do. `option` is the command-line
    option that chooses the path, and `required` is true when it was given.
    """
    if required:
        advice = f"check the path given with {option}"
    else:
        advice = f"replace it, or give another path with {option}"

    try:
        return read_regular_file(path, MAX_SETTINGS_FILE_SIZE)
    except FileNotFoundError:
        if required:
            raise SettingsError(f"{description} {path} not found; {advice}") from None
        return None
    except PermissionError:
        # The packaged settings files are root's, mode 600.
        message = (
            f"cannot read {description} {path}: permission denied; run jibrild "
            f"as root or as a user that can read it, or give another path with {option}"
        )
        raise SettingsError(message) from None
    except SpecialFileError as error:
        message = f"{description} {path} is {error.kind}, not a regular file; {advice}"
        raise SettingsError(message) from None
    except FileTooLargeError:
        message = f"{description} {path} is larger than the 1 MiB limit; {advice}"
        raise SettingsError(message) from None
    except OSError as error:
        message = f"cannot read {description} {path}: {error.strerror}"
        raise SettingsError(message) from None


def token_mode_warning(path: Path, mode: int) -> str | None:
    """Return a warning when a file with the project token is readable by others."""
    if mode & (stat.S_IRGRP | stat.S_IROTH) == 0:
        return None

    return (
        f"{path} contains the project token and is readable by group or others "
        f"(mode {mode:04o}); run 'chmod 600 {path}'"
    )


def line_of_offset(data: bytes, offset: int) -> int:
    """Return the 1-based line that a byte offset of a file falls on."""
    return data.count(b"\n", 0, offset) + 1
