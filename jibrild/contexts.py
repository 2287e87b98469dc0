"""The context object the API expects for each agent kind
(vanilla_context, kubernetes_context, github_context)."""

import platform
import re
from collections.abc import Mapping
from pathlib import Path
from types import MappingProxyType

from jibrild.errors import SettingsError

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

_DNS_1123_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?")

# platform.system() names mapped to the spelling of RUNNER_OS on GitHub.
_RUNNER_OS_NAMES = {"Linux": "Linux", "Darwin": "macOS", "Windows": "Windows"}


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
            "cluster name missing, and the kubernetes agent kind requires it; "
            "set run-time.cluster-name or JIBRIL_CLUSTER_NAME to the name of "
            "this Kubernetes cluster"
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
        fix = "run jibrild in a GitHub Actions job or choose another value there"
    else:
        reason = "GITHUB_ACTIONS=true"
        fix = (
            "run jibrild in a GitHub Actions job, or set "
            "JIBRIL_RUNTIME_ENVIRONMENT to the runtime environment of this host"
        )
    return SettingsError(
        f"environment variable {variable}: missing or empty, but the github "
        f"runtime environment (chosen by {reason}) requires it; {fix}"
    )


def _parse_ref_protected(value: str) -> bool:
    if value == "true":
        return True
    if value == "false":
        return False
    raise SettingsError(
        "environment variable GITHUB_REF_PROTECTED: expected 'true' or "
        f"'false', got {value[:80]!r}; correct or unset it"
    )
