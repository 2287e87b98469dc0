"""Set up a container from inside its namespaces, then exec its command.

Run by tests/packaging/container.py as the child of
`unshare --mount --pid --uts --ipc --fork`, so this process is PID 1 of a
new PID namespace with a mount namespace of its own. It mounts what Docker
mounts for a container, chroots, becomes the container's user and execs the
command, which then is PID 1. The one argument is a JSON object, as
``ContainerSpec.to_json`` in container.py writes it.
"""

import ctypes
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

# The device nodes Docker gives a container, bound from the host's.
_DEVICES = ("null", "zero", "full", "random", "urandom", "tty")
_DEVICE_LINKS = {
    "fd": "/proc/self/fd",
    "stdin": "/proc/self/fd/0",
    "stdout": "/proc/self/fd/1",
    "stderr": "/proc/self/fd/2",
}


# prctl(2) options from linux/prctl.h.
_PR_CAPBSET_DROP = 24
_PR_SET_NO_NEW_PRIVS = 38
_CAP_LAST_CAP = Path("/proc/sys/kernel/cap_last_cap")


def _prctl(option: int, argument: int) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(option, argument, 0, 0, 0) != 0:
        error = ctypes.get_errno()
        raise OSError(error, f"prctl({option}, {argument}): {os.strerror(error)}")


def _drop_capabilities() -> None:
    """Empty the capability bounding set, so that even uid 0 has no
    capability after the exec, as with `docker run --cap-drop ALL`."""
    for capability in range(int(_CAP_LAST_CAP.read_text()) + 1):
        _prctl(_PR_CAPBSET_DROP, capability)


def _mount(*args: str) -> None:
    subprocess.run(["mount", *args], check=True)


def _mount_root(spec: dict) -> Path:
    """Return the container's root: the image's rootfs under a writable
    overlay layer, as Docker's overlay2 driver builds it, or the folder
    itself (an image build writes to it)."""
    root = Path(spec["root"])
    layer = spec.get("layer")
    if layer is None:
        return root

    upper, work, merged = (Path(layer) / name for name in ("upper", "work", "merged"))
    for folder in (upper, work, merged):
        folder.mkdir(parents=True, exist_ok=True)
    options = f"lowerdir={root},upperdir={upper},workdir={work}"
    _mount("-t", "overlay", "overlay", "-o", options, str(merged))
    return merged


def _mount_system(root: Path) -> None:
    _mount("-t", "proc", "-o", "nosuid,nodev,noexec", "proc", str(root / "proc"))
    _mount("-t", "sysfs", "-o", "ro,nosuid,nodev,noexec", "sysfs", str(root / "sys"))

    dev = root / "dev"
    _mount("-t", "tmpfs", "-o", "nosuid,mode=0755,size=65536k", "tmpfs", str(dev))
    for name in _DEVICES:
        (dev / name).touch()
        _mount("--bind", f"/dev/{name}", str(dev / name))
    for name, target in _DEVICE_LINKS.items():
        (dev / name).symlink_to(target)
    (dev / "pts").mkdir()
    _mount(
        "-t",
        "devpts",
        "-o",
        "newinstance,ptmxmode=0666,mode=0620,nosuid,noexec",
        "devpts",
        str(dev / "pts"),
    )
    (dev / "ptmx").symlink_to("pts/ptmx")
    (dev / "shm").mkdir()
    _mount(
        "-t", "tmpfs", "-o", "nosuid,nodev,noexec,size=65536k", "shm", str(dev / "shm")
    )


def _bind(root: Path, source: str, target: str, read_only: bool) -> None:
    """Bind-mount a host file or folder into the container, making the
    mount point when the image lacks it, as Docker does."""
    inside = root / target.lstrip("/")
    if Path(source).is_dir():
        inside.mkdir(parents=True, exist_ok=True)
    else:
        inside.parent.mkdir(parents=True, exist_ok=True)
        inside.touch(exist_ok=True)
    _mount("--bind", source, str(inside))
    if read_only:
        _mount("-o", "remount,bind,ro", str(inside))


def main() -> None:
    """Mount the container's file systems, become its user and exec its
    command."""
    spec = json.loads(sys.argv[1])
    root = _mount_root(spec)
    _mount_system(root)
    for mount in spec["mounts"]:
        _bind(root, mount["source"], mount["target"], mount["read_only"])
    if spec["dockerenv"]:
        (root / ".dockerenv").touch()
    if spec["read_only_root"]:
        _mount("-o", "remount,ro", str(root))
    socket.sethostname(spec["hostname"])

    os.chroot(root)
    os.chdir(spec["workdir"])
    # Dropping from the bounding set needs CAP_SETPCAP, which a setuid to a
    # uid other than 0 clears, so the drop comes before setuid. The bounding
    # set limits only what the exec grants.
    if spec["drop_capabilities"]:
        _drop_capabilities()
    os.setgroups(spec["groups"])
    os.setgid(spec["gid"])
    os.setuid(spec["uid"])
    if spec["no_new_privileges"]:
        _prctl(_PR_SET_NO_NEW_PRIVS, 1)
    # The command is looked up in the container's PATH, as Docker does.
    os.execvpe(spec["argv"][0], spec["argv"], spec["environ"])  # noqa: S606


if __name__ == "__main__":
    main()
