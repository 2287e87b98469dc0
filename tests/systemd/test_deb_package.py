"""The jibril package as an operator uses it, in a clean bookworm machine:
apt-get install, a project token in /etc/default/jibril, systemctl start, an
upgrade to a newer build, apt-get remove, a reinstall and apt-get purge.

The tests share one machine booted from CACHE/rootfs-clean and run in file
order: each continues from the state the previous one left.
"""

import fnmatch
import os
import shlex
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

import pytest

from garnet_local.testing import LocalGarnet
from garnet_local.tokens import fingerprint
from tests.systemd.harness import (
    CREDENTIAL_PROJECT_TOKEN,
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
FAILED_START = (
    "jibril: jibril.service failed to start; run journalctl -u jibril for the reason"
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
    """The state that each test passes on to the next one."""

    before: set[str] = field(default_factory=set)
    settings: str = ""
    config: str = ""
    token: str = ""


STATE = Progress()


class Packages(NamedTuple):
    """The package under test and a newer build of the same source."""

    first: Path
    newer: Path
    newer_version: str


@pytest.fixture(scope="module")
def packages(tmp_path_factory: pytest.TempPathFactory) -> Packages:
    """The package named by JIBRIL_DEB and a newer build of the checkout."""
    first = Path(os.environ.get("JIBRIL_DEB", ""))
    if not first.is_file():
        pytest.fail("JIBRIL_DEB does not name a package. Run `make test-systemd`")

    version = _field(first, "Version")
    newer_version = f"{version}+1"
    out = tmp_path_factory.mktemp("newer")
    newer = _build(CHECKOUT, out, newer_version)
    return Packages(first, newer, newer_version)


def _build(checkout: Path, out: Path, version: str) -> Path:
    """Build the package from ``checkout`` into ``out`` and return its path."""
    environ = {
        **os.environ,
        "DEB_VERSION": version,
        "DEB_CACHE": str(CHECKOUT / ".cache" / "deb"),
        "PYTHON": sys.executable,
    }
    subprocess.run(
        [str(checkout / "packaging/deb/build"), str(out)],
        env=environ,
        check=True,
        capture_output=True,
    )
    [deb] = out.glob("jibril_*.deb")
    return deb


def _contents(deb: Path) -> list[str]:
    """Return the paths a package contains, without the leading ./"""
    listing = subprocess.run(
        ["dpkg-deb", "--fsys-tarfile", str(deb)],
        capture_output=True,
        check=True,
    ).stdout
    names = subprocess.run(
        ["tar", "-t"], input=listing, capture_output=True, check=True
    ).stdout.decode()
    return [name.removeprefix("./") for name in names.splitlines()]


@pytest.fixture(scope="module")
def clean_machine(cache_dir: Path, packages: Packages) -> Iterator[Machine]:
    """A machine booted from the clean rootfs, with both packages in INBOX."""
    rootfs = cache_dir / "rootfs-clean"
    if not (rootfs / "bin/systemctl").exists() or (rootfs / "usr/bin/jibrild").exists():
        pytest.fail(f"no clean rootfs at {rootfs}. Run `make test-systemd`")

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
    """Run apt-get without prompts, as a script would, and return its
    output lines."""
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
    """lintian reports no error on the package. Its warnings go into the
    report."""
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


def test_build_leaves_out_stray_files(tmp_path: Path) -> None:
    """A build from a checkout with a stale build/ folder and an untracked
    module packs neither, and writes no build output into the checkout."""
    checkout = tmp_path / "checkout"
    subprocess.run(
        ["git", "clone", "--quiet", str(CHECKOUT), str(checkout)], check=True
    )
    # The clone gets this checkout's working tree, so uncommitted edits of
    # the build script are what is tested.
    tracked = subprocess.run(
        ["git", "-C", str(CHECKOUT), "ls-files", "-z"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split("\0")
    for name in filter(None, tracked):
        if (CHECKOUT / name).is_file():
            shutil.copy2(CHECKOUT / name, checkout / name)
    stale = checkout / "build/lib/jibrild/stale_module.py"
    stale.parent.mkdir(parents=True)
    stale.write_text("STALE = True\n")
    (checkout / "jibrild/untracked_module.py").write_text("UNTRACKED = True\n")

    deb = _build(checkout, tmp_path / "out", "0.0.1-1")

    names = _contents(deb)
    assert [] == [name for name in names if "stale_module" in name]
    assert [] == [name for name in names if "untracked_module" in name]
    assert "usr/lib/jibril/jibrild/daemon.py" in names
    assert [] == list(checkout.glob("*.egg-info"))
    assert [stale] == [path for path in (checkout / "build").rglob("*.py")]


def test_copyright_covers_each_bundled_file(packages: Packages, tmp_path: Path) -> None:
    """In the copyright file, each file under /usr/lib/jibril falls under
    the paragraph of the distribution whose RECORD lists it. jibrild's own
    files fall under the project's terms."""
    subprocess.run(["dpkg-deb", "-x", str(packages.first), str(tmp_path)], check=True)
    lib = tmp_path / "usr/lib/jibril"
    copyright_text = (tmp_path / "usr/share/doc/jibril/copyright").read_text()
    paragraphs = [_fields(block) for block in copyright_text.split("\n\n")]
    files_paragraphs = [paragraph for paragraph in paragraphs if "Files" in paragraph]

    owners = {}
    for info in lib.glob("*.dist-info"):
        name = (info / "METADATA").read_text().split("\nName: ", 1)[1].split()[0]
        for line in (info / "RECORD").read_text().splitlines():
            path = line.split(",", 1)[0]
            if not path.startswith("../"):
                owners[f"usr/lib/jibril/{path}"] = name

    shipped = [
        path.relative_to(tmp_path).as_posix()
        for path in lib.rglob("*")
        if path.is_file()
    ]
    assert [] == [path for path in shipped if path not in owners]
    wrong = {}
    for path in shipped:
        # In the copyright format, the last paragraph that matches wins.
        matching = [
            paragraph
            for paragraph in files_paragraphs
            if any(
                fnmatch.fnmatchcase(path, glob) for glob in paragraph["Files"].split()
            )
        ]
        owner = owners[path]
        expected = "Files: *" if owner == "jibrild" else f"{owner} "
        found = _label(matching[-1])
        if not found.startswith(expected):
            wrong[path] = found
    assert {} == wrong


def _label(paragraph: dict[str, str]) -> str:
    """Return a copyright paragraph's Comment, or its Files line if none."""
    return paragraph.get("Comment", f"Files: {paragraph['Files']}")


def _fields(block: str) -> dict[str, str]:
    """Parse one copyright paragraph into its fields. Continuation lines
    are joined with spaces."""
    fields: dict[str, str] = {}
    key = ""
    for line in block.strip().splitlines():
        if line.startswith(" ") and key:
            fields[key] += " " + line.strip()
        else:
            key, _, value = line.partition(":")
            fields[key] = value.strip()
    return fields


def test_install_enables_without_starting(
    clean_machine: Machine, packages: Packages
) -> None:
    """apt-get install enables jibril.service but does not start it while
    no project token is configured, and prints one line with the next step."""
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
    """With a project token in /etc/default/jibril, systemctl start logs
    the four first-start lines, the agent token file is mode 0600, and
    `journalctl -u jibril` shows the registration."""
    garnet.clear_requests()
    after = cursor(clean_machine)
    settings = f"GARNET_API_URL={garnet.url}\nGARNET_API_TOKEN={PROJECT_TOKEN}\n"
    clean_machine.shell(
        f"printf %s {shlex.quote(settings)} | tee /etc/default/jibril >/dev/null"
        " && chmod 600 /etc/default/jibril"
    )

    clean_machine.systemctl("start", "jibril")

    wait_for_message(clean_machine, after, FIRST_START_LINES[-1])
    lines = [entry["MESSAGE"] for entry in entries(clean_machine, after)]
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
    STATE.config = edited_config


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


def test_failed_restart_keeps_package_configured(
    clean_machine: Machine, packages: Packages
) -> None:
    """A reinstall whose restart fails (invalid settings) still configures
    the package, so apt-get goes on working, and prints one line saying
    where to look."""
    invalid = STATE.config + "  heartbeat-interval: not-a-number\n"
    clean_machine.write(CONFFILES[1], invalid, mode=0o600)

    output = apt_get(
        clean_machine, "install", "--reinstall", f"{INBOX}/{packages.newer.name}"
    )

    assert [FAILED_START] == [line for line in output if line.startswith("jibril:")]
    status = clean_machine.run(
        "dpkg-query", "--show", "--showformat=${Status}", "jibril"
    ).stdout
    assert "install ok installed" == status
    assert "failed" == clean_machine.show("jibril", "ActiveState")


def test_purge_leaves_nothing(clean_machine: Machine) -> None:
    """apt-get purge of a failed unit removes the package's files, its
    settings, its state folder and the unit's links, and resets the unit's
    failed state. The machine is then as it was before the installation."""
    apt_get(clean_machine, "purge", "jibril")

    assert "not-found" == clean_machine.show("jibril", "LoadState")
    assert "inactive" == clean_machine.show("jibril", "ActiveState")
    failed = clean_machine.systemctl("list-units", "--failed", "--plain", "--no-legend")
    assert "jibril" not in failed
    left = files(clean_machine) - STATE.before
    assert set() == left
    # The folders the comparison leaves out contain no file named after the
    # package either (kernel file systems aside).
    kernel = ("/proc", "/sys", "/dev")
    folders = " ".join(shlex.quote(path) for path in CHURN if path not in kernel)
    named = clean_machine.shell(f"find {folders} -name '*jibril*'")
    assert "" == named
    status = clean_machine.run("dpkg", "--status", "jibril", check=False)
    assert 0 != status.returncode


def test_install_with_credential_starts(
    clean_machine: Machine, garnet: LocalGarnet, packages: Packages
) -> None:
    """A project token preseeded as a systemd credential, in a drop-in made
    before the installation, counts as configured: the installation starts
    the unit, which registers with that token."""
    clean_machine.write("/etc/jibril/garnet-api-token", CREDENTIAL_PROJECT_TOKEN, 0o600)
    clean_machine.write(
        "/etc/systemd/system/jibril.service.d/token.conf",
        "[Service]\n"
        "LoadCredential=garnet-api-token:/etc/jibril/garnet-api-token\n"
        f"Environment=GARNET_API_URL={garnet.url}\n",
    )
    garnet.clear_requests()

    output = apt_get(clean_machine, "install", f"{INBOX}/{packages.first.name}")

    assert [] == [line for line in output if line.startswith("jibril:")]
    assert "active" == clean_machine.show("jibril", "ActiveState")
    [registration] = [
        request for request in garnet.requests() if request["path"] == "/api/v1/agents"
    ]
    assert 201 == registration["status"]
    used = registration["credentials"]["X-Project-Token"]
    assert fingerprint(CREDENTIAL_PROJECT_TOKEN) == used
