"""Detection of the runtime environment and the agent kind sent to the API."""

import os
import platform
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import NamedTuple

from jibrild.errors import SettingsError

VANILLA = "vanilla"
CONTAINER = "container"
KUBERNETES = "kubernetes"
GITHUB = "github"

RUNTIME_ENVIRONMENTS = (VANILLA, CONTAINER, KUBERNETES, GITHUB)
AGENT_KINDS = (VANILLA, KUBERNETES, GITHUB)

SERVICE_ACCOUNT_DIR = Path("var/run/secrets/kubernetes.io/serviceaccount")

# Fields of github_context and the variables the Actions runner sets for them.
# The first five are required by the API.
GITHUB_REQUIRED_FIELDS = ("job", "run_id", "workflow", "repository", "repository_id")
GITHUB_OPTIONAL_FIELDS = (
    "action",
    "actor",
    "actor_id",
    "event_name",
    "ref",
    "ref_name",
    "ref_protected",
    "ref_type",
    "repository_owner",
    "repository_owner_id",
    "run_attempt",
    "run_number",
    "runner_arch",
    "runner_os",
    "server_url",
    "sha",
    "triggering_actor",
    "workflow_ref",
    "workflow_sha",
    "workspace",
)

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
_DNS_1123_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?")

# platform.system() names mapped to the spelling of RUNNER_OS on GitHub.
_RUNNER_OS_NAMES = {"Linux": "Linux", "Darwin": "macOS", "Windows": "Windows"}


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
            f"Invalid runtime environment {override!r}. Set "
            "run-time.runtime-environment or JIBRIL_RUNTIME_ENVIRONMENT to one "
            "of auto, vanilla, container, kubernetes, github."
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
    on purpose. Marker files and cgroup paths come next.
    """
    variable = environ.get("container") or _read_pid1_container_variable(root)
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


def build_vanilla_context(*, job: str | None, hostname: str) -> Mapping[str, object]:
    """Build vanilla_context, naming the job after the host when none is set."""
    context = {"job": job or hostname, "runner_os": runner_os_name(platform.system())}
    return MappingProxyType(context)


def runner_os_name(system: str) -> str:
    """Return the GitHub spelling (RUNNER_OS) of a platform.system() name."""
    return _RUNNER_OS_NAMES.get(system, system)


def build_kubernetes_context(
    root: Path,
    environ: Mapping[str, str],
    *,
    cluster_name: str | None,
    hostname: str,
) -> tuple[Mapping[str, object], tuple[str, ...]]:
    """Build kubernetes_context and the notes on the fallbacks it took.

    Raises SettingsError when no cluster name is set, because a pod cannot
    learn it from the Kubernetes API without extra permissions.
    """
    if not cluster_name:
        raise SettingsError(
            "Cluster name is missing, and the kubernetes agent kind requires it. "
            "Set run-time.cluster-name or JIBRIL_CLUSTER_NAME to the name of "
            "this Kubernetes cluster."
        )
    context: dict[str, object] = {"cluster": cluster_name}
    notes: list[str] = []

    node = environ.get("NODE_NAME")
    if not node:
        node = hostname
        notes.append(
            f"NODE_NAME is not set, so the hostname {hostname!r} is sent as the "
            "node name. Set NODE_NAME from spec.nodeName with the downward API."
        )
    context["node"] = node

    namespace, note = _read_namespace(root / SERVICE_ACCOUNT_DIR / "namespace")
    if namespace is not None:
        context["namespace"] = namespace
    if note is not None:
        notes.append(note)

    return MappingProxyType(context), tuple(notes)


def _read_namespace(path: Path) -> tuple[str | None, str | None]:
    try:
        namespace = path.read_text().strip()
    except FileNotFoundError:
        return None, f"{path} does not exist, so the namespace is omitted"
    except (OSError, UnicodeDecodeError) as error:
        return None, f"cannot read {path} ({error}), so the namespace is omitted"

    if not _DNS_1123_LABEL.fullmatch(namespace):
        return None, (
            f"{path} contains {namespace[:80]!r}, which is not a DNS-1123 label, "
            "so the namespace is omitted"
        )
    return namespace, None


def build_github_context(
    environ: Mapping[str, str], *, forced: bool = False
) -> Mapping[str, object]:
    """Build github_context from the variables the Actions runner sets.

    Optional fields whose variable is unset or empty are omitted. Raises
    SettingsError naming the first required variable that is missing.
    """
    context: dict[str, object] = {}
    for field in GITHUB_REQUIRED_FIELDS:
        variable = github_variable(field)
        value = environ.get(variable)
        if not value:
            raise _missing_github_variable(variable, forced)
        context[field] = value

    for field in GITHUB_OPTIONAL_FIELDS:
        variable = github_variable(field)
        value = environ.get(variable)
        if value:
            context[field] = value

    if "ref_protected" in context:
        context["ref_protected"] = _parse_ref_protected(environ["GITHUB_REF_PROTECTED"])
    return MappingProxyType(context)


def github_variable(field: str) -> str:
    """Return the environment variable that carries a github_context field."""
    if field.startswith("runner_"):
        return field.upper()
    return f"GITHUB_{field.upper()}"


def _missing_github_variable(variable: str, forced: bool) -> SettingsError:
    if forced:
        reason = "run-time.runtime-environment or JIBRIL_RUNTIME_ENVIRONMENT"
        fix = "Run jibrild in a GitHub Actions job or choose another value there."
    else:
        reason = "GITHUB_ACTIONS=true"
        fix = (
            "Run jibrild in a GitHub Actions job, or set "
            "JIBRIL_RUNTIME_ENVIRONMENT to the runtime environment of this host."
        )
    return SettingsError(
        f"Environment variable {variable} is missing or empty, but the github "
        f"runtime environment (chosen by {reason}) requires it. {fix}"
    )


def _parse_ref_protected(value: str) -> bool:
    if value == "true":
        return True
    if value == "false":
        return False
    raise SettingsError(
        f"Environment variable GITHUB_REF_PROTECTED is {value[:80]!r}, but it "
        "must be 'true' or 'false'. Unset it or correct its value."
    )
