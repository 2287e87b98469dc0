"""Tests of runtime environment detection over fixture trees in tmp_path."""

import os
import platform
from pathlib import Path

import pytest

from jibrild.contexts import (
    GITHUB_OPTIONAL_FIELDS,
    GITHUB_REQUIRED_FIELDS,
    github_variable,
    runner_os_name,
)
from jibrild.environment import (
    RuntimeEnvironment,
    detect_container_engine,
    detect_runtime_environment,
)
from jibrild.errors import SettingsError

HOSTNAME = "web-1"
RUNNER_OS = runner_os_name(platform.system())
SERVICE_ACCOUNT = "var/run/secrets/kubernetes.io/serviceaccount"

GITHUB_ENVIRON = {
    "GITHUB_ACTIONS": "true",
    "GITHUB_JOB": "build",
    "GITHUB_RUN_ID": "9876543210",
    "GITHUB_WORKFLOW": "CI",
    "GITHUB_REPOSITORY": "octo-org/octo-repo",
    "GITHUB_REPOSITORY_ID": "123456789",
    "GITHUB_ACTION": "__run_2",
    "GITHUB_ACTOR": "octocat",
    "GITHUB_ACTOR_ID": "583231",
    "GITHUB_EVENT_NAME": "push",
    "GITHUB_REF": "refs/heads/main",
    "GITHUB_REF_NAME": "main",
    "GITHUB_REF_PROTECTED": "true",
    "GITHUB_REF_TYPE": "branch",
    "GITHUB_REPOSITORY_OWNER": "octo-org",
    "GITHUB_REPOSITORY_OWNER_ID": "9919",
    "GITHUB_RUN_ATTEMPT": "2",
    "GITHUB_RUN_NUMBER": "57",
    "RUNNER_ARCH": "X64",
    "RUNNER_OS": "Linux",
    "GITHUB_SERVER_URL": "https://github.com",
    "GITHUB_SHA": "ffac537e6cbbf934b08745a378932722df287a53",
    "GITHUB_TRIGGERING_ACTOR": "monalisa",
    "GITHUB_WORKFLOW_REF": "octo-org/octo-repo/.github/workflows/ci.yml@main",
    "GITHUB_WORKFLOW_SHA": "ffac537e6cbbf934b08745a378932722df287a53",
    "GITHUB_WORKSPACE": "/home/runner/work/octo-repo/octo-repo",
}

GITHUB_MINIMAL_ENVIRON = {
    "GITHUB_ACTIONS": "true",
    "GITHUB_JOB": "build",
    "GITHUB_RUN_ID": "9876543210",
    "GITHUB_WORKFLOW": "CI",
    "GITHUB_REPOSITORY": "octo-org/octo-repo",
    "GITHUB_REPOSITORY_ID": "123456789",
}


def write(root: Path, relative: str, content: str | bytes = "") -> Path:
    """Create a file under the fixture root, with its parent folders."""
    path = root / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content)
    return path


def make_service_account(root: Path, namespace: str | None = "monitoring") -> None:
    """Create the folder Kubernetes mounts for a pod's service account."""
    (root / SERVICE_ACCOUNT).mkdir(parents=True)
    if namespace is not None:
        write(root, f"{SERVICE_ACCOUNT}/namespace", namespace)


def detect(
    root: Path,
    environ: dict[str, str],
    *,
    cluster_name: str | None = None,
    job: str | None = None,
    override: str = "auto",
) -> RuntimeEnvironment:
    """Run detection with this module's hostname."""
    return detect_runtime_environment(
        root,
        environ,
        hostname=HOSTNAME,
        cluster_name=cluster_name,
        job=job,
        override=override,
    )


def test_vanilla_on_plain_host(tmp_path: Path) -> None:
    """An empty tree and environment are a plain host named after its hostname."""
    runtime = detect(tmp_path, {})

    assert runtime.name == "vanilla"
    assert runtime.agent_kind == "vanilla"
    assert dict(runtime.context) == {"job": HOSTNAME, "runner_os": RUNNER_OS}
    assert runtime.engine is None
    assert runtime.notes == ()


