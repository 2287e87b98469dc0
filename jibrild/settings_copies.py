"""Copies of the root-only settings files for the sandboxed service.

jibril.service runs the daemon as a dynamic user, which cannot read
/etc/default/jibril or /etc/jibril/config.yaml once they are 0600 root, as
the install steps make them. Before each start and on each reload,
`jibrild copy-settings` runs as root (ExecStartPre=+ and ExecReload=+) and
copies both files into the service's runtime folder, owned by the service's
user. The daemon then reads the copies but names the original files in its
messages. The copies live on /run, a tmpfs, and go away when the service
stops, like systemd's own credentials.
"""

import os
import secrets
import signal
from contextlib import suppress
from pathlib import Path

from jibrild.errors import SettingsError
from jibrild.sources import files
from jibrild.sources.env_file import DEFAULT_ENV_FILE_PATH
from jibrild.sources.files import (
    MAX_SETTINGS_FILE_SIZE,
    FileTooLargeError,
    SpecialFileError,
    read_regular_file,
)
from jibrild.sources.yaml_file import DEFAULT_CONFIG_PATH

# Set by jibril.service to its runtime folder, which contains the copies.
COPIES_VARIABLE = "JIBRIL_SETTINGS_COPIES"

ENV_FILE_COPY = "env-file"
CONFIG_COPY = "config.yaml"


def settings_paths(
    config_path: Path | None, env_file_path: Path | None
) -> dict[str, Path]:
    """Return the settings files to copy, by the name of their copy."""
    return {
        ENV_FILE_COPY: DEFAULT_ENV_FILE_PATH
        if env_file_path is None
        else env_file_path,
        CONFIG_COPY: DEFAULT_CONFIG_PATH if config_path is None else config_path,
    }


def copy_settings(folder: Path, originals: dict[str, Path]) -> list[str]:
    """Copy each original into ``folder``, owned by the folder's owner and
    with the original's mode; remove the copy of a missing original.

    Return one line for each file, for the log. Raises SettingsError when an
    original cannot be read.
    """
    folder_fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
    try:
        owner = os.fstat(folder_fd)
        return [
            _copy_one(folder_fd, owner.st_uid, owner.st_gid, name, original)
            for name, original in originals.items()
        ]
    finally:
        os.close(folder_fd)


def _copy_one(folder_fd: int, uid: int, gid: int, name: str, original: Path) -> str:
    try:
        content = read_regular_file(original, MAX_SETTINGS_FILE_SIZE)
    except FileNotFoundError:
        with suppress(FileNotFoundError):
            os.unlink(name, dir_fd=folder_fd)
        return f"{original}: missing"
    except (OSError, SpecialFileError, FileTooLargeError) as error:
        raise SettingsError(f"cannot copy {original}: {_reason(error)}") from None

    # The service's user owns the folder and could plant a link under any
    # name there. So the copy is made under a fresh name that is never
    # followed, then renamed over the old copy: a rename replaces a link
    # instead of following it.
    temporary = f".{name}.{secrets.token_hex(8)}"
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW
    fd = os.open(temporary, flags, 0o600, dir_fd=folder_fd)
    try:
        os.fchown(fd, uid, gid)
        os.fchmod(fd, content.mode)
        _write_all(fd, content.data)
    finally:
        os.close(fd)
    os.rename(temporary, name, src_dir_fd=folder_fd, dst_dir_fd=folder_fd)
    return f"{original}: copied"


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def _reason(error: Exception) -> str:
    if isinstance(error, SpecialFileError):
        return f"it is {error.kind}, not a regular file"
    if isinstance(error, FileTooLargeError):
        return f"it is larger than {MAX_SETTINGS_FILE_SIZE} bytes"
    if isinstance(error, OSError) and error.strerror:
        return error.strerror
    return str(error)


def read_copies(folder: Path, originals: dict[str, Path]) -> None:
    """Make the settings sources read each original from its copy in
    ``folder`` from now on."""
    for name, original in originals.items():
        files.use_stand_in(original, folder / name)


def signal_reload(pid: int) -> None:
    """Tell the daemon with ``pid`` to load its settings again."""
    os.kill(pid, signal.SIGHUP)
