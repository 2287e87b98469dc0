"""Tests of the agent token file, its identity record and the lock."""

import dataclasses
import json
import os
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from pydantic import SecretStr

from jibrild.errors import AlreadyRunningError, TokenStoreError
from jibrild.tokenstore import Identity, TokenStore, token_fingerprint

REPO = Path(__file__).resolve().parent.parent
TOKEN = SecretStr("aaa.bbb.ccc")

# A save under this file size limit (RLIMIT_FSIZE) fails on any file
# larger than it, after writing the smaller ones.
_SIZE_LIMIT = 4096

# Saves one agent token with files limited to the size in argv, ignoring
# SIGXFSZ so that an oversized write fails with EFBIG, as a write fails on a
# full disk. The path, the agent id and the token come from argv too.
_SAVE_SCRIPT = """
import resource
import signal
import sys
from pathlib import Path
from pydantic import SecretStr
from jibrild.tokenstore import Identity, TokenStore, token_fingerprint

size_limit = int(sys.argv[4])
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
resource.setrlimit(resource.RLIMIT_FSIZE, (size_limit, size_limit))
path, agent_id, token = sys.argv[1], sys.argv[2], SecretStr(sys.argv[3])
store = TokenStore(Path(path))
store.prepare()
store.save(
    token,
    Identity(
        agent_id=agent_id,
        agent_kind="vanilla",
        api_url="http://127.0.0.1:1/",
        machine_id="0" * 32,
        registered_at="2026-01-01T00:00:00+00:00",
        token_sha256=token_fingerprint(token),
    ),
)
"""


def _identity(token: SecretStr = TOKEN, agent_id: str = "agent-1") -> Identity:
    return Identity(
        agent_id=agent_id,
        agent_kind="vanilla",
        api_url="http://127.0.0.1:1/",
        machine_id="0" * 32,
        registered_at="2026-01-01T00:00:00+00:00",
        token_sha256=token_fingerprint(token),
    )


@pytest.fixture
def store(tmp_path: Path) -> Iterator[TokenStore]:
    """A prepared (and so locked) store in a new state folder."""
    store = TokenStore(tmp_path / "state" / "agent.token")
    store.prepare()
    yield store
    store.unlock()


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_prepare_creates_private_folder(store: TokenStore) -> None:
    """The state folder is created with mode 0700."""
    assert 0o700 == _mode(store.folder)


def test_save_then_load(store: TokenStore) -> None:
    """A saved token and its record load back as they were."""
    store.save(TOKEN, _identity())

    loaded = store.load()

    assert loaded is not None
    assert TOKEN.get_secret_value() == loaded.token.get_secret_value()
    assert _identity() == loaded.identity


def test_token_file_holds_token_alone(store: TokenStore) -> None:
    """Other tools can read the token file: the token and a newline."""
    store.save(TOKEN, _identity())

    assert "aaa.bbb.ccc\n" == store.token_path.read_text()
    assert 0o600 == _mode(store.token_path)
    assert 0o600 == _mode(store.record_path)


def test_save_leaves_no_temporary_file(store: TokenStore) -> None:
    """After a save the folder has the token, the record and the lock."""
    store.save(TOKEN, _identity())

    names = sorted(path.name for path in store.folder.iterdir())

    assert ["agent.json", "agent.lock", "agent.token"] == names


def test_missing_token_is_none(store: TokenStore) -> None:
    """No token file means no stored token."""
    assert store.load() is None


@pytest.mark.fault(
    case=8,
    behaviour="An empty, blank, non-text or oversized token file counts as no "
    "token, with a warning naming the file.",
)
@pytest.mark.parametrize(
    "content",
    [b"", b"  \n\t\n", b"\xff\xfe\x00token", b"two words", b"a" * (64 * 1024 + 1)],
    ids=["empty", "blank", "binary", "two words", "over 64 KiB"],
)
def test_unusable_token_file_ignored(store: TokenStore, content: bytes) -> None:
    """An empty, blank, non-text or oversized token file counts as no
    token, with a warning that names the file."""
    store.token_path.write_bytes(content)
    store.token_path.chmod(0o600)

    loaded = store.load()

    assert loaded is None
    assert [
        f"agent token file {store.token_path} is empty or not a token; ignoring it"
    ] == store.warnings