def test_vanilla_context_uses_job(tmp_path: Path) -> None:
    """A configured job replaces the hostname in vanilla_context."""
    runtime = detect(tmp_path, {}, job="nightly-backup")

    assert dict(runtime.context) == {"job": "nightly-backup", "runner_os": RUNNER_OS}


@pytest.mark.parametrize(
    ("system", "expected"),
    [
        ("Linux", "Linux"),
        ("Darwin", "macOS"),
        ("Windows", "Windows"),
        ("FreeBSD", "FreeBSD"),
    ],
)
def test_runner_os_name_table(system: str, expected: str) -> None:
    """platform.system() names map to GitHub's RUNNER_OS spelling."""
    assert runner_os_name(system) == expected


def test_context_is_read_only(tmp_path: Path) -> None:
    """The context of a frozen RuntimeEnvironment cannot be changed in place."""
    runtime = detect(tmp_path, {})

    with pytest.raises(TypeError):
        runtime.context["job"] = "other"  # type: ignore[index]


def test_github_full_context(tmp_path: Path) -> None:
    """Every GitHub variable lands in its github_context field."""
    runtime = detect(tmp_path, GITHUB_ENVIRON)

    assert runtime.name == "github"
    assert runtime.agent_kind == "github"
    assert runtime.engine is None
    assert dict(runtime.context) == {
        "job": "build",
        "run_id": "9876543210",
        "workflow": "CI",
        "repository": "octo-org/octo-repo",
        "repository_id": "123456789",
        "action": "__run_2",
        "actor": "octocat",
        "actor_id": "583231",
        "event_name": "push",
        "ref": "refs/heads/main",
        "ref_name": "main",
        "ref_protected": True,
        "ref_type": "branch",
        "repository_owner": "octo-org",
        "repository_owner_id": "9919",
        "run_attempt": "2",
        "run_number": "57",
        "runner_arch": "X64",
        "runner_os": "Linux",
        "server_url": "https://github.com",
        "sha": "ffac537e6cbbf934b08745a378932722df287a53",
        "triggering_actor": "monalisa",
        "workflow_ref": "octo-org/octo-repo/.github/workflows/ci.yml@main",
        "workflow_sha": "ffac537e6cbbf934b08745a378932722df287a53",
        "workspace": "/home/runner/work/octo-repo/octo-repo",
    }


@pytest.mark.parametrize(
    "field", [f for f in GITHUB_OPTIONAL_FIELDS if f != "ref_protected"]
)
def test_github_optional_field_alone(tmp_path: Path, field: str) -> None:
    """Each optional string field is read from its own variable and no other."""
    environ = {**GITHUB_MINIMAL_ENVIRON, github_variable(field): "value-x"}

    runtime = detect(tmp_path, environ)

    assert runtime.context[field] == "value-x"
    assert len(runtime.context) == len(GITHUB_REQUIRED_FIELDS) + 1


@pytest.mark.parametrize(
    ("field", "variable"),
    [
        ("job", "GITHUB_JOB"),
        ("run_id", "GITHUB_RUN_ID"),
        ("repository_owner_id", "GITHUB_REPOSITORY_OWNER_ID"),
        ("runner_arch", "RUNNER_ARCH"),
        ("runner_os", "RUNNER_OS"),
    ],
)
def test_github_variable_names(field: str, variable: str) -> None:
    """Fields map to GITHUB_* variables except the RUNNER_* ones."""
    assert github_variable(field) == variable


def test_github_optional_fields_omitted(tmp_path: Path) -> None:
    """Unset and empty optional variables leave their fields out."""
    environ = {**GITHUB_MINIMAL_ENVIRON, "GITHUB_ACTOR": "", "GITHUB_SHA": ""}

    runtime = detect(tmp_path, environ)

    assert dict(runtime.context) == {
        "job": "build",
        "run_id": "9876543210",
        "workflow": "CI",
        "repository": "octo-org/octo-repo",
        "repository_id": "123456789",
    }


@pytest.mark.parametrize(("value", "expected"), [("true", True), ("false", False)])
def test_github_ref_protected_bool(tmp_path: Path, value: str, expected: bool) -> None:
    """GITHUB_REF_PROTECTED becomes a JSON boolean."""
    environ = {**GITHUB_MINIMAL_ENVIRON, "GITHUB_REF_PROTECTED": value}

    runtime = detect(tmp_path, environ)

    assert runtime.context["ref_protected"] is expected


