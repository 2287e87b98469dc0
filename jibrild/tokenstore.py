"""The agent token on disk: the token file, the identity record beside it,
and the lock that keeps one daemon per state folder."""

import contextlib
import dataclasses
import errno
import fcntl
import hashlib
import json
import os
import secrets
import stat
from dataclasses import asdict, dataclass
from pathlib import Path

from pydantic import SecretStr

from jibrild.errors import AlreadyRunningError, TokenStoreError
from jibrild.sources.checks import is_visible_ascii

_TEMP_PREFIX = ".tmp-"
_MAX_TOKEN_BYTES = 64 * 1024

# Record field with the identity of the token that a save is replacing.
# Records written before this field existed lack it and still load.
_PREVIOUS_FIELD = "previous"

# Exceptions that parsing a damaged or hostile identity record raises.
# json.loads raises RecursionError on deeply nested arrays or objects.
_MALFORMED_RECORD = (ValueError, TypeError, KeyError, RecursionError)


@dataclass(frozen=True)
class Identity:
    """Record of the daemon's registration, kept beside the agent token."""

    agent_id: str
    agent_kind: str
    api_url: str
    machine_id: str
    registered_at: str
    token_sha256: str


@dataclass(frozen=True)
class StoredToken:
    """An agent token read from disk, with its identity record when that
    record belongs to this token."""

    token: SecretStr
    identity: Identity | None


def token_fingerprint(token: SecretStr) -> str:
    """Return the SHA-256 of the token, which ties a record to its token."""
    return hashlib.sha256(token.get_secret_value().encode()).hexdigest()


