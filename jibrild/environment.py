"""Detection of the runtime environment and the agent kind sent to the API."""

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

from jibrild.contexts import (
    SERVICE_ACCOUNT_DIR,
    build_github_context,
    build_kubernetes_context,
    build_vanilla_context,
)
from jibrild.errors import SettingsError

VANILLA = "vanilla"
CONTAINER = "container"
KUBERNETES = "kubernetes"
GITHUB = "github"

RUNTIME_ENVIRONMENTS = (VANILLA, CONTAINER, KUBERNETES, GITHUB)
AGENT_KINDS = (VANILLA, KUBERNETES, GITHUB)

# Values of `container=` that systemd's container interface documents, mapped
# to the engine names used here. Other values are reported as they are.
_CONTAINER_VARIABLE_ENGINES = {
    "docker": "docker",
    "podman": "podman",
    "lxc": "lxc",
    "lxc-libvirt": "lxc",
    "systemd-nspawn": "systemd-nspawn",
    "containerd": "containerd",
}

# Markers in a cgroup path, most specific engine first. A bare kubepods path
# shows a pod but not which runtime started it.
_CGROUP_MARKERS = (
    (re.compile(r"/docker[-/][0-9a-f]{12}"), "docker"),
    (re.compile(r"/libpod[-_]"), "podman"),
    (re.compile(r"[-/]containerd[-/]"), "containerd"),
    (re.compile(r"/crio-[0-9a-f]{12}"), "cri-o"),
    (re.compile(r"/lxc(/|\.payload)"), "lxc"),
    (re.compile(r"/kubepods"), "unknown"),
)

_ENGINE_NAME = re.compile(r"[a-z0-9][a-z0-9._-]{0,63}")


@dataclass(frozen=True)
class RuntimeEnvironment:
    """Detected runtime environment, with the agent kind and its context."""

    name: str
    agent_kind: str
    context: Mapping[str, object]
    engine: str | None = None
    notes: tuple[str, ...] = ()


class _Choice(NamedTuple):
    name: str
    forced: bool
    engine: str | None
    notes: tuple[str, ...]


def detect_runtime_environment(
    root: Path = Path("/"),
    environ: Mapping[str, str] | None = None,
    *,
    hostname: str,
    cluster_name: str | None,
    job: str | None,
    override: str = "auto",
) -> RuntimeEnvironment:
    """Detect the runtime environment and build the context of its agent kind.

    `override` is "auto" or a runtime environment name that skips detection.
    Raises SettingsError when the context of the chosen kind cannot be built.
    """
    if environ is None:
        environ = os.environ
    choice = _choose(root, environ, override)

    if choice.name == GITHUB:
        context = build_github_context(environ, forced=choice.forced)
        return RuntimeEnvironment(GITHUB, GITHUB, context, notes=choice.notes)

    if choice.name == KUBERNETES:
        context, notes = build_kubernetes_context(
            root, environ, cluster_name=cluster_name, hostname=hostname
        )
        return RuntimeEnvironment(
            KUBERNETES, KUBERNETES, context, notes=choice.notes + notes
        )

    context = build_vanilla_context(job=job, hostname=hostname)
    return RuntimeEnvironment(
        choice.name, VANILLA, context, engine=choice.engine, notes=choice.notes
    )


def _choose(root: Path, environ: Mapping[str, str], override: str) -> _Choice:
    if override != "auto":
        return _choose_forced(root, environ, override)

    if environ.get("GITHUB_ACTIONS") == "true":
        return _Choice(GITHUB, False, None, ())

    notes: tuple[str, ...] = ()
    if environ.get("KUBERNETES_SERVICE_HOST"):
        if (root / SERVICE_ACCOUNT_DIR).is_dir():
            return _Choice(KUBERNETES, False, None, ())
        notes = (
            f"KUBERNETES_SERVICE_HOST is set but {root / SERVICE_ACCOUNT_DIR} "
            "does not exist, so the kubernetes runtime environment was not chosen",
        )

    engine = detect_container_engine(root, environ)
    if engine is not None:
        return _Choice(CONTAINER, False, engine, notes)
    return _Choice(VANILLA, False, None, notes)


def _choose_forced(root: Path, environ: Mapping[str, str], override: str) -> _Choice:
    if override not in RUNTIME_ENVIRONMENTS:
        raise SettingsError(
            f"runtime environment {override!r} is invalid; set "
            "run-time.runtime-environment or JIBRIL_RUNTIME_ENVIRONMENT to "
            "auto, vanilla, container, kubernetes or github"
        )
    if override != CONTAINER:
        return _Choice(override, True, None, ())

    engine = detect_container_engine(root, environ)
    if engine is not None:
        return _Choice(CONTAINER, True, engine, ())
    note = "no container engine was found, so the engine is reported as unknown"
    return _Choice(CONTAINER, True, "unknown", (note,))


def detect_container_engine(root: Path, environ: Mapping[str, str]) -> str | None:
    """Return the container engine this process runs under, or None on a host.

    The `container=` variable wins because the engine or init system sets it
    on purpose; systemd keeps the value it found in /run/systemd/container,
    which a sandboxed service can read when PID 1's environment is hidden
    from it. Marker files and cgroup paths come next.
    """
    variable = (
        environ.get("container")
        or _read_pid1_container_variable(root)
        or _read_systemd_container_file(root)
    )
    if variable:
        return _engine_from_variable(variable)

    if (root / ".dockerenv").exists():
        return "docker"
    if (root / "run/.containerenv").exists():
        return "podman"

    for cgroup_file in ("proc/1/cgroup", "proc/self/cgroup"):
        engine = _engine_from_cgroup(root / cgroup_file)
        if engine is not None:
            return engine
    return None


def _read_pid1_container_variable(root: Path) -> str | None:
    # Reading PID 1's environment needs root or ptrace access, so skip a failure.
    try:
        raw = (root / "proc/1/environ").read_bytes()
    except OSError:
        return None

    for entry in raw.split(b"\0"):
        if entry.startswith(b"container="):
            return entry.removeprefix(b"container=").decode(errors="replace")
    return None


def _read_systemd_container_file(root: Path) -> str | None:
    try:
        return (root / "run/systemd/container").read_text(errors="replace").strip()
    except OSError:
        return None


def _engine_from_variable(value: str) -> str:
    value = value.strip().lower()
    if value in _CONTAINER_VARIABLE_ENGINES:
        return _CONTAINER_VARIABLE_ENGINES[value]
    if _ENGINE_NAME.fullmatch(value):
        return value
    return "unknown"


def _engine_from_cgroup(path: Path) -> str | None:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return None

    # Each line is "hierarchy-id:controllers:path", and only the path has markers.
    cgroup_paths = [line.split(":", 2)[-1] for line in text.splitlines()]
    for marker, engine in _CGROUP_MARKERS:
        if any(marker.search(cgroup_path) for cgroup_path in cgroup_paths):
            return engine
    return None