def test_surrounding_whitespace_stripped(store: TokenStore) -> None:
    """A token written by hand with a newline loads without it."""
    store.token_path.write_text("  hand.made.token \n")
    store.token_path.chmod(0o600)

    loaded = store.load()

    assert loaded is not None
    assert "hand.made.token" == loaded.token.get_secret_value()
    assert loaded.identity is None


@pytest.mark.fault(
    case=9,
    behaviour="A token file with mode 0644 is warned about and set to 0600.",
)
def test_wide_mode_is_tightened(store: TokenStore) -> None:
    """A token file readable by others is warned about and set to 0600."""
    store.save(TOKEN, _identity())
    store.token_path.chmod(0o644)

    store.load()

    assert 0o600 == _mode(store.token_path)
    assert [
        f"agent token file {store.token_path} had mode 0644; setting it to 0600"
    ] == store.warnings


@pytest.mark.fault(
    case=9,
    behaviour="A symbolic link at the token path is rejected with a clear error.",
)
def test_symlink_rejected(store: TokenStore, tmp_path: Path) -> None:
    """A symbolic link at the token path is an error, not followed."""
    target = tmp_path / "elsewhere"
    target.write_text("x.y.z")
    store.token_path.symlink_to(target)

    with pytest.raises(TokenStoreError) as raised:
        store.load()

    assert (
        f"agent token file {store.token_path} is a symbolic link; remove it, "
        "jibrild writes only regular files in its state folder"
    ) == str(raised.value)


@pytest.mark.fault(
    case=9,
    behaviour="A symbolic link in place of the identity record, the lock "
    "file or the machine-id file is rejected naming the file; its target is "
    "never written.",
)
@pytest.mark.parametrize(
    ("description", "name"),
    [
        ("identity record", "agent.json"),
        ("lock file", "agent.lock"),
        ("machine-id file", "machine-id"),
    ],
)
def test_symlinked_store_file_rejected(
    tmp_path: Path, description: str, name: str
) -> None:
    """No file of the state folder is a way to write elsewhere."""
    folder = tmp_path / "state"
    folder.mkdir(mode=0o700)
    target = tmp_path / "elsewhere"
    target.write_text("keep")
    (folder / name).symlink_to(target)
    store = TokenStore(folder / "agent.token")

    with pytest.raises(TokenStoreError) as raised:
        store.prepare()
        store.save(TOKEN, _identity())
        store.machine_id()
    store.unlock()

    assert str(raised.value).startswith(
        f"{description} {folder / name} is a symbolic link; remove it"
    )
    assert "keep" == target.read_text()
    assert (folder / name).is_symlink()


@pytest.mark.fault(
    case=9,
    behaviour="A save never writes through a symbolic link at the token path.",
)
def test_symlink_not_written_through(store: TokenStore, tmp_path: Path) -> None:
    """Saving over a symbolic link fails and leaves its target untouched."""
    target = tmp_path / "elsewhere"
    target.write_text("keep")
    store.token_path.symlink_to(target)

    with pytest.raises(TokenStoreError):
        store.save(TOKEN, _identity())

    assert "keep" == target.read_text()


@pytest.mark.fault(
    case=9,
    behaviour="A folder at the token path is rejected with a clear error.",
)
def test_folder_at_token_path_rejected(store: TokenStore) -> None:
    """A folder where the token file should be is an error."""
    store.token_path.mkdir()

    with pytest.raises(TokenStoreError) as raised:
        store.load()

    assert (
        f"agent token file {store.token_path} is not a regular file; remove it "
        "or set api.agent-token-path"
    ) == str(raised.value)