def test_github_ref_protected_invalid(tmp_path: Path) -> None:
    """A GITHUB_REF_PROTECTED other than true or false is a settings error."""
    environ = {**GITHUB_MINIMAL_ENVIRON, "GITHUB_REF_PROTECTED": "yes"}

    with pytest.raises(SettingsError) as caught:
        detect(tmp_path, environ)

    assert str(caught.value) == (
        "environment variable GITHUB_REF_PROTECTED: expected 'true' or 'false', "
        "got 'yes'; correct or unset it"
    )


@pytest.mark.parametrize("field", GITHUB_REQUIRED_FIELDS)
@pytest.mark.parametrize("missing_value", [None, ""])
def test_github_required_missing(
    tmp_path: Path, field: str, missing_value: str | None
) -> None:
    """A missing or empty required variable is named in the error."""
    variable = github_variable(field)
    environ = dict(GITHUB_MINIMAL_ENVIRON)
    if missing_value is None:
        del environ[variable]
    else:
        environ[variable] = missing_value

    with pytest.raises(SettingsError) as caught:
        detect(tmp_path, environ)

    assert str(caught.value) == (
        f"environment variable {variable}: missing or empty, but the github "
        "runtime environment (chosen by GITHUB_ACTIONS=true) requires it; run "
        "jibrild in a GitHub Actions job, or set JIBRIL_RUNTIME_ENVIRONMENT to "
        "the runtime environment of this host"
    )


def test_github_forced_missing(tmp_path: Path) -> None:
    """Forcing github without the runner's variables names the setting."""
    with pytest.raises(SettingsError) as caught:
        detect(tmp_path, {}, override="github")

    assert str(caught.value) == (
        "environment variable GITHUB_JOB: missing or empty, but the github "
        "runtime environment (chosen by run-time.runtime-environment or "
        "JIBRIL_RUNTIME_ENVIRONMENT) requires it; run jibrild in a GitHub "
        "Actions job or choose another value there"
    )


def test_github_wins_over_others(tmp_path: Path) -> None:
    """GITHUB_ACTIONS=true wins over Kubernetes and container markers."""
    make_service_account(tmp_path)
    write(tmp_path, ".dockerenv")
    environ = {**GITHUB_MINIMAL_ENVIRON, "KUBERNETES_SERVICE_HOST": "10.96.0.1"}

    runtime = detect(tmp_path, environ, cluster_name="prod")

    assert runtime.name == "github"
    assert runtime.agent_kind == "github"


@pytest.mark.parametrize("value", ["false", "1", "TRUE", ""])
def test_github_actions_not_true(tmp_path: Path, value: str) -> None:
    """Only the exact value true of GITHUB_ACTIONS marks a GitHub job."""
    environ = {**GITHUB_MINIMAL_ENVIRON, "GITHUB_ACTIONS": value}

    runtime = detect(tmp_path, environ)

    assert runtime.name == "vanilla"


def test_kubernetes_full_context(tmp_path: Path) -> None:
    """A pod with NODE_NAME and a namespace file gets a complete context."""
    make_service_account(tmp_path, "monitoring\n")
    environ = {"KUBERNETES_SERVICE_HOST": "10.96.0.1", "NODE_NAME": "node-a"}
    write(tmp_path, "proc/1/cgroup", "0::/kubepods/besteffort/pod1/abc\n")

    runtime = detect(tmp_path, environ, cluster_name="prod-eu")

    assert runtime.name == "kubernetes"
    assert runtime.agent_kind == "kubernetes"
    assert runtime.engine is None
    assert dict(runtime.context) == {
        "cluster": "prod-eu",
        "node": "node-a",
        "namespace": "monitoring",
    }
    assert runtime.notes == ()


def test_kubernetes_node_falls_back(tmp_path: Path) -> None:
    """Without NODE_NAME the hostname is the node, with a note."""
    make_service_account(tmp_path)
    environ = {"KUBERNETES_SERVICE_HOST": "10.96.0.1", "NODE_NAME": ""}

    runtime = detect(tmp_path, environ, cluster_name="prod-eu")

    assert runtime.context["node"] == HOSTNAME
    assert runtime.notes == (
        "NODE_NAME is not set, so the hostname 'web-1' is sent as the node name. "
        "Set NODE_NAME from spec.nodeName with the downward API.",
    )


