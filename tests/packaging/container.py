"""Containers without a container engine: new PID, mount, UTS and IPC
namespaces, a chroot into the image's rootfs under a writable overlay
layer, and the image's user, environment and command, as `docker run` sets
them up. The network namespace is the host's (`docker run --network host`),
so a container reaches servers on the host's loopback."""

import json
import os
import queue
import secrets
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path

_INIT = Path(__file__).resolve().with_name("container_init.py")


@dataclass(frozen=True)
class Mount:
    """A host file or folder bind-mounted into a container."""

    source: str
    target: str
    read_only: bool = False


@dataclass(frozen=True)
class ContainerSpec:
    """Everything container_init.py needs to start one container."""

    root: str
    argv: list[str]
    environ: dict[str, str]
    uid: int
    gid: int
    groups: list[int]
    workdir: str
    hostname: str
    mounts: list[Mount] = field(default_factory=list)
    # A folder for the overlay's upper and work layers, or None to write
    # to root itself.
    layer: str | None = None
    dockerenv: bool = False
    # As `docker run --cap-drop ALL --security-opt no-new-privileges
    # --read-only`.
    drop_capabilities: bool = False
    no_new_privileges: bool = False
    read_only_root: bool = False

    def to_json(self) -> str:
        """Serialize the spec as container_init.py reads it."""
        return json.dumps(asdict(self))


@dataclass(frozen=True)
class User:
    """A user of an image, resolved from its /etc/passwd and /etc/group."""

    uid: int
    gid: int
    groups: list[int]
    home: str


def resolve_user(root: Path, user: str) -> User:
    """Resolve a Dockerfile USER value (name or uid, then an optional
    ":group") against the image's own account files.

    The rules are those of runc's libcontainer/user.GetExecUser, which
    Docker uses. A numeric value is always an id, and a uid without an
    entry gets gid 0 and home /, as with `docker run --user 1234`. Only a
    value without ":group" gets supplementary groups from /etc/group.
    """
    name, _, group = (user or "0").partition(":")
    accounts = _read_accounts(root / "etc/passwd")
    groups = _read_accounts(root / "etc/group")

    field_index = 2 if name.isdigit() else 0
    entry = next(
        (account for account in accounts if account[field_index] == name), None
    )
    if entry is None and not name.isdigit():
        raise ValueError(f"user {name!r} not found in the image's /etc/passwd")
    uid = int(name) if entry is None else int(entry[2])
    home = "/" if entry is None else entry[5]
    gid = 0 if entry is None else int(entry[3])

    if group:
        field_index = 2 if group.isdigit() else 0
        match = next(
            (account for account in groups if account[field_index] == group), None
        )
        if match is None and not group.isdigit():
            raise ValueError(f"group {group!r} not found in the image's /etc/group")
        gid = int(group) if match is None else int(match[2])
        return User(uid, gid, [], home)

    user_name = entry[0] if entry is not None else None
    supplementary = [
        int(account[2])
        for account in groups
        if user_name and user_name in account[3].split(",")
    ]
    return User(uid, gid, supplementary, home)


def _read_accounts(path: Path) -> list[list[str]]:
    try:
        lines = path.read_text().splitlines()
    except FileNotFoundError:
        return []
    return [line.split(":") for line in lines if line and not line.startswith("#")]


def unshare_command(spec: ContainerSpec) -> list[str]:
    """Return the command that starts ``spec`` as PID 1 of new namespaces.

    --kill-child ends the container when unshare itself is killed, unless
    PID 1 has changed its uid, which clears that signal. Container.close
    kills PID 1 itself for that reason.
    """
    return [
        "unshare",
        "--mount",
        "--pid",
        "--uts",
        "--ipc",
        "--fork",
        "--kill-child",
        "--",
        sys.executable,
        "-I",
        str(_INIT),
        spec.to_json(),
    ]


