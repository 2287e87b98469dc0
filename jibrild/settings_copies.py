"""Copies of the root-only settings files for the sandboxed service.

jibril.service runs the daemon as a dynamic user, which cannot read
/etc/default/jibril, /etc/jibril/config.yaml or a GARNET_API_TOKEN_FILE
once they are 0600 root, as the install steps make them. Before each start
and on each reload, `jibrild copy-settings` runs as root (ExecStartPre=+ and
ExecReload=+) and copies them into the service's runtime folder, owned by
the service's user. The daemon then reads the copies but names the original
files in its messages. The copies live on /run, a tmpfs, and go away when
the service stops, like systemd's own credentials.
"""

import json
import os
import secrets
import signal
from collections.abc import Mapping
from contextlib import suppress
from pathlib import Path

from jibrild.errors import SettingsError
from jibrild.sources import files
from jibrild.sources.env_file import DEFAULT_ENV_FILE_PATH
from jibrild.sources.files import (
    MAX_SETTINGS_FILE_SIZE,
    FileContent,
    FileTooLargeError,
    SpecialFileError,
    read_regular_file,
)
from jibrild.sources.keys import SETTINGS_COPIES_ENV_VAR, TOKEN_FILE_ENV_VAR
from jibrild.sources.yaml_file import DEFAULT_CONFIG_PATH

ENV_FILE_COPY = "env-file"
CONFIG_COPY = "config.yaml"
TOKEN_FILE_COPY = "token-file"  # noqa: S105 -- a file name
# The record of the original each copy was made from, written after the copies.
MANIFEST = "sources.json"


def settings_paths(
    config_path: Path | None, env_file_path: Path | None
) -> dict[str, Path]:
    """Return the settings files the daemon reads, by the name of their copy."""
    env_file = DEFAULT_ENV_FILE_PATH if env_file_path is None else env_file_path
    config = DEFAULT_CONFIG_PATH if config_path is None else config_path
    return {ENV_FILE_COPY: env_file, CONFIG_COPY: config}


def files_to_copy(
    paths: Mapping[str, Path], environ: Mapping[str, str]
) -> dict[str, Path]:
    """Add the project token file to ``paths``, when one is set.

    Under the unit, EnvironmentFile= has put the variables of
    /etc/default/jibril in the environment of copy-settings too.
    """
    token_file = environ.get(TOKEN_FILE_ENV_VAR)
    if not token_file:
        return dict(paths)
    return {**paths, TOKEN_FILE_COPY: Path(token_file)}


def copy_settings(folder: Path, originals: Mapping[str, Path]) -> None:
    """Copy each original into ``folder``, owned by the folder's owner and
    with the original's permission bits, and remove the copy of a missing
    original.

    Every original is read before anything is written, so a failure leaves
    the previous copies whole. Raises SettingsError naming the file.
    """
    contents = {name: _read_original(path) for name, path in originals.items()}
    manifest = {name: str(path) for name, path in originals.items()}

    try:
        folder_fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
    except OSError as error:
        raise SettingsError(
            f"cannot open runtime folder {folder}: {error.strerror}"
        ) from None
    try:
        owner = os.fstat(folder_fd)
        for name, content in contents.items():
            if content is None:
                _remove(folder_fd, folder / name)
            else:
                _write(folder_fd, owner, folder / name, content)
        data = json.dumps(manifest, indent=1).encode() + b"\n"
        _write(folder_fd, owner, folder / MANIFEST, FileContent(data, 0o600))
    finally:
        os.close(folder_fd)


def _read_original(path: Path) -> FileContent | None:
    try:
        return read_regular_file(path, MAX_SETTINGS_FILE_SIZE)
    except FileNotFoundError:
        return None
    except SpecialFileError as error:
        reason = f"it is {error.kind}, not a regular file"
    except FileTooLargeError:
        reason = f"it is larger than {MAX_SETTINGS_FILE_SIZE} bytes"
    except OSError as error:
        reason = error.strerror or str(error)
    raise SettingsError(f"cannot copy {path}: {reason}")


def _write(
    folder_fd: int, owner: os.stat_result, copy: Path, content: FileContent
) -> None:
    # The service's user owns the folder and could plant a link under any
    # name there. So the copy is made under a fresh name that is never
    # followed, then renamed over the old copy: a rename replaces a link
    # instead of following it.
    temporary = f".{copy.name}.{secrets.token_hex(8)}"
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW
    try:
        fd = os.open(temporary, flags, 0o600, dir_fd=folder_fd)
        try:
            os.fchown(fd, owner.st_uid, owner.st_gid)
            # Only the permission bits: a setuid bit means nothing here.
            os.fchmod(fd, content.mode & 0o777)
            _write_all(fd, content.data)
        finally:
            os.close(fd)
        os.rename(temporary, copy.name, src_dir_fd=folder_fd, dst_dir_fd=folder_fd)
    except OSError as error:
        with suppress(OSError):
            os.unlink(temporary, dir_fd=folder_fd)
        raise SettingsError(f"cannot write {copy}: {error.strerror}") from None


def _remove(folder_fd: int, copy: Path) -> None:
    try:
        os.unlink(copy.name, dir_fd=folder_fd)
    except FileNotFoundError:
        pass
    except OSError as error:
        raise SettingsError(f"cannot remove {copy}: {error.strerror}") from None


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def read_copies(folder: Path, paths: Mapping[str, Path]) -> None:
    """Make the settings sources read each original from its copy in
    ``folder`` from now on.

    ``paths`` are the settings files this daemon reads, which must be the
    ones copy-settings copied. Raises SettingsError otherwise.
    """
    manifest = _read_manifest(folder)
    for name, path in paths.items():
        copied = manifest.get(name)
        if copied != str(path):
            raise SettingsError(
                f"copy-settings copied {copied or 'nothing'} but the daemon "
                f"reads {path}; give ExecStartPre= and ExecReload= the same "
                "--config and --env-file options as ExecStart="
            )
    for name, original in manifest.items():
        files.use_stand_in(Path(original), folder / name)


def _read_manifest(folder: Path) -> dict[str, str]:
    path = folder / MANIFEST
    try:
        manifest = json.loads(path.read_bytes())
    except FileNotFoundError:
        raise SettingsError(
            f"{path} not found; {SETTINGS_COPIES_ENV_VAR} is for jibril.service, whose "
            "ExecStartPre= runs 'jibrild copy-settings' first"
        ) from None
    except (OSError, ValueError) as error:
        raise SettingsError(f"cannot read {path}: {error}") from None
    if not isinstance(manifest, dict):
        raise SettingsError(f"{path} is not a JSON object")
    return {str(name): str(original) for name, original in manifest.items()}


def signal_reload(pid: int) -> None:
    """Tell the daemon with ``pid`` to load its settings again."""
    if pid <= 1:
        raise SettingsError(f"--reload-pid {pid} is not a daemon's PID")
    try:
        os.kill(pid, signal.SIGHUP)
    except OSError as error:
        raise SettingsError(
            f"cannot send SIGHUP to PID {pid}: {error.strerror}"
        ) from None