def test_kubernetes_namespace_absent(tmp_path: Path) -> None:
    """Without a namespace file the namespace is omitted, with a note."""
    make_service_account(tmp_path, namespace=None)
    environ = {"KUBERNETES_SERVICE_HOST": "10.96.0.1", "NODE_NAME": "node-a"}

    runtime = detect(tmp_path, environ, cluster_name="prod-eu")

    assert dict(runtime.context) == {"cluster": "prod-eu", "node": "node-a"}
    path = tmp_path / SERVICE_ACCOUNT / "namespace"
    assert runtime.notes == (f"{path} does not exist, so the namespace is omitted",)


def test_kubernetes_namespace_invalid(tmp_path: Path) -> None:
    """A namespace that is no DNS-1123 label is omitted, with a note."""
    make_service_account(tmp_path, "Not_A_Label")
    environ = {"KUBERNETES_SERVICE_HOST": "10.96.0.1", "NODE_NAME": "node-a"}

    runtime = detect(tmp_path, environ, cluster_name="prod-eu")

    assert "namespace" not in runtime.context
    path = tmp_path / SERVICE_ACCOUNT / "namespace"
    assert runtime.notes == (
        f"{path} contains 'Not_A_Label', which is not a DNS-1123 label, so the "
        "namespace is omitted",
    )


def test_kubernetes_namespace_unreadable(tmp_path: Path) -> None:
    """A namespace path that cannot be read as a file is omitted with a note."""
    make_service_account(tmp_path, namespace=None)
    (tmp_path / SERVICE_ACCOUNT / "namespace").mkdir()
    environ = {"KUBERNETES_SERVICE_HOST": "10.96.0.1", "NODE_NAME": "node-a"}

    runtime = detect(tmp_path, environ, cluster_name="prod-eu")

    assert "namespace" not in runtime.context
    path = tmp_path / SERVICE_ACCOUNT / "namespace"
    assert runtime.notes == (
        f"cannot read {path} ([Errno 21] Is a directory: '{path}'), so the "
        "namespace is omitted",
    )


@pytest.mark.parametrize("cluster_name", [None, ""])
def test_kubernetes_cluster_missing(tmp_path: Path, cluster_name: str | None) -> None:
    """The kubernetes agent kind cannot be registered without a cluster name."""
    make_service_account(tmp_path)
    environ = {"KUBERNETES_SERVICE_HOST": "10.96.0.1", "NODE_NAME": "node-a"}

    with pytest.raises(SettingsError) as caught:
        detect(tmp_path, environ, cluster_name=cluster_name)

    assert str(caught.value) == (
        "cluster name missing, and the kubernetes agent kind requires it; "
        "set run-time.cluster-name or JIBRIL_CLUSTER_NAME to the name of this "
        "Kubernetes cluster"
    )


def test_kubernetes_needs_service_account(tmp_path: Path) -> None:
    """KUBERNETES_SERVICE_HOST alone falls through to container detection."""
    write(tmp_path, "proc/1/cgroup", "0::/system.slice/docker-" + "a" * 64 + ".scope\n")
    environ = {"KUBERNETES_SERVICE_HOST": "10.96.0.1"}

    runtime = detect(tmp_path, environ, cluster_name="prod-eu")

    assert runtime.name == "container"
    assert runtime.engine == "docker"
    assert runtime.notes == (
        f"KUBERNETES_SERVICE_HOST is set but {tmp_path / SERVICE_ACCOUNT} does "
        "not exist, so the kubernetes runtime environment was not chosen",
    )


def test_kubernetes_needs_service_host(tmp_path: Path) -> None:
    """A service account folder without KUBERNETES_SERVICE_HOST is no pod."""
    make_service_account(tmp_path)

    runtime = detect(tmp_path, {}, cluster_name="prod-eu")

    assert runtime.name == "vanilla"
    assert runtime.notes == ()