class Container:
    """A started container: its output lines, its PID 1 and its exit code."""

    def __init__(self, spec: ContainerSpec, stop_signal: str) -> None:
        self.spec = spec
        self.stop_signal = signal.Signals[stop_signal]
        self.stdout: list[str] = []
        self.stderr: list[str] = []
        self._stderr_queue: queue.Queue[str] = queue.Queue()
        self.process = subprocess.Popen(
            unshare_command(spec),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self._readers = [
            threading.Thread(target=self._read_stdout, daemon=True),
            threading.Thread(target=self._read_stderr, daemon=True),
        ]
        for reader in self._readers:
            reader.start()

    def _read_stdout(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.stdout.append(line.rstrip("\n"))

    def _read_stderr(self) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            self._stderr_queue.put(line.rstrip("\n"))

    def _drain(self) -> None:
        """Move the stderr lines read so far into ``self.stderr``."""
        while True:
            try:
                self.stderr.append(self._stderr_queue.get_nowait())
            except queue.Empty:
                return

    def wait_for_line(self, text: str, timeout: float = 30.0) -> str:
        """Return the first stderr line containing ``text``, waiting for it."""
        deadline = time.monotonic() + timeout
        while True:
            exited = self.process.poll() is not None
            if exited:
                self._finish_readers()
            self._drain()
            for line in self.stderr:
                if text in line:
                    return line
            if exited:
                raise AssertionError(
                    f"container exited with {self.process.returncode} before "
                    f"logging {text!r}. Its stderr:\n" + "\n".join(self.stderr)
                )
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"no line with {text!r} after {timeout:g}s. Its stderr:\n"
                    + "\n".join(self.stderr)
                )
            time.sleep(0.05)

    def pid1(self) -> int:
        """Return the host PID of the container's PID 1: unshare's child."""
        children = Path(f"/proc/{self.process.pid}/task/{self.process.pid}/children")
        for _ in range(200):
            pids = children.read_text().split()
            if pids:
                return int(pids[0])
            time.sleep(0.05)
        raise AssertionError("unshare started no child process")

    def stop(self, timeout: float = 30.0) -> int:
        """Send the image's stop signal to PID 1, as `docker stop` does,
        and return the exit code."""
        os.kill(self.pid1(), self.stop_signal)
        return self.wait(timeout)

    def wait(self, timeout: float = 60.0) -> int:
        """Wait for the container to exit and return its exit code."""
        code = self.process.wait(timeout)
        self._finish_readers()
        self._drain()
        return code

    def _kill_pid1(self) -> None:
        children = Path(f"/proc/{self.process.pid}/task/{self.process.pid}/children")
        try:
            pids = children.read_text().split()
        except FileNotFoundError:
            return
        if not pids:
            # PID 1 has not started yet or has exited, and unshare can go.
            self.process.kill()
            return
        try:
            os.kill(int(pids[0]), signal.SIGKILL)
        except ProcessLookupError:
            return

    def _finish_readers(self) -> None:
        for reader in self._readers:
            reader.join(5)

    def close(self) -> None:
        """Kill the container if it still runs.

        SIGKILL goes to PID 1, which ends every process of its PID
        namespace. Killing unshare alone is not enough: --kill-child sets a
        parent-death signal, and the kernel clears it when PID 1 changes
        its uid, so a container of another user would run on and keep the
        output pipes open.
        """
        if self.process.poll() is None:
            self._kill_pid1()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
        self._finish_readers()
        for pipe in (self.process.stdout, self.process.stderr):
            if pipe is not None:
                pipe.close()


def new_hostname() -> str:
    """Return a hostname like the 12 hex digits Docker gives a container."""
    return secrets.token_hex(6)


def container_environ(
    image_env: Mapping[str, str],
    user: User,
    hostname: str,
    variables: Mapping[str, str],
) -> dict[str, str]:
    """Return a container's environment as `docker run` builds it: the
    image's ENV, HOSTNAME, HOME (from the user's entry, or /) unless the
    image sets it, then each ``-e`` variable."""
    environ = {**image_env, "HOSTNAME": hostname}
    environ.setdefault("HOME", user.home)
    environ.update(variables)
    return environ


def run_to_end(spec: ContainerSpec, log: Path) -> int:
    """Run ``spec`` to its end with its output appended to ``log``, and
    return its exit code."""
    with log.open("a") as output:
        return subprocess.run(
            unshare_command(spec),
            stdin=subprocess.DEVNULL,
            stdout=output,
            stderr=subprocess.STDOUT,
            check=False,
        ).returncode
