"""The jibril package as an operator uses it, in a clean bookworm machine:
apt-get install, a token in /etc/default/jibril, systemctl start, an
upgrade to a newer build, apt-get remove, a reinstall and apt-get purge.

The tests share one machine booted from CACHE/rootfs-clean and run in file
order: each continues from the state the previous one left.
"""

import os
import shlex
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

import pytest

from garnet_local.testing import LocalGarnet
from tests.systemd.harness import (
    FIRST_START_LINES,
    PROJECT_TOKEN,
    REPORT,
    cursor,
    entries,
    registrations,
    wait_for_message,
)
from tests.systemd.machine import Machine, booted

CHECKOUT = Path(__file__).resolve().parents[2]
NOT_STARTED = (
    "jibril: jibril.service enabled, not started: set GARNET_API_TOKEN in "
    "/etc/default/jibril, then run systemctl start jibril"
)
CONFFILES = ("/etc/default/jibril", "/etc/jibril/config.yaml")
TOKEN_FILE = "/var/lib/jibril/agent.token"
# Where the packages are copied, as an operator would download them.
INBOX = "/srv/packages"

# Left out of the before-and-after comparison: kernel and runtime file
# systems, and what any apt-get run or booted system changes by itself.
CHURN = (
    "/proc",
    "/sys",
    "/dev",
    "/run",
    "/tmp",  # noqa: S108  (left out of a listing, not written)
    "/var/tmp",  # noqa: S108
    "/var/log",
    "/var/cache",
    "/var/lib/apt",
    "/var/lib/dpkg",
)


@dataclass
class Progress:
    """What each test hands to the next one."""

    before: set[str] = field(default_factory=set)
    settings: str = ""
    token: str = ""


STATE = Progress()


class Packages(NamedTuple):
    """The package under test and a newer build of the same source."""

    first: Path
    newer: Path
    newer_version: str


@pytest.fixture(scope="module")
def packages(tmp_path_factory: pytest.TempPathFactory) -> Packages:
    first = Path(os.environ.get("JIBRIL_DEB", ""))
    if not first.is_file():
        pytest.fail("JIBRIL_DEB does not name a package; run `make test-systemd`")

    version = _field(first, "Version")
    newer_version = f"{version}+1"
    out = tmp_path_factory.mktemp("newer")
    environ = {
        **os.environ,
        "DEB_VERSION": newer_version,
        "DEB_CACHE": str(CHECKOUT / ".cache" / "deb"),
        "PYTHON": sys.executable,
    }
    subprocess.run(
        [str(CHECKOUT / "packaging/deb/build"), str(out)],
        env=environ,
        check=True,
        capture_output=True,
    )
    [newer] = out.glob("jibril_*.deb")
    return Packages(first, newer, newer_version)


@pytest.fixture(scope="module")
def clean_machine(cache_dir: Path, packages: Packages) -> Iterator[Machine]:
    rootfs = cache_dir / "rootfs-clean"
    if not (rootfs / "bin/systemctl").exists() or (rootfs / "usr/bin/jibrild").exists():
        pytest.fail(f"no clean rootfs at {rootfs}; run `make test-systemd`")

    inbox = rootfs / INBOX.lstrip("/")
    inbox.mkdir(exist_ok=True)
    for deb in (packages.first, packages.newer):
        (inbox / deb.name).write_bytes(deb.read_bytes())
    with booted(rootfs, cache_dir / "console-clean.log") as running:
        yield running


