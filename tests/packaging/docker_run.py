"""`docker run` for an image built by dockerfile.py.

It gives a container the volumes, user, environment and command that
Docker gives it."""

import os
import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path

from tests.packaging.container import (
    Container,
    ContainerSpec,
    Mount,
    container_environ,
    new_hostname,
    resolve_user,
)
from tests.packaging.dockerfile import Image


def new_named_volume(image: Image, target: str, folder: Path) -> Path:
    """Copy the image's folder at ``target`` to ``folder``, with its owner
    and mode, as Docker fills a fresh named volume mounted there.

    ``folder`` must not exist yet. Return ``folder``."""
    source = image.rootfs / target.lstrip("/")
    shutil.copytree(source, folder, symlinks=True)
    status = source.stat()
    os.chown(folder, status.st_uid, status.st_gid)
    folder.chmod(status.st_mode & 0o7777)
    return folder


def docker_run(
    image: Image,
    layer: Path,
    variables: Mapping[str, str],
    *,
    command: Sequence[str] | None = None,
    volumes: Mapping[str, Path] | None = None,
    mounts: Sequence[Mount] = (),
    user: str | None = None,
    locked_down: bool = False,
) -> Container:
    """Start a container the way `docker run --network host -e NAME=VALUE
    -v FOLDER:TARGET IMAGE [COMMAND...]` starts it.

    ``user`` is `--user`. ``locked_down`` adds `--cap-drop ALL
    --security-opt no-new-privileges --read-only`, the restrictions a
    Kubernetes securityContext can set.

    ``layer`` is an empty folder for the container's writable layer. An
    image VOLUME without a folder in ``volumes`` gets an anonymous volume
    there, as Docker creates one.
    """
    config = image.config
    volumes = dict(volumes or {})
    for target in config.volumes:
        if target not in volumes:
            anonymous = layer / "volumes" / target.strip("/").replace("/", "-")
            volumes[target] = new_named_volume(image, target, anonymous)

    user_entry = resolve_user(image.rootfs, config.user if user is None else user)
    hostname = new_hostname()
    # Docker writes these three files for each container and binds them in.
    etc_folder = layer / "etc"
    etc_folder.mkdir(parents=True)
    (etc_folder / "hostname").write_text(f"{hostname}\n")
    (etc_folder / "hosts").write_text("127.0.0.1\tlocalhost\n::1\tlocalhost\n")
    shutil.copyfile("/etc/resolv.conf", etc_folder / "resolv.conf")
    etc_mounts = [
        Mount(str(etc_folder / name), f"/etc/{name}")
        for name in sorted(os.listdir(etc_folder))
    ]

    arguments = list(config.cmd if command is None else command)
    spec = ContainerSpec(
        root=str(image.rootfs),
        argv=[*config.entrypoint, *arguments],
        environ=container_environ(config.env, user_entry, hostname, variables),
        uid=user_entry.uid,
        gid=user_entry.gid,
        groups=user_entry.groups,
        workdir=config.workdir,
        hostname=hostname,
        mounts=[
            *etc_mounts,
            *(Mount(str(folder), target) for target, folder in volumes.items()),
            *mounts,
        ],
        layer=str(layer),
        dockerenv=True,
        drop_capabilities=locked_down,
        no_new_privileges=locked_down,
        read_only_root=locked_down,
    )
    return Container(spec, config.stop_signal)