@pytest.mark.fault(
    case=8,
    behaviour="A valid-looking leftover temporary file is never read as the token and "
    "is removed at start.",
)
def test_leftover_temporary_file_removed(store: TokenStore) -> None:
    """A temporary file from an interrupted write is never read as the
    token, and prepare removes it."""
    leftover = store.folder / ".tmp-agent.token.1234abcd"
    leftover.write_text("valid.looking.token\n")

    loaded = store.load()
    store.unlock()
    TokenStore(store.token_path).prepare()

    assert loaded is None
    assert not leftover.exists()


def test_record_of_other_token_ignored(store: TokenStore) -> None:
    """A record whose fingerprint is another token's is not trusted."""
    store.save(TOKEN, _identity(SecretStr("other.token.value")))

    loaded = store.load()

    assert loaded is not None
    assert loaded.identity is None
    assert [
        f"identity record {store.record_path} belongs to another agent token; "
        "ignoring it"
    ] == store.warnings


def _without_agent_id() -> str:
    record = dataclasses.asdict(_identity())
    del record["agent_id"]
    return json.dumps(record)


def _with_invalid_previous() -> str:
    record = dataclasses.asdict(_identity())
    return json.dumps({**record, "previous": ["not", "an", "identity"]})


@pytest.mark.parametrize(
    "record",
    ["{not json", "[]", _without_agent_id(), "[" * 20000, _with_invalid_previous()],
    ids=["json", "list", "field", "deep nesting", "previous"],
)
def test_invalid_record_ignored(store: TokenStore, record: str) -> None:
    """A record that is not valid JSON, is nested too deep to parse, is not
    an object or lacks a field is ignored with a warning, and so is one
    whose previous identity is invalid. The token still loads."""
    store.save(TOKEN, _identity())
    store.record_path.write_text(record)

    loaded = store.load()

    assert loaded is not None
    assert loaded.identity is None
    assert [
        f"identity record {store.record_path} is not valid; ignoring it"
    ] == store.warnings


@pytest.mark.fault(
    case=12,
    behaviour="The state folder's lock names the PID that holds it.",
)
def test_second_lock_names_pid(store: TokenStore) -> None:
    """A second daemon on the same folder gets the first one's PID."""
    other = TokenStore(store.token_path)

    with pytest.raises(AlreadyRunningError) as raised:
        other.prepare()

    assert (
        f"another jibrild (PID {os.getpid()}) is using {store.folder}; stop it "
        "first or give this one another api.agent-token-path"
    ) == str(raised.value)


def test_lock_free_after_unlock(store: TokenStore) -> None:
    """Once released, the lock can be taken again."""
    store.unlock()
    other = TokenStore(store.token_path)

    other.prepare()
    other.unlock()


def test_machine_id_made_once(store: TokenStore) -> None:
    """The fallback machine id is made on first use and kept."""
    first = store.machine_id()

    second = TokenStore(store.token_path).machine_id()

    assert first == second
    assert 32 == len(first)
    assert 0o600 == _mode(store.machine_id_path)


@pytest.mark.parametrize("name", ["agent.json", "agent.lock", "machine-id"])
def test_token_name_of_own_file_rejected(tmp_path: Path, name: str) -> None:
    """A token path that is also the record, lock or machine-id file is an
    error, so one file cannot overwrite the other."""
    with pytest.raises(TokenStoreError) as raised:
        TokenStore(tmp_path / name)

    assert (
        f"agent token path {tmp_path / name} is also the name of one of "
        "jibrild's own files beside it; choose a name such as agent.token"
    ) == str(raised.value)


def test_open_folder_mode_warned(tmp_path: Path) -> None:
    """An existing state folder open to others is reported, not changed."""
    folder = tmp_path / "state"
    folder.mkdir(mode=0o755)
    folder.chmod(0o755)
    store = TokenStore(folder / "agent.token")

    store.prepare()
    store.unlock()

    assert [
        f"state folder {folder} has mode 0755; run 'chmod 700 {folder}'"
    ] == store.warnings
    assert 0o755 == _mode(folder)