@pytest.mark.parametrize(
    ("files", "environ", "engine"),
    [
        ({".dockerenv": ""}, {}, "docker"),
        ({"run/.containerenv": 'engine="podman-4.9.3"\n'}, {}, "podman"),
        ({}, {"container": "podman"}, "podman"),
        ({}, {"container": "docker"}, "docker"),
        ({}, {"container": "lxc"}, "lxc"),
        ({}, {"container": "lxc-libvirt"}, "lxc"),
        ({}, {"container": "systemd-nspawn"}, "systemd-nspawn"),
        ({}, {"container": "containerd"}, "containerd"),
        ({}, {"container": "rkt"}, "rkt"),
        ({}, {"container": "not an engine!"}, "unknown"),
        (
            {"proc/1/environ": b"PATH=/usr/bin\0container=lxc\0TERM=linux\0"},
            {},
            "lxc",
        ),
        (
            {"proc/1/environ": b"container=systemd-nspawn\0"},
            {},
            "systemd-nspawn",
        ),
        ({"run/systemd/container": "systemd-nspawn\n"}, {}, "systemd-nspawn"),
        ({"run/systemd/container": "lxc\n"}, {}, "lxc"),
        ({"proc/1/cgroup": "12:memory:/docker/" + "0f" * 32 + "\n"}, {}, "docker"),
        (
            {"proc/1/cgroup": "0::/system.slice/docker-" + "0f" * 32 + ".scope\n"},
            {},
            "docker",
        ),
        (
            {
                "proc/1/cgroup": "0::/user.slice/user-1000.slice/user@1000.service/"
                "user.slice/libpod-" + "0f" * 32 + ".scope/container\n"
            },
            {},
            "podman",
        ),
        (
            {
                "proc/1/cgroup": "0::/kubepods.slice/kubepods-besteffort.slice/"
                "cri-containerd-" + "0f" * 32 + ".scope\n"
            },
            {},
            "containerd",
        ),
        (
            {"proc/1/cgroup": "0::/kubepods.slice/crio-" + "0f" * 32 + ".scope\n"},
            {},
            "cri-o",
        ),
        ({"proc/1/cgroup": "4:memory:/lxc/web\n"}, {}, "lxc"),
        ({"proc/1/cgroup": "0::/lxc.payload.web\n"}, {}, "lxc"),
        (
            {"proc/1/cgroup": "11:cpu:/kubepods/burstable/pod7f/" + "0f" * 32 + "\n"},
            {},
            "unknown",
        ),
        (
            {
                "proc/1/cgroup": "0::/\n",
                "proc/self/cgroup": "1:name=systemd:/docker/" + "0f" * 32 + "\n",
            },
            {},
            "docker",
        ),
    ],
)
def test_container_engines(
    tmp_path: Path,
    files: dict[str, str | bytes],
    environ: dict[str, str],
    engine: str,
) -> None:
    """Each marker file, variable and cgroup path names its container engine."""
    for relative, content in files.items():
        write(tmp_path, relative, content)

    runtime = detect(tmp_path, environ)

    assert runtime.name == "container"
    assert runtime.agent_kind == "vanilla"
    assert runtime.engine == engine
    assert dict(runtime.context) == {"job": HOSTNAME, "runner_os": RUNNER_OS}


@pytest.mark.parametrize(
    "cgroup",
    [
        "0::/init.scope\n",
        "0::/system.slice/jibril.service\n",
        "0::/system.slice/containerd.service\n",
        "0::/system.slice/docker.service\n",
        "12:memory:/user.slice\n",
    ],
)
def test_host_cgroups_not_containers(tmp_path: Path, cgroup: str) -> None:
    """Cgroup paths of host services, even container daemons, are a host."""
    write(tmp_path, "proc/1/cgroup", cgroup)
    write(tmp_path, "proc/self/cgroup", cgroup)

    runtime = detect(tmp_path, {})

    assert runtime.name == "vanilla"


def test_container_variable_wins(tmp_path: Path) -> None:
    """The container= variable wins over a Docker marker file."""
    write(tmp_path, ".dockerenv")

    engine = detect_container_engine(tmp_path, {"container": "podman"})

    assert engine == "podman"


def test_pid1_environ_unreadable(tmp_path: Path) -> None:
    """An unreadable proc/1/environ is skipped and detection goes on."""
    (tmp_path / "proc/1/environ").mkdir(parents=True)
    write(tmp_path, "run/.containerenv")

    engine = detect_container_engine(tmp_path, {})

    assert engine == "podman"