def _field(deb: Path, name: str) -> str:
    return subprocess.run(
        ["dpkg-deb", "--field", str(deb), name],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()


def apt_get(machine: Machine, *args: str) -> list[str]:
    """Run apt-get as a script would; return its output lines."""
    result = machine.run(
        "env", "DEBIAN_FRONTEND=noninteractive", "apt-get", "-y", "-q", *args
    )
    return (result.stdout + result.stderr).splitlines()


def files(machine: Machine) -> set[str]:
    """Return every path on the machine's root file system, churn aside."""
    prune = " -o ".join(f"-path {shlex.quote(path)}" for path in CHURN)
    output = machine.shell(f"find / -xdev \\( {prune} \\) -prune -o -print")
    return set(output.splitlines())


def read(machine: Machine, path: str) -> str:
    return machine.run("cat", path).stdout


def test_lintian_finds_no_errors(packages: Packages) -> None:
    """lintian reports no error on the package; warnings are listed."""
    result = subprocess.run(
        ["lintian", "--fail-on", "error", str(packages.first)],
        capture_output=True,
        text=True,
        check=False,
    )

    tags = [line for line in result.stdout.splitlines() if line[:2] in ("E:", "W:")]
    errors = [tag for tag in tags if tag.startswith("E:")]
    assert [] == errors
    assert 0 == result.returncode, result.stderr
    REPORT["lintian"] = f"lintian: 0 errors, {len(tags)} warnings {tags}"


def test_install_enables_without_starting(
    clean_machine: Machine, packages: Packages
) -> None:
    """apt-get install enables jibril.service but does not start it while
    no token is configured, and prints one line with the next step."""
    STATE.before = files(clean_machine)

    output = apt_get(clean_machine, "install", f"{INBOX}/{packages.first.name}")

    assert [NOT_STARTED] == [line for line in output if line.startswith("jibril:")]
    assert "enabled" == clean_machine.systemctl("is-enabled", "jibril").strip()
    assert "inactive" == clean_machine.show("jibril", "ActiveState")


def test_install_leaves_settings_root_only(clean_machine: Machine) -> None:
    """Both settings files are conffiles, mode 600, owned by root."""
    modes = clean_machine.run("stat", "-c", "%a %U:%G %n", *CONFFILES).stdout
    conffiles = clean_machine.run(
        "dpkg-query", "--show", "--showformat=${Conffiles}", "jibril"
    ).stdout

    assert [f"600 root:root {path}" for path in CONFFILES] == modes.splitlines()
    for path in CONFFILES:
        assert path in conffiles


def test_start_with_token_registers(
    clean_machine: Machine, garnet: LocalGarnet
) -> None:
    """A token put in /etc/default/jibril as the product page shows, then
    systemctl start: the four first-start lines, the token file, and the
    page's verification commands succeed."""
    garnet.clear_requests()
    after = cursor(clean_machine)
    settings = f"GARNET_API_URL={garnet.url}\nGARNET_API_TOKEN={PROJECT_TOKEN}\n"
    clean_machine.shell(
        f"printf %s {shlex.quote(settings)} | tee /etc/default/jibril >/dev/null"
        " && chmod 600 /etc/default/jibril"
    )

    clean_machine.systemctl("start", "jibril")

    wait_for_message(clean_machine, after, FIRST_START_LINES[-1])
    lines = [e["MESSAGE"] for e in entries(clean_machine, after)]
    assert FIRST_START_LINES == [line for line in lines if line in FIRST_START_LINES]
    assert 1 == registrations(garnet)
    clean_machine.shell("journalctl -u jibril | grep -q 'agent registration complete'")
    listing = clean_machine.run("ls", "-la", TOKEN_FILE).stdout
    assert listing.startswith("-rw------- ")
    STATE.settings = settings
    STATE.token = read(clean_machine, TOKEN_FILE)


def test_upgrade_keeps_identity_and_settings(
    clean_machine: Machine, garnet: LocalGarnet, packages: Packages
) -> None:
    """Upgrading to a newer build restarts the daemon with the edited
    conffiles and the stored agent token, and does not register again."""
    edited_config = (
        read(clean_machine, CONFFILES[1]) + "run-time:\n  log-level: debug\n"
    )
    clean_machine.write(CONFFILES[1], edited_config, mode=0o600)
    old_pid = clean_machine.show("jibril", "MainPID")
    after = cursor(clean_machine)

    apt_get(clean_machine, "install", f"{INBOX}/{packages.newer.name}")

    version = clean_machine.run(
        "dpkg-query", "--show", "--showformat=${Version}", "jibril"
    ).stdout
    assert packages.newer_version == version
    assert "active" == clean_machine.show("jibril", "ActiveState")
    assert old_pid != clean_machine.show("jibril", "MainPID")
    assert STATE.settings == read(clean_machine, CONFFILES[0])
    assert edited_config == read(clean_machine, CONFFILES[1])
    assert STATE.token == read(clean_machine, TOKEN_FILE)
    wait_for_message(clean_machine, after, "using stored agent token")
    assert 1 == registrations(garnet)


def test_remove_stops_service(clean_machine: Machine) -> None:
    """apt-get remove stops the daemon and keeps settings and identity."""
    apt_get(clean_machine, "remove", "jibril")

    assert "inactive" == clean_machine.show("jibril", "ActiveState")
    assert not (clean_machine.rootfs / "usr/bin/jibrild").exists()
    assert STATE.settings == read(clean_machine, CONFFILES[0])
    assert STATE.token == read(clean_machine, TOKEN_FILE)


def test_reinstall_with_token_starts(
    clean_machine: Machine, garnet: LocalGarnet, packages: Packages
) -> None:
    """Installed again over kept settings and identity, the service starts
    by itself and uses the stored agent token."""
    after = cursor(clean_machine)

    output = apt_get(clean_machine, "install", f"{INBOX}/{packages.newer.name}")

    assert [] == [line for line in output if line.startswith("jibril:")]
    assert "active" == clean_machine.show("jibril", "ActiveState")
    wait_for_message(clean_machine, after, "using stored agent token")
    assert 1 == registrations(garnet)


def test_purge_leaves_nothing(clean_machine: Machine) -> None:
    """apt-get purge stops the daemon and removes the package's files, its
    settings, its state folder and the unit's links: the file system is as
    it was before the installation."""
    apt_get(clean_machine, "purge", "jibril")

    assert "inactive" == clean_machine.show("jibril", "ActiveState")
    left = files(clean_machine) - STATE.before
    assert set() == left
    status = clean_machine.run("dpkg", "--status", "jibril", check=False)
    assert 0 != status.returncode