def test_record_with_extra_field_loads(store: TokenStore) -> None:
    """A record with a field this version does not know still loads."""
    store.save(TOKEN, _identity())
    record = json.loads(store.record_path.read_text())
    store.record_path.write_text(json.dumps({**record, "added_later": "x"}))

    loaded = store.load()

    assert loaded is not None
    assert _identity() == loaded.identity


@pytest.mark.skipif(os.geteuid() != 0, reason="only root can give files away")
def test_root_gives_files_to_folder_owner(tmp_path: Path) -> None:
    """Run by hand as root on the service's state folder, the daemon leaves
    files the service's own user can still read."""
    folder = tmp_path / "state"
    folder.mkdir(mode=0o700)
    os.chown(folder, 65534, 65534)
    store = TokenStore(folder / "agent.token")
    store.prepare()

    store.save(TOKEN, _identity())
    store.unlock()

    for name in ("agent.token", "agent.json", "agent.lock"):
        info = (folder / name).stat()
        assert (65534, 65534) == (info.st_uid, info.st_gid), name


def test_record_before_previous_field_loads(store: TokenStore) -> None:
    """A record written before the previous identity existed still loads."""
    store.token_path.write_text("aaa.bbb.ccc\n")
    store.record_path.write_text(json.dumps(dataclasses.asdict(_identity())))
    store.token_path.chmod(0o600)
    store.record_path.chmod(0o600)

    loaded = store.load()

    assert loaded is not None
    assert _identity() == loaded.identity
    assert [] == store.warnings


def test_save_keeps_previous_identity(store: TokenStore) -> None:
    """Until the next load, the record keeps the replaced token's identity
    beside the new one."""
    new_token = SecretStr("new.agent.token")
    store.save(TOKEN, _identity())

    store.save(new_token, _identity(new_token, agent_id="agent-2"))

    record = json.loads(store.record_path.read_text())
    assert {
        **dataclasses.asdict(_identity(new_token, agent_id="agent-2")),
        "previous": dataclasses.asdict(_identity()),
    } == record
    assert "new.agent.token\n" == store.token_path.read_text()


def test_load_reduces_record_to_token(store: TokenStore) -> None:
    """The lock holder's load rewrites the record to the token's identity
    alone."""
    new_token = SecretStr("new.agent.token")
    store.save(TOKEN, _identity())
    store.save(new_token, _identity(new_token, agent_id="agent-2"))

    loaded = store.load()

    assert loaded is not None
    assert _identity(new_token, agent_id="agent-2") == loaded.identity
    assert dataclasses.asdict(_identity(new_token, agent_id="agent-2")) == (
        json.loads(store.record_path.read_text())
    )
    assert [] == store.warnings


def test_unlocked_load_keeps_record(store: TokenStore) -> None:
    """A load without the lock, as `jibrild status` does, leaves the record
    alone, because the lock holder may be between its two writes."""
    new_token = SecretStr("new.agent.token")
    store.save(TOKEN, _identity())
    store.save(new_token, _identity(new_token, agent_id="agent-2"))
    written = store.record_path.read_text()

    loaded = TokenStore(store.token_path).load()

    assert loaded is not None
    assert _identity(new_token, agent_id="agent-2") == loaded.identity
    assert written == store.record_path.read_text()


def _save_under_size_limit(token_path: Path, agent_id: str, token: str) -> str:
    """Save in a child process whose files may not grow past _SIZE_LIMIT;
    return its stderr."""
    arguments = [str(token_path), agent_id, token, str(_SIZE_LIMIT)]
    result = subprocess.run(
        [sys.executable, "-B", "-c", _SAVE_SCRIPT, *arguments],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=False,
        timeout=30,
    )
    assert 0 != result.returncode, "the save under the size limit succeeded"
    return result.stderr