def test_systemd_container_file_when_pid1_hidden(tmp_path: Path) -> None:
    """With PID 1's environment hidden (ProtectProc=invisible), systemd's
    own record of the container manager still names the engine."""
    (tmp_path / "proc/1/environ").mkdir(parents=True)
    write(tmp_path, "run/systemd/container", "systemd-nspawn\n")

    engine = detect_container_engine(tmp_path, {})

    assert engine == "systemd-nspawn"


@pytest.mark.parametrize("override", ["vanilla", "container", "kubernetes", "github"])
def test_override_invalid_spellings(tmp_path: Path, override: str) -> None:
    """Override values are case-sensitive names, so variants are rejected."""
    with pytest.raises(SettingsError) as caught:
        detect(tmp_path, {}, override=override.upper())

    assert str(caught.value) == (
        f"runtime environment {override.upper()!r} is invalid; set "
        "run-time.runtime-environment or JIBRIL_RUNTIME_ENVIRONMENT to "
        "auto, vanilla, container, kubernetes or github"
    )


def test_override_vanilla_in_container(tmp_path: Path) -> None:
    """Forcing vanilla inside Docker reports a plain host without an engine."""
    write(tmp_path, ".dockerenv")

    runtime = detect(tmp_path, {}, override="vanilla")

    assert runtime.name == "vanilla"
    assert runtime.agent_kind == "vanilla"
    assert runtime.engine is None


def test_override_container_with_engine(tmp_path: Path) -> None:
    """Forcing container still names the engine that detection finds."""
    write(tmp_path, "run/.containerenv")

    runtime = detect(tmp_path, {}, override="container")

    assert runtime.name == "container"
    assert runtime.engine == "podman"
    assert runtime.notes == ()


def test_override_container_without_engine(tmp_path: Path) -> None:
    """Forcing container on a host reports the engine as unknown."""
    runtime = detect(tmp_path, {}, override="container", job="etl")

    assert runtime.name == "container"
    assert runtime.agent_kind == "vanilla"
    assert runtime.engine == "unknown"
    assert dict(runtime.context) == {"job": "etl", "runner_os": RUNNER_OS}
    assert runtime.notes == (
        "no container engine was found, so the engine is reported as unknown",
    )


def test_override_kubernetes_off_cluster(tmp_path: Path) -> None:
    """Forcing kubernetes outside a pod builds the context from fallbacks."""
    runtime = detect(tmp_path, {}, override="kubernetes", cluster_name="lab")

    assert runtime.name == "kubernetes"
    assert runtime.agent_kind == "kubernetes"
    assert dict(runtime.context) == {"cluster": "lab", "node": HOSTNAME}
    assert runtime.notes == (
        "NODE_NAME is not set, so the hostname 'web-1' is sent as the node name. "
        "Set NODE_NAME from spec.nodeName with the downward API.",
        f"{tmp_path / SERVICE_ACCOUNT / 'namespace'} does not exist, so the "
        "namespace is omitted",
    )


def test_override_github(tmp_path: Path) -> None:
    """Forcing github reads the runner's variables without GITHUB_ACTIONS."""
    environ = {k: v for k, v in GITHUB_MINIMAL_ENVIRON.items() if k != "GITHUB_ACTIONS"}
    write(tmp_path, ".dockerenv")

    runtime = detect(tmp_path, environ, override="github")

    assert runtime.name == "github"
    assert runtime.context["job"] == "build"


def test_override_auto_detects(tmp_path: Path) -> None:
    """The auto override runs detection."""
    write(tmp_path, ".dockerenv")

    runtime = detect(tmp_path, {}, override="auto")

    assert runtime.name == "container"


def test_real_machine() -> None:
    """On this machine, detection with the defaults returns a valid result."""
    runtime = detect_runtime_environment(
        hostname=platform.node() or "localhost",
        cluster_name="test-cluster",
        job=None,
    )

    assert runtime.name in ("vanilla", "container", "kubernetes", "github")
    assert runtime.agent_kind in ("vanilla", "kubernetes", "github")
    assert runtime.context
    if runtime.name == "container":
        assert runtime.engine
    if os.environ.get("GITHUB_ACTIONS") == "true":
        assert runtime.name == "github"
