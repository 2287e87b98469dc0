"""Set up a container from inside its namespaces, then exec its command.

Run by tests/packaging/container.py as the child of
`unshare --mount --pid --uts --ipc --fork`, so this process is PID 1 of a
new PID namespace with a mount namespace of its own. It mounts what Docker
mounts for a container, chroots, becomes the container's user and execs the
command, which then is PID 1. The one argument is a JSON object; see
``ContainerSpec.to_json`` in container.py.
"""

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
    spec = json.loads(sys.argv[1])
    root = _mount_root(spec)
    _mount_system(root)
    for mount in spec["mounts"]:
        _bind(root, mount["source"], mount["target"], mount["read_only"])
    if spec["dockerenv"]:
        (root / ".dockerenv").touch()
    socket.sethostname(spec["hostname"])

    os.chroot(root)
    os.chdir(spec["workdir"])
    os.setgroups(spec["groups"])
    os.setgid(spec["gid"])
    os.setuid(spec["uid"])
    # The command is looked up in the container's PATH, as Docker does.
    os.execvpe(spec["argv"][0], spec["argv"], spec["environ"])  # noqa: S606


if __name__ == "__main__":
    main()