class TokenStore:
    """Read and write the agent token file and its identity record.

    Every write goes to a temporary file in the same folder, is fsynced and
    renamed over the target, then the folder is fsynced, so a crash leaves
    either the old file or the new one, never a partial one.

    A save writes the record before the token, and the record keeps the
    identity of the token it replaces until the next load. Whichever of the
    two renames a crash falls between, the token on disk therefore has its
    identity in the record.
    """

    def __init__(self, token_path: Path) -> None:
        self.token_path = token_path
        self.folder = token_path.parent
        self.record_path = token_path.with_name(token_path.stem + ".json")
        self.lock_path = token_path.with_name(token_path.stem + ".lock")
        self.machine_id_path = self.folder / "machine-id"
        self.warnings: list[str] = []
        self._lock_fd: int | None = None
        self._check_token_name()

    def _check_token_name(self) -> None:
        """Reject a token path that would be one of the store's other files."""
        others = (self.record_path, self.lock_path, self.machine_id_path)
        if self.token_path in others or self.token_path.name.startswith(_TEMP_PREFIX):
            raise TokenStoreError(
                f"agent token path {self.token_path} is also the name of one "
                "of jibrild's own files beside it; choose a name such as "
                "agent.token"
            )

    def prepare(self) -> None:
        """Create the state folder (mode 0700), take its lock, then drop
        temporary files an interrupted write left behind.

        The lock comes first, so a second daemon cannot delete the first
        one's write in progress.
        """
        # A folder given as the token path (/var/lib/jibril for
        # /var/lib/jibril/agent.token) is caught before anything is made
        # beside it or its parent is judged.
        if self.token_path.is_dir():
            raise TokenStoreError(
                f"api.agent-token-path {self.token_path} is a folder; set it to "
                f"a file in that folder, such as {self.token_path / 'agent.token'}"
            )
        try:
            self.folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        except (FileExistsError, NotADirectoryError):
            raise TokenStoreError(
                f"state folder {self.folder} is not a folder; remove what is "
                "there or set api.agent-token-path"
            ) from None
        except OSError as error:
            raise TokenStoreError(
                f"cannot create state folder {self.folder}: {error.strerror}; "
                "create it (mode 0700) or set api.agent-token-path"
            ) from None
        if not self.folder.is_dir():
            raise TokenStoreError(f"state folder {self.folder} is not a folder")

        mode = stat.S_IMODE(self.folder.stat().st_mode)
        if mode & 0o077:
            self.warnings.append(
                f"state folder {self.folder} has mode {mode:04o}; "
                f"run 'chmod 700 {self.folder}'"
            )

        self.lock()
        for leftover in self.folder.glob(_TEMP_PREFIX + "*"):
            with contextlib.suppress(OSError):
                leftover.unlink()

    def take_warnings(self) -> list[str]:
        """Return the warnings gathered so far and forget them."""
        warnings, self.warnings = self.warnings, []
        return warnings

    def lock(self) -> None:
        """Take the state folder's lock, or raise naming the PID holding it."""
        self._check_target(self.lock_path, "lock file")
        try:
            fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600)
            self._match_folder_owner(fd)
        except OSError as error:
            raise TokenStoreError(
                f"cannot open lock file {self.lock_path}: {error.strerror}; "
                f"jibrild needs write access to {self.folder}"
            ) from None

        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 32).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            raise AlreadyRunningError(
                f"another jibrild (PID {holder}) is using {self.folder}; "
                "stop it first or give this one another api.agent-token-path",
                holder,
            ) from None

        try:
            os.ftruncate(fd, 0)
            os.write(fd, f"{os.getpid()}\n".encode())
        except OSError as error:
            os.close(fd)
            raise TokenStoreError(
                f"cannot write the PID to lock file {self.lock_path}: "
                f"{error.strerror}; {_advice(error)}"
            ) from None
        self._lock_fd = fd

    def unlock(self) -> None:
        """Release the lock; the file stays, as other lock users expect."""
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    def load(self) -> StoredToken | None:
        """Return the stored agent token, or None when there is none usable."""
        raw = self._read_private(self.token_path, "agent token file")
        if raw is None:
            return None

        text = _decode_token(raw) if len(raw) <= _MAX_TOKEN_BYTES else None
        if text is None:
            self.warnings.append(
                f"agent token file {self.token_path} is empty or not a token; "
                "ignoring it"
            )
            return None

        token = SecretStr(text)
        return StoredToken(token=token, identity=self._load_identity(token))

    def save(self, token: SecretStr, identity: Identity) -> None:
        """Store the identity record, then the token.

        The record also carries the identity of the token still on disk, so
        a crash before the token is replaced leaves that token usable with
        its own identity.
        """
        self._check_target(self.token_path, "agent token file")
        self._check_target(self.record_path, "identity record")
        previous = self._identity_on_disk()
        if previous is not None and previous.token_sha256 == identity.token_sha256:
            previous = None
        self._write_record(identity, previous)
        self._write_atomic(self.token_path, token.get_secret_value().encode() + b"\n")

    def machine_id(self) -> str:
        """Return this state folder's own machine id, made once, for hosts
        without /etc/machine-id."""
        raw = self._read_private(self.machine_id_path, "machine-id file")
        text = _decode_token(raw) if raw is not None else None
        if text is not None:
            return text

        new_id = secrets.token_hex(16)
        self._write_atomic(self.machine_id_path, new_id.encode() + b"\n")
        return new_id

    def _load_identity(self, token: SecretStr) -> Identity | None:
        raw = self._read_private(self.record_path, "identity record")
        if raw is None:
            return None

        try:
            current, previous = _parse_record(raw)
        except _MALFORMED_RECORD:
            self.warnings.append(
                f"identity record {self.record_path} is not valid; ignoring it"
            )
            return None

        fingerprint = token_fingerprint(token)
        if current.token_sha256 == fingerprint:
            identity = current
        elif previous is not None and previous.token_sha256 == fingerprint:
            self.warnings.append(
                f"identity record {self.record_path} was written for an agent "
                f"token that never reached {self.token_path}, as a save was "
                "interrupted; using the identity of the stored token"
            )
            identity = previous
        else:
            self.warnings.append(
                f"identity record {self.record_path} belongs to another agent "
                "token; ignoring it"
            )
            return None

        if previous is not None:
            self._rewrite_record(identity)
        return identity

    def _rewrite_record(self, identity: Identity) -> None:
        """Reduce the record to the identity of the token on disk.

        Only the lock holder does this, because without the lock a daemon's
        save could be between its two writes, when the record still needs
        both identities.
        """
        if self._lock_fd is None:
            return
        try:
            self._write_record(identity, None)
        except TokenStoreError as error:
            self.warnings.append(
                f"identity record {self.record_path} still contains a previous "
                f"identity, as rewriting it failed: {error}"
            )

    def orphaned_agent_id(self) -> str | None:
        """Return the agent id the identity record names when the agent
        token itself is gone (removed to register again), else None."""
        if _read_quietly(self.token_path) is not None:
            return None
        return self.recorded_agent_id()

    def recorded_agent_id(self) -> str | None:
        """Return the agent id the identity record names, or None when there
        is no valid record."""
        raw_record = _read_quietly(self.record_path)
        if raw_record is None:
            return None
        try:
            current, _previous = _parse_record(raw_record)
        except _MALFORMED_RECORD:
            return None
        return current.agent_id

    def identity_files(self) -> list[Path]:
        """Return the files of the agent identity that exist, in the order
        remove_identity() removes them.

        Besides the agent token and its record, these are the files an
        interrupted write left, which may contain a copy of a token, and the
        folder's own machine id, which a cloned disk must not share.
        """
        leftovers = sorted(self.folder.glob(_TEMP_PREFIX + "*"))
        paths = [self.token_path, *leftovers, self.record_path, self.machine_id_path]
        # lexists: a dangling symbolic link counts too.
        return [path for path in paths if os.path.lexists(path)]

    def remove_identity(self) -> list[Path]:
        """Remove the files of identity_files(); return those removed.

        The caller must have taken the lock. The agent token goes first, because a
        token left without its record would be used with no identity, so
        that neither its machine nor its API URL is checked. A crash after
        the token is gone leaves the record alone instead, and the next
        registration names the agent it replaces. A symbolic link or other
        file that is not a regular one is rejected before anything is
        removed, as save() rejects it.
        """
        self._check_target(self.token_path, "agent token file")
        self._check_target(self.record_path, "identity record")
        self._check_target(self.machine_id_path, "machine-id file")

        removed = []
        for path in self.identity_files():
            try:
                path.unlink()
            except FileNotFoundError:
                continue
            except OSError as error:
                raise TokenStoreError(
                    f"cannot remove {path}: {error.strerror}; {_advice(error)}"
                ) from None
            _fsync_folder(self.folder)
            removed.append(path)
        return removed

    def _identity_on_disk(self) -> Identity | None:
        """Return the identity of the token on disk, or None when there is
        no such token or the record has no identity for it.

        It reads both files without warnings or mode changes, which load()
        reports.
        """
        raw_token = _read_quietly(self.token_path)
        raw_record = _read_quietly(self.record_path)
        text = _decode_token(raw_token) if raw_token is not None else None
        if text is None or raw_record is None:
            return None

        try:
            current, previous = _parse_record(raw_record)
        except _MALFORMED_RECORD:
            return None
        fingerprint = token_fingerprint(SecretStr(text))
        for identity in (current, previous):
            if identity is not None and identity.token_sha256 == fingerprint:
                return identity
        return None

    def _write_record(self, identity: Identity, previous: Identity | None) -> None:
        fields: dict[str, object] = dict(asdict(identity))
        if previous is not None:
            fields[_PREVIOUS_FIELD] = asdict(previous)
        record = json.dumps(fields, indent=2) + "\n"
        self._write_atomic(self.record_path, record.encode())

    def _check_target(self, path: Path, description: str) -> None:
        try:
            mode = path.lstat().st_mode
        except FileNotFoundError:
            return
        except OSError as error:
            raise TokenStoreError(
                f"cannot inspect {description} {path}: {error.strerror}"
            ) from None

        if stat.S_ISLNK(mode):
            raise TokenStoreError(
                f"{description} {path} is a symbolic link; remove it, jibrild writes "
                "only regular files in its state folder"
            )
        if not stat.S_ISREG(mode):
            raise TokenStoreError(
                f"{description} {path} is not a regular file; remove it or set "
                "api.agent-token-path"
            )

    def _read_private(self, path: Path, description: str) -> bytes | None:
        self._check_target(path, description)
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
        except FileNotFoundError:
            return None
        except OSError as error:
            raise TokenStoreError(
                f"cannot read {description} {path}: {error.strerror}"
            ) from None

        with os.fdopen(fd, "rb") as file:
            mode = stat.S_IMODE(os.fstat(file.fileno()).st_mode)
            if mode & 0o077:
                self._tighten(file.fileno(), path, description, mode)
            # Reading one byte over the limit shows a caller that the file is larger.
            return file.read(_MAX_TOKEN_BYTES + 1)

    def _tighten(self, fd: int, path: Path, description: str, mode: int) -> None:
        self.warnings.append(
            f"{description} {path} had mode {mode:04o}; setting it to 0600"
        )
        try:
            os.fchmod(fd, 0o600)
        except OSError as error:
            self.warnings.append(f"cannot chmod {path}: {error.strerror}")

    def _match_folder_owner(self, fd: int) -> None:
        """Give a file root creates to the state folder's owner.

        jibril.service runs as a dynamic user that owns the folder. A
        `jibrild run` started by hand as root would otherwise leave files
        that user cannot read, and the service would then fail to start.
        """
        if os.geteuid() != 0:
            return
        folder = self.folder.stat()
        if (folder.st_uid, folder.st_gid) != (0, 0):
            os.fchown(fd, folder.st_uid, folder.st_gid)

    def _write_atomic(self, path: Path, data: bytes) -> None:
        temp = path.with_name(f"{_TEMP_PREFIX}{path.name}.{secrets.token_hex(4)}")
        try:
            fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            try:
                self._match_folder_owner(fd)
                _write_all(fd, data)
                os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(temp, path)
        except OSError as error:
            with contextlib.suppress(OSError):
                temp.unlink()
            raise TokenStoreError(_write_failure(path, error)) from None
        _fsync_folder(self.folder)