def test_failed_record_write_keeps_identity(store: TokenStore) -> None:
    """A save whose record cannot be written leaves the stored token with
    its own identity, not a new token beside the old record."""
    store.save(TOKEN, _identity())
    store.unlock()

    stderr = _save_under_size_limit(
        store.token_path, "agent-" + "x" * _SIZE_LIMIT, "new.agent.token"
    )
    after = TokenStore(store.token_path)
    after.prepare()
    loaded = after.load()
    after.unlock()

    assert f"cannot write {store.record_path}: File too large" in stderr
    assert loaded is not None
    assert TOKEN.get_secret_value() == loaded.token.get_secret_value()
    assert _identity() == loaded.identity
    assert [] == after.warnings


def test_failed_token_write_keeps_identity(store: TokenStore) -> None:
    """A save whose token cannot be written after its record leaves the
    stored token with its own identity. The load warns, uses the previous
    identity and rewrites the record to it."""
    store.save(TOKEN, _identity())
    store.unlock()

    stderr = _save_under_size_limit(
        store.token_path, "agent-2", "new." + "t" * _SIZE_LIMIT
    )
    after = TokenStore(store.token_path)
    after.prepare()
    loaded = after.load()
    after.unlock()

    assert f"cannot write {store.token_path}: File too large" in stderr
    assert loaded is not None
    assert TOKEN.get_secret_value() == loaded.token.get_secret_value()
    assert _identity() == loaded.identity
    assert [
        f"identity record {store.record_path} was written for an agent token "
        f"that never reached {store.token_path}, as a save was interrupted; "
        "using the identity of the stored token"
    ] == after.warnings
    assert dataclasses.asdict(_identity()) == json.loads(store.record_path.read_text())


def test_orphaned_agent_id(store: TokenStore) -> None:
    """With the agent token removed, the record still names its agent;
    with the token there, nothing is orphaned."""
    store.save(TOKEN, _identity())

    assert store.orphaned_agent_id() is None
    store.token_path.unlink()
    assert "agent-1" == store.orphaned_agent_id()
    store.record_path.unlink()
    assert store.orphaned_agent_id() is None


def test_folder_as_token_path_rejected(tmp_path: Path) -> None:
    """A folder given as the token path is named with the file to give
    instead, and nothing is made beside it."""
    folder = tmp_path / "jibril"
    folder.mkdir()
    store = TokenStore(folder)

    with pytest.raises(TokenStoreError) as caught:
        store.prepare()

    assert str(caught.value) == (
        f"api.agent-token-path {folder} is a folder; set it to a file in that "
        f"folder, such as {folder / 'agent.token'}"
    )
    assert ["jibril"] == os.listdir(tmp_path)
    assert [] == store.take_warnings()


@pytest.mark.parametrize(
    ("description", "name"),
    [("identity record", "agent.json"), ("machine-id file", "machine-id")],
)
def test_remove_identity_rejects_symlink(
    store: TokenStore, tmp_path: Path, description: str, name: str
) -> None:
    """A symbolic link among the identity files stops the removal before
    anything, the agent token included, is removed."""
    store.save(TOKEN, _identity())
    target = tmp_path / "elsewhere"
    target.write_text("keep")
    (store.folder / name).unlink(missing_ok=True)
    (store.folder / name).symlink_to(target)

    with pytest.raises(TokenStoreError) as raised:
        store.remove_identity()

    assert str(raised.value).startswith(
        f"{description} {store.folder / name} is a symbolic link; remove it"
    )
    assert store.token_path.is_file()
    assert "keep" == target.read_text()


def test_remove_identity_order(store: TokenStore) -> None:
    """The agent token comes before its record, and leftovers of an
    interrupted write are removed too; the lock file stays."""
    store.save(TOKEN, _identity())
    leftover = store.folder / ".tmp-agent.token.0a1b2c3d"
    leftover.write_text("aaa.bbb.ccc\n")

    removed = store.remove_identity()

    assert [store.token_path, leftover, store.record_path] == removed
    assert [store.lock_path] == list(store.folder.iterdir())
    assert None is store.recorded_agent_id()
