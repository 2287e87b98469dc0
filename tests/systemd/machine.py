"""A Debian rootfs booted with systemd-nspawn, so systemd runs as PID 1,
and commands run inside it through nsenter as a user at its shell would."""

import contextlib
import fcntl
import json
import shlex
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

BOOT_TIMEOUT_SECONDS = 60.0
COMMAND_TIMEOUT_SECONDS = 120.0

# nspawn's own name for the machine; nothing registers it anywhere.
MACHINE_NAME = "jibril-test"

HOST_LOCK = "/run/lock/jibril-test-systemd.lock"

# Where nspawn may leave cgroups, by the host's cgroup layout.
_CGROUP_ROOTS = ("/sys/fs/cgroup/systemd", "/sys/fs/cgroup/unified", "/sys/fs/cgroup")

# What a root shell inside would have: no variable of the host leaks in.
_SHELL_ENVIRON = [
    "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    "LANG=C.UTF-8",
    "TERM=dumb",
    "SYSTEMD_PAGER=",
    "SYSTEMD_COLORS=0",
]


@contextlib.contextmanager
def booted(rootfs: Path, console_log: Path) -> Iterator["Machine"]:
    """Boot ``rootfs``, yield the machine, and power it off at the end."""
    # Machines started with --keep-unit share the host's root cgroup and
    # would trip over each other's, so one runs at a time, host-wide.
    with open(HOST_LOCK, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        machine = Machine(rootfs, console_log)
        try:
            machine.boot()
            yield machine
        finally:
            machine.poweroff()


class Machine:
    """The booted machine. ``rootfs`` is shared with the host, so a file
    written under it is seen inside at once."""

    def __init__(self, rootfs: Path, console_log: Path) -> None:
        self.rootfs = rootfs
        self.console_log = console_log
        self._nspawn: subprocess.Popen[bytes] | None = None
        self._pid1 = 0

    def boot(self) -> None:
        """Boot and wait until systemd reports the system as running."""
        with self.console_log.open("ab") as console:
            # --register=no and --keep-unit: there is no systemd on the host
            # to register the machine with or to ask for a scope unit.
            self._nspawn = subprocess.Popen(
                [
                    "systemd-nspawn",
                    f"--directory={self.rootfs}",
                    "--boot",
                    "--register=no",
                    "--keep-unit",
                    "--console=passive",
                    f"--machine={MACHINE_NAME}",
                ],
                stdin=subprocess.DEVNULL,
                stdout=console,
                stderr=subprocess.STDOUT,
            )
        self._pid1 = self._wait_for_pid1()
        self._wait_until_running()

    def poweroff(self) -> None:
        """Shut the machine down and wait for nspawn to end."""
        if self._nspawn is None:
            return
        if self._nspawn.poll() is None:
            self.run("systemctl", "poweroff", check=False)
            try:
                self._nspawn.wait(30)
            except subprocess.TimeoutExpired:
                self._nspawn.kill()
                self._nspawn.wait()
        self._nspawn = None
        _remove_leftover_cgroups()

    def run(
        self, *argv: str, check: bool = True, timeout: float = COMMAND_TIMEOUT_SECONDS
    ) -> subprocess.CompletedProcess[str]:
        """Run a command inside, in all of PID 1's namespaces and its root."""
        command = [
            "nsenter",
            f"--target={self._pid1}",
            "--mount",
            "--uts",
            "--ipc",
            "--net",
            "--pid",
            "--cgroup",
            "--root",
            "--wd",
            "env",
            "-i",
            *_SHELL_ENVIRON,
            *argv,
        ]
        result = subprocess.run(
            command, capture_output=True, text=True, timeout=timeout, check=False
        )
        if check and result.returncode != 0:
            raise AssertionError(
                f"`{shlex.join(argv)}` exited {result.returncode}:\n"
                f"{result.stdout}{result.stderr}"
            )
        return result

    def shell(self, script: str, check: bool = True) -> str:
        """Run a shell command line inside and return its output."""
        return self.run("sh", "-c", script, check=check).stdout

    def systemctl(self, *args: str, check: bool = True) -> str:
        """Run systemctl inside and return its output."""
        return self.run("systemctl", "--no-pager", *args, check=check).stdout

    def show(self, unit: str, prop: str) -> str:
        """Return one property of a unit, as `systemctl show` prints it."""
        return self.systemctl("show", unit, f"--property={prop}", "--value").strip()

    def journal(self, *matches: str) -> list[dict[str, Any]]:
        """Return this boot's journal entries that match, as JSON objects."""
        output = self.run(
            "journalctl", "--boot", "--no-pager", "--output=json", *matches
        ).stdout
        return [json.loads(line) for line in output.splitlines() if line.strip()]

    def write(self, path: str, text: str, mode: int = 0o644) -> None:
        """Write a file inside, owned by root, with ``mode``.

        A link inside the rootfs is replaced, never followed: its target
        would be resolved on the host, outside the machine.
        """
        target = self.rootfs / path.lstrip("/")
        target.parent.mkdir(parents=True, exist_ok=True)
        if not target.parent.resolve().is_relative_to(self.rootfs.resolve()):
            raise AssertionError(f"{path} leads out of the rootfs")
        if target.is_symlink():
            target.unlink()
        target.write_text(text)
        target.chmod(mode)

    def _wait_for_pid1(self) -> int:
        assert self._nspawn is not None
        deadline = time.monotonic() + BOOT_TIMEOUT_SECONDS
        children = Path(f"/proc/{self._nspawn.pid}/task/{self._nspawn.pid}/children")
        while time.monotonic() < deadline:
            if self._nspawn.poll() is not None:
                raise AssertionError(f"systemd-nspawn exited; see {self.console_log}")
            for pid in children.read_text().split():
                # nspawn's first child exits during start-up: skip a PID gone.
                with contextlib.suppress(OSError):
                    if Path(f"/proc/{pid}/comm").read_text().strip() == "systemd":
                        return int(pid)
            time.sleep(0.05)
        raise AssertionError(f"no systemd started; see {self.console_log}")

    def _wait_until_running(self) -> None:
        deadline = time.monotonic() + BOOT_TIMEOUT_SECONDS
        state = ""
        while time.monotonic() < deadline:
            result = self.run("systemctl", "is-system-running", check=False)
            state = result.stdout.strip()
            if state in ("running", "degraded"):
                return
            time.sleep(0.1)
        raise AssertionError(f"system state is still {state!r}")


def _remove_leftover_cgroups() -> None:
    # nspawn with --keep-unit, started outside any systemd, leaves its empty
    # cgroups at the host's root; rmdir only removes empty ones.
    for hierarchy in _CGROUP_ROOTS:
        for name in ("payload", "supervisor"):
            top = Path(hierarchy, name)
            if not top.is_dir():
                continue
            folders = sorted(
                (path for path in top.rglob("*") if path.is_dir()),
                key=lambda path: len(path.parts),
                reverse=True,
            )
            for folder in [*folders, top]:
                with contextlib.suppress(OSError):
                    folder.rmdir()