def _parse_record(raw: bytes) -> tuple[Identity, Identity | None]:
    """Parse an identity record into its current identity and the previous
    one, which records of older versions lack."""
    fields = json.loads(raw)
    current = _parse_identity(fields)
    previous = fields.get(_PREVIOUS_FIELD)
    return current, None if previous is None else _parse_identity(previous)


def _parse_identity(fields: object) -> Identity:
    """Build an Identity from a JSON object, ignoring fields it does not
    know, so a record written by a newer jibrild still loads."""
    if not isinstance(fields, dict):
        raise TypeError("identity record is not a JSON object")

    known = {field.name for field in dataclasses.fields(Identity)}
    values = {name: fields[name] for name in known}
    if not all(isinstance(value, str) for value in values.values()):
        raise TypeError("identity record has a field that is not a string")
    return Identity(**values)


def _read_quietly(path: Path) -> bytes | None:
    """Return a store file's first bytes, or None when it cannot be read or
    is larger than any token or record."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    except OSError:
        return None
    with os.fdopen(fd, "rb") as file:
        try:
            raw = file.read(_MAX_TOKEN_BYTES + 1)
        except OSError:
            return None
    return raw if len(raw) <= _MAX_TOKEN_BYTES else None


def _decode_token(raw: bytes) -> str | None:
    try:
        text = raw.decode("ascii").strip()
    except UnicodeDecodeError:
        return None
    if not text or not is_visible_ascii(text):
        return None
    return text


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


def _fsync_folder(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_failure(path: Path, error: OSError) -> str:
    return f"cannot write {path}: {error.strerror}; {_advice(error)}"


def _advice(error: OSError) -> str:
    return {
        errno.ENOSPC: "free some space",
        errno.EROFS: "the file system is read-only",
        errno.EACCES: "check the folder's owner and mode",
        errno.EPERM: "check the folder's owner and mode",
    }.get(error.errno or 0, "check the folder")
