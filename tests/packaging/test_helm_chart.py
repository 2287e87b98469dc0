"""The Helm chart in packaging/helm/jibril, rendered by a real helm binary
(JIBRIL_HELM, set by `make test-packages`), and one agent started the way
the rendered DaemonSet starts it."""

import base64
import json
import os
import re
import shutil
import stat
import subprocess
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from garnet_local.testing import LocalGarnet
from tests.agent import registrations
from tests.daemon_process import DaemonProcess, clean_environ

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "packaging" / "helm" / "jibril"
PROJECT_TOKEN = "test-project-token"
CLUSTER_NAME = "prod-eu-1"
REQUIRED = ("--set-string", f"cluster.name={CLUSTER_NAME}")
WITH_TOKEN = (*REQUIRED, "--set-string", f"garnet.token={PROJECT_TOKEN}")

# `helm version` of v4.1.4 prints KubeClientVersion v1.35, and 1.37 is the
# newest schema set in kubernetes-validate 1.37.
KUBERNETES_VERSIONS = ("1.35.0", "1.37.0")


@pytest.fixture(scope="session")
def helm_binary() -> Path:
    """The helm binary named by JIBRIL_HELM. A missing one fails the test."""
    value = os.environ.get("JIBRIL_HELM", "")
    if not value:
        pytest.fail(
            "JIBRIL_HELM is not set. Run `make test-packages`, which fetches "
            "helm with packaging/helm/fetch-helm"
        )
    path = Path(value)
    if not os.access(path, os.X_OK) or not path.is_file():
        pytest.fail(f"JIBRIL_HELM={value} is not an executable file")
    return path


@pytest.fixture(scope="session")
def helm_environ(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """An environment that keeps helm's cache, config and data in a temporary
    folder and away from the user's kube config."""
    home = tmp_path_factory.mktemp("helm-home")
    return {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(home),
        "HELM_CACHE_HOME": str(home / "cache"),
        "HELM_CONFIG_HOME": str(home / "config"),
        "HELM_DATA_HOME": str(home / "data"),
        "KUBECONFIG": str(home / "kubeconfig"),
    }


class Helm:
    """A helm runner for the chart, which also parses what helm renders."""

    def __init__(self, binary: Path, environ: dict[str, str]) -> None:
        self.binary = binary
        self.environ = environ

    def run(self, *args: str) -> subprocess.CompletedProcess[str]:
        """Run helm with ``args`` and capture its output."""
        return subprocess.run(
            [str(self.binary), *args],
            env=self.environ,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )

    def template_text(self, *values: str) -> str:
        """Render the chart as release `jibril` in namespace `agents`."""
        result = self.run("template", "jibril", str(CHART), "-n", "agents", *values)
        assert 0 == result.returncode, result.stderr
        return result.stdout

    def template(self, *values: str) -> list[dict[str, Any]]:
        """Render the chart and parse each non-empty YAML document."""
        documents = yaml.safe_load_all(self.template_text(*values))
        return [document for document in documents if document is not None]

    def template_error(self, *values: str) -> str:
        """Render the chart and return helm's error output, which must exist."""
        result = self.run("template", "jibril", str(CHART), *values)
        assert 0 != result.returncode, result.stdout
        return result.stderr


@pytest.fixture
def helm(helm_binary: Path, helm_environ: dict[str, str]) -> Helm:
    return Helm(helm_binary, helm_environ)


def by_kind(documents: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [document for document in documents if document["kind"] == kind]


def daemonset(documents: list[dict[str, Any]]) -> dict[str, Any]:
    [found] = by_kind(documents, "DaemonSet")
    return found


def pod_spec(documents: list[dict[str, Any]]) -> dict[str, Any]:
    spec: dict[str, Any] = daemonset(documents)["spec"]["template"]["spec"]
    return spec


def agent_container(documents: list[dict[str, Any]]) -> dict[str, Any]:
    containers: list[dict[str, Any]] = pod_spec(documents)["containers"]
    [container] = containers
    assert "jibrild" == container["name"]
    return container


def env_entries(container: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {entry["name"]: entry for entry in container["env"]}


def volumes(documents: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {volume["name"]: volume for volume in pod_spec(documents)["volumes"]}


def checksum(documents: list[dict[str, Any]]) -> str:
    annotations = daemonset(documents)["spec"]["template"]["metadata"]["annotations"]
    value: str = annotations["checksum/project-token"]
    return value


# Value sets that between them set every value of the chart.
VALUE_SETS = {
    "token": WITH_TOKEN,
    "existing secret": (
        *REQUIRED,
        "--set",
        "garnet.existingSecret=garnet-token,garnet.existingSecretKey=api",
    ),
    "url and log level": (
        *WITH_TOKEN,
        "--set",
        "garnet.url=https://garnet.internal.example/garnet/",
        "--set",
        "logLevel=debug",
    ),
    "scheduling": (
        *WITH_TOKEN,
        "--set",
        "tolerations[0].key=dedicated,tolerations[0].operator=Equal",
        "--set",
        "tolerations[0].value=infra,tolerations[0].effect=NoSchedule",
        "--set",
        "nodeSelector.pool=agents",
        "--set",
        "priorityClassName=system-node-critical",
        "--set",
        "affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution"
        ".nodeSelectorTerms[0].matchExpressions[0].key=kubernetes.io/arch",
        "--set",
        "affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution"
        ".nodeSelectorTerms[0].matchExpressions[0].operator=In",
        "--set",
        "affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution"
        ".nodeSelectorTerms[0].matchExpressions[0].values[0]=amd64",
    ),
    "resources and extras": (
        *WITH_TOKEN,
        "--set",
        "resources.requests.cpu=50m,resources.limits.memory=256Mi",
        "--set",
        "extraEnv[0].name=JIBRIL_LABELS,extraEnv[0].value=team=infra",
        "--set",
        "imagePullSecrets[0].name=registry-credentials",
        "--set",
        "podAnnotations.team=infra,podLabels.tier=agents",
        "--set",
        "image.repository=registry.example/jibril,image.tag=0.1.0-rc1",
        "--set",
        "image.pullPolicy=Always",
        "--set",
        "state.hostPath=/srv/jibril",
    ),
}


def test_chart_versions_follow_jibrild(helm: Helm) -> None:
    """Chart.yaml's version and appVersion are jibrild's version, and the
    image tag defaults to it."""
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())

    documents = helm.template(*WITH_TOKEN)

    assert "v2" == chart["apiVersion"]
    assert "jibril" == chart["name"]
    assert project["version"] == chart["version"]
    assert project["version"] == chart["appVersion"]
    assert f"jibril:{project['version']}" == agent_container(documents)["image"]


def test_lint_strict_is_clean(helm: Helm) -> None:
    """`helm lint --strict` passes and reports no warning or error."""
    result = helm.run("lint", "--strict", str(CHART), *WITH_TOKEN)

    assert 0 == result.returncode, result.stdout + result.stderr
    assert "0 chart(s) failed" in result.stdout
    assert "[WARNING]" not in result.stdout
    assert "[ERROR]" not in result.stdout


@pytest.mark.parametrize("values", VALUE_SETS.values(), ids=VALUE_SETS.keys())
@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
def test_documents_validate_against_schemas(
    helm: Helm, values: tuple[str, ...], version: str
) -> None:
    """Every rendered document is valid for Kubernetes, strictly: an unknown
    field is an error too."""
    documents = helm.template(*values)

    problems = []
    for document in documents:
        try:
            kubernetes_validate.validate(document, version, strict=True)
        except kubernetes_validate.ValidationError as error:
            location = "/".join(str(part) for part in error.path)
            problems.append(f"{document['kind']} at {location}: {error.message}")

    assert documents
    assert [] == problems


# helm adds `global` to the values of a chart that is a dependency, so the
# schema lists it although values.yaml does not.
HELM_VALUES = {"global"}


def load_schema() -> dict[str, Any]:
    schema: dict[str, Any] = json.loads((CHART / "values.schema.json").read_text())
    return schema


def is_owned(schema: dict[str, Any]) -> bool:
    """Return whether the chart owns every key of this object, so that the schema
    rejects a key it does not list. Free-form maps are not owned."""
    return schema.get("additionalProperties") is False


def owned_value_paths(schema: dict[str, Any], values: dict[str, Any]) -> set[str]:
    """Return the dotted paths of `values`, down to the first value that is not an
    object the chart owns, such as a list or a free-form map."""
    paths = set()
    for key, value in values.items():
        child = schema["properties"][key]
        if is_owned(child) and isinstance(value, dict):
            paths.update(f"{key}.{path}" for path in owned_value_paths(child, value))
        else:
            paths.add(key)
    return paths


def schema_paths(schema: dict[str, Any]) -> set[str]:
    """Return the dotted paths of every value that the schema lists."""
    paths = set()
    for key, child in schema["properties"].items():
        if is_owned(child):
            paths.update(f"{key}.{path}" for path in schema_paths(child))
        else:
            paths.add(key)
    return paths


def set_paths(schema: dict[str, Any], arguments: tuple[str, ...]) -> set[str]:
    """Return the owned value paths that the --set and --set-string arguments set,
    such as `tolerations` for `tolerations[0].key=dedicated`."""
    paths = set()
    for flag, assignments in zip(arguments[::2], arguments[1::2], strict=True):
        assert flag in ("--set", "--set-string"), flag
        for assignment in assignments.split(","):
            name = assignment.split("=", 1)[0]
            parts = [part for part in re.split(r"\.|\[\d+\]", name) if part]
            node = schema
            owned = []
            for part in parts:
                if not is_owned(node):
                    break
                owned.append(part)
                node = node["properties"][part]
            paths.add(".".join(owned))
    return paths


def test_schema_lists_every_value() -> None:
    """values.schema.json lists the values of values.yaml, no more and no
    fewer, so a value added to one file is added to the other."""
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    schema = load_schema()

    assert owned_value_paths(schema, values) == schema_paths(schema) - HELM_VALUES


def test_value_sets_set_every_value() -> None:
    """The value sets that every rendering test uses set each value of the
    chart at least once, so each documented value is rendered."""
    schema = load_schema()

    covered = set().union(
        *(set_paths(schema, values) for values in VALUE_SETS.values())
    )

    assert schema_paths(schema) - HELM_VALUES == covered


def test_chart_as_dependency_renders(helm: Helm, tmp_path: Path) -> None:
    """The chart renders as a dependency of another chart, which gives it
    `global` values, and the parent's values reach it."""
    parent = tmp_path / "parent"
    shutil.copytree(CHART, parent / "charts" / "jibril")
    version = yaml.safe_load((CHART / "Chart.yaml").read_text())["version"]
    chart = {
        "apiVersion": "v2",
        "name": "parent",
        "version": "1.0.0",
        "dependencies": [{"name": "jibril", "version": version}],
    }
    (parent / "Chart.yaml").write_text(yaml.safe_dump(chart))
    values = {
        "global": {"imageRegistry": "registry.example"},
        "jibril": {"garnet": {"token": PROJECT_TOKEN}, "cluster": {"name": "a"}},
    }
    (parent / "values.yaml").write_text(yaml.safe_dump(values))

    result = helm.run("template", "parent", str(parent))

    assert 0 == result.returncode, result.stderr
    documents = [document for document in yaml.safe_load_all(result.stdout) if document]
    env = env_entries(agent_container(documents))
    assert "a" == env["JIBRIL_CLUSTER_NAME"]["value"]


# A misspelt value in --set, with the location helm reports and the unknown key.
MISSPELT_VALUES = {
    "garnet.tokne": ("/garnet", "tokne"),
    "clusterName": ("", "clusterName"),
    "image.tga": ("/image", "tga"),
    "state.hostpath": ("/state", "hostpath"),
    "podAnotations.team": ("", "podAnotations"),
}


@pytest.mark.parametrize("name", MISSPELT_VALUES)
def test_misspelt_value_fails(helm: Helm, name: str) -> None:
    """A value the chart does not know fails rendering, naming the key,
    instead of being ignored silently."""
    location, key = MISSPELT_VALUES[name]

    error = helm.template_error(*WITH_TOKEN, "--set", f"{name}=x")

    assert f"at '{location}': additional properties '{key}' not allowed" in error


def test_invalid_extra_env_entry_fails(helm: Helm) -> None:
    """An extraEnv entry without a name, or with a misspelt field, fails
    rendering, because each entry is a Kubernetes EnvVar."""
    unnamed = helm.template_error(*WITH_TOKEN, "--set", "extraEnv[0].value=x")
    misspelt = helm.template_error(
        *WITH_TOKEN, "--set", "extraEnv[0].name=A,extraEnv[0].valeu=x"
    )

    assert "at '/extraEnv/0': missing property 'name'" in unnamed
    assert "at '/extraEnv/0': additional properties 'valeu' not allowed" in misspelt


def test_invalid_pull_policy_fails(helm: Helm) -> None:
    """image.pullPolicy takes the three policies of Kubernetes only."""
    error = helm.template_error(*WITH_TOKEN, "--set", "image.pullPolicy=Sometimes")

    assert (
        "at '/image/pullPolicy': value must be one of 'Always', 'IfNotPresent', 'Never'"
    ) in error


def test_label_of_boolean_fails(helm: Helm) -> None:
    """A pod label that --set reads as a boolean fails rendering, since
    Kubernetes takes strings only there."""
    error = helm.template_error(*WITH_TOKEN, "--set", "podLabels.canary=true")

    assert "at '/podLabels/canary': got boolean, want string" in error


@pytest.mark.parametrize(
    "key", ["app.kubernetes.io/name", "app.kubernetes.io/instance"]
)
def test_pod_label_of_selector_fails(helm: Helm, key: str) -> None:
    """podLabels cannot set a selector label of the DaemonSet, which the pod
    template would get twice."""
    escaped = key.replace(".", "\\.")

    error = helm.template_error(*WITH_TOKEN, "--set", f"podLabels.{escaped}=other")

    assert (
        f"podLabels sets {key}, which the chart sets itself as a selector label "
        "of the DaemonSet; remove it from podLabels"
    ) in error


def test_pod_annotation_of_checksum_fails(helm: Helm) -> None:
    """podAnnotations cannot set the checksum of the project token, which
    the pod template would get twice."""
    error = helm.template_error(
        *WITH_TOKEN, "--set", "podAnnotations.checksum/project-token=fixed"
    )

    assert (
        "podAnnotations sets checksum/project-token, which the chart sets itself "
        "so that a new project token rolls the pods; remove it from podAnnotations"
    ) in error


def test_token_renders_secret(helm: Helm) -> None:
    """garnet.token renders a Secret, base64, that the token volume reads."""
    documents = helm.template(*WITH_TOKEN)

    [secret] = by_kind(documents, "Secret")
    assert ["DaemonSet", "Secret"] == sorted(document["kind"] for document in documents)
    assert "agents" == secret["metadata"]["namespace"]
    expected = base64.b64encode(PROJECT_TOKEN.encode()).decode()
    assert {"token": expected} == secret["data"]
    token_volume = volumes(documents)["project-token"]["secret"]
    assert secret["metadata"]["name"] == token_volume["secretName"]
    assert [{"key": "token", "path": "garnet-api-token"}] == token_volume["items"]


def test_digit_values_stay_strings(helm: Helm) -> None:
    """A token, a cluster name, an image tag and a priority class of digits,
    which --set reads as numbers, render as the same digits."""
    documents = helm.template(
        *("--set", "garnet.token=12345", "--set", "cluster.name=42"),
        *("--set", "image.tag=7", "--set", "priorityClassName=100"),
    )

    [secret] = by_kind(documents, "Secret")
    assert {"token": base64.b64encode(b"12345").decode()} == secret["data"]
    env = env_entries(agent_container(documents))
    assert "42" == env["JIBRIL_CLUSTER_NAME"]["value"]
    assert "jibril:7" == agent_container(documents)["image"]
    assert "100" == pod_spec(documents)["priorityClassName"]


def test_token_absent_from_daemonset(helm: Helm) -> None:
    """The project token appears nowhere in clear and only in the Secret in
    base64. The pod reads it from a file, not from a variable."""
    token = "distinct-token-8f3a2c"
    encoded = base64.b64encode(token.encode()).decode()

    text = helm.template_text(*REQUIRED, "--set-string", f"garnet.token={token}")

    documents = [
        document for document in yaml.safe_load_all(text) if document is not None
    ]
    assert token not in text
    assert 1 == text.count(encoded)
    assert encoded not in yaml.safe_dump(daemonset(documents))
    env = env_entries(agent_container(documents))
    assert "GARNET_API_TOKEN" not in env
    assert {"value": "/run/secrets/garnet/garnet-api-token"} == {
        key: value
        for key, value in env["GARNET_API_TOKEN_FILE"].items()
        if key != "name"
    }


def test_token_volume_layout(helm: Helm) -> None:
    """The token file is mounted read-only, mode 0400, at the path that
    GARNET_API_TOKEN_FILE names."""
    documents = helm.template(*WITH_TOKEN)

    container = agent_container(documents)
    mounts = {mount["name"]: mount for mount in container["volumeMounts"]}
    token_volume = volumes(documents)["project-token"]["secret"]
    assert 0o400 == token_volume["defaultMode"]
    assert "/run/secrets/garnet" == mounts["project-token"]["mountPath"]
    assert mounts["project-token"]["readOnly"] is True


def test_existing_secret_is_used(helm: Helm) -> None:
    """garnet.existingSecret renders no Secret and mounts the named one, with
    the key `token` unless garnet.existingSecretKey names another."""
    existing = (*REQUIRED, "--set", "garnet.existingSecret=garnet-token")

    default_key = helm.template(*existing)
    other_key = helm.template(*existing, "--set", "garnet.existingSecretKey=api")

    assert [] == by_kind(default_key, "Secret")
    token_volume = volumes(default_key)["project-token"]["secret"]
    assert "garnet-token" == token_volume["secretName"]
    assert [{"key": "token", "path": "garnet-api-token"}] == token_volume["items"]
    other_items = volumes(other_key)["project-token"]["secret"]["items"]
    assert [{"key": "api", "path": "garnet-api-token"}] == other_items


def test_missing_token_fails(helm: Helm) -> None:
    """Without garnet.token or garnet.existingSecret rendering fails and names
    the values to set."""
    error = helm.template_error(*REQUIRED)

    assert (
        "project token missing: set garnet.token, or garnet.existingSecret "
        "to a Secret that contains it"
    ) in error


def test_token_and_existing_secret_fail(helm: Helm) -> None:
    """garnet.token and garnet.existingSecret together fail rendering."""
    error = helm.template_error(*WITH_TOKEN, "--set", "garnet.existingSecret=other")

    assert (
        "garnet.token and garnet.existingSecret are both set; keep only one of them"
    ) in error


def test_missing_cluster_name_fails(helm: Helm) -> None:
    """Without cluster.name rendering fails, naming the value to set."""
    error = helm.template_error("--set-string", f"garnet.token={PROJECT_TOKEN}")

    assert (
        "cluster.name missing: set it to the name of this Kubernetes cluster, "
        "such as --set cluster.name=prod-eu-1; the kubernetes agent kind "
        "requires it"
    ) in error


def test_invalid_cluster_name_fails(helm: Helm) -> None:
    """A cluster name that is no DNS-1123 subdomain fails rendering, as the
    daemon would reject it at start."""
    error = helm.template_error(
        "--set-string", f"garnet.token={PROJECT_TOKEN}", "--set", "cluster.name=Prod_1"
    )

    assert ('cluster.name "Prod_1" is invalid: expected a DNS-1123 subdomain') in error


# Each variable the chart sets, with an extraEnv value that would replace it.
CHART_VARIABLES = {
    "NODE_NAME": ("--set", "extraEnv[0].value=node-b"),
    "JIBRIL_CLUSTER_NAME": ("--set", "extraEnv[0].value=other"),
    "JIBRIL_RUNTIME_ENVIRONMENT": ("--set", "extraEnv[0].value=vanilla"),
    "GARNET_API_TOKEN": ("--set", f"extraEnv[0].value={PROJECT_TOKEN}"),
    "GARNET_API_TOKEN_FILE": ("--set", "extraEnv[0].value=/etc/token"),
    "GARNET_AGENT_TOKEN_PATH": ("--set", "extraEnv[0].value=/tmp/agent.token"),
    "GARNET_API_URL": ("--set", "extraEnv[0].value=https://garnet.example/"),
    "JIBRIL_LOG_LEVEL": ("--set", "extraEnv[0].value=debug"),
}


@pytest.mark.parametrize("name", CHART_VARIABLES)
def test_extra_env_chart_variable_fails(helm: Helm, name: str) -> None:
    """An extraEnv entry for a variable the chart sets fails rendering, since
    the pod would get the name twice and silently keep the last value."""
    error = helm.template_error(
        *WITH_TOKEN, "--set", f"extraEnv[0].name={name}", *CHART_VARIABLES[name]
    )

    assert f"extraEnv sets {name}, which the chart sets itself" in error


def test_extra_env_token_from_secret_fails(helm: Helm) -> None:
    """GARNET_API_TOKEN from a secretKeyRef in extraEnv fails too: it would
    win over the token file and put the project token in the environment."""
    error = helm.template_error(
        *REQUIRED,
        "--set",
        "garnet.existingSecret=garnet-token",
        "--set",
        "extraEnv[0].name=GARNET_API_TOKEN",
        "--set",
        "extraEnv[0].valueFrom.secretKeyRef.name=garnet-token",
        "--set",
        "extraEnv[0].valueFrom.secretKeyRef.key=token",
    )

    assert (
        "extraEnv sets GARNET_API_TOKEN, which the chart sets itself; set "
        "garnet.token or garnet.existingSecret instead"
    ) in error


@pytest.mark.parametrize("level", ["DEBUG", "warn", "error", "trace"])
def test_log_level_accepted(helm: Helm, level: str) -> None:
    """logLevel takes jibrild's level names and Jibril's, in any case."""
    documents = helm.template(*WITH_TOKEN, "--set", f"logLevel={level}")

    env = env_entries(agent_container(documents))
    assert level == env["JIBRIL_LOG_LEVEL"]["value"]


def test_invalid_log_level_fails(helm: Helm) -> None:
    """A log level jibrild does not know fails rendering, as the daemon would
    stop at start on every node with exit code 78."""
    error = helm.template_error(*WITH_TOKEN, "--set", "logLevel=verbose")

    assert (
        'logLevel "verbose" is invalid: expected debug, info, warning or error'
    ) in error


def test_environment_of_agent(helm: Helm) -> None:
    """The agent gets its node name from the downward API, the cluster name,
    the kubernetes runtime environment and the state path."""
    documents = helm.template(*WITH_TOKEN)

    env = env_entries(agent_container(documents))
    expected_node = {"fieldRef": {"fieldPath": "spec.nodeName"}}
    assert expected_node == env["NODE_NAME"]["valueFrom"]
    assert CLUSTER_NAME == env["JIBRIL_CLUSTER_NAME"]["value"]
    assert "kubernetes" == env["JIBRIL_RUNTIME_ENVIRONMENT"]["value"]
    assert "/var/lib/jibril/agent.token" == env["GARNET_AGENT_TOKEN_PATH"]["value"]
    assert "GARNET_API_URL" not in env
    assert "JIBRIL_LOG_LEVEL" not in env


def test_url_and_log_level_set(helm: Helm) -> None:
    """garnet.url and logLevel reach the agent as GARNET_API_URL and
    JIBRIL_LOG_LEVEL, and extraEnv comes last."""
    documents = helm.template(*VALUE_SETS["url and log level"])
    extra = helm.template(*VALUE_SETS["resources and extras"])

    env = env_entries(agent_container(documents))
    url = "https://garnet.internal.example/garnet/"
    assert url == env["GARNET_API_URL"]["value"]
    assert "debug" == env["JIBRIL_LOG_LEVEL"]["value"]
    extra_env = agent_container(extra)["env"]
    assert {"name": "JIBRIL_LABELS", "value": "team=infra"} == extra_env[-1]


def test_namespace_file_mounted(helm: Helm) -> None:
    """The pod's namespace is a downward API file in the service account
    folder, where jibrild reads it, with no service account token."""
    documents = helm.template(*WITH_TOKEN)

    spec = pod_spec(documents)
    mounts = {
        mount["name"]: mount for mount in agent_container(documents)["volumeMounts"]
    }
    namespace = volumes(documents)["namespace"]["downwardAPI"]
    assert spec["automountServiceAccountToken"] is False
    assert [
        {"path": "namespace", "fieldRef": {"fieldPath": "metadata.namespace"}}
    ] == namespace["items"]
    folder = "/var/run/secrets/kubernetes.io/serviceaccount"
    assert folder == mounts["namespace"]["mountPath"]


def test_state_on_host_path(helm: Helm) -> None:
    """The state folder is a hostPath folder the kubelet creates when it is
    missing, mounted where the agent token path points, and the init
    container sets its mode to 0700."""
    default = helm.template(*WITH_TOKEN)
    moved = helm.template(*WITH_TOKEN, "--set", "state.hostPath=/srv/jibril")

    expected = {"path": "/var/lib/jibril", "type": "DirectoryOrCreate"}
    assert expected == volumes(default)["state"]["hostPath"]
    moved_path = volumes(moved)["state"]["hostPath"]["path"]
    assert "/srv/jibril" == moved_path
    [init] = pod_spec(default)["initContainers"]
    for container in (init, agent_container(default)):
        state_mounts = [
            mount for mount in container["volumeMounts"] if mount["name"] == "state"
        ]
        assert [{"name": "state", "mountPath": "/var/lib/jibril"}] == state_mounts
    assert ["chmod", "0700", "/var/lib/jibril"] == init["command"]


@pytest.mark.parametrize(
    "path", ["/", "//", "var/lib/jibril", "/var/lib/../jibril", ""]
)
def test_invalid_state_host_path_fails(helm: Helm, path: str) -> None:
    """A state folder that is relative, climbs with .., or is the node's
    root fails rendering: the init container would chmod it to 0700."""
    error = helm.template_error(*WITH_TOKEN, "--set-string", f"state.hostPath={path}")

    assert f'state.hostPath "{path}" is invalid' in error


def test_security_context_is_minimal(helm: Helm) -> None:
    """No host namespaces, no capabilities, no privilege escalation, a
    read-only root filesystem and the runtime's seccomp profile."""
    documents = helm.template(*WITH_TOKEN)

    spec = pod_spec(documents)
    assert spec["hostNetwork"] is False
    assert spec["hostPID"] is False
    assert spec["hostIPC"] is False
    assert {"type": "RuntimeDefault"} == spec["securityContext"]["seccompProfile"]
    assert 0 == spec["securityContext"]["runAsUser"]
    expected = {
        "allowPrivilegeEscalation": False,
        "privileged": False,
        "readOnlyRootFilesystem": True,
        "capabilities": {"drop": ["ALL"]},
    }
    containers = [*spec["initContainers"], *spec["containers"]]
    assert 2 == len(containers)
    for container in containers:
        assert expected == container["securityContext"], container["name"]
    host_paths = [
        volume for volume in volumes(documents).values() if "hostPath" in volume
    ]
    assert ["state"] == [volume["name"] for volume in host_paths]


def test_scheduling_values_pass_through(helm: Helm) -> None:
    """tolerations, nodeSelector, affinity and priorityClassName reach the
    pod spec as given."""
    default = pod_spec(helm.template(*WITH_TOKEN))
    spec = pod_spec(helm.template(*VALUE_SETS["scheduling"]))

    assert [{"operator": "Exists"}] == default["tolerations"]
    assert {"kubernetes.io/os": "linux"} == default["nodeSelector"]
    assert "affinity" not in default
    expected_toleration = {
        "key": "dedicated",
        "operator": "Equal",
        "value": "infra",
        "effect": "NoSchedule",
    }
    assert [expected_toleration] == spec["tolerations"]
    assert {"kubernetes.io/os": "linux", "pool": "agents"} == spec["nodeSelector"]
    terms = spec["affinity"]["nodeAffinity"][
        "requiredDuringSchedulingIgnoredDuringExecution"
    ]["nodeSelectorTerms"]
    expression = {"key": "kubernetes.io/arch", "operator": "In", "values": ["amd64"]}
    assert [{"matchExpressions": [expression]}] == terms
    assert "system-node-critical" == spec["priorityClassName"]


def test_resources_pass_through(helm: Helm) -> None:
    """resources reaches both containers, merged over the defaults."""
    documents = helm.template(*VALUE_SETS["resources and extras"])

    spec = pod_spec(documents)
    expected = {
        "requests": {"cpu": "50m", "memory": "64Mi"},
        "limits": {"memory": "256Mi"},
    }
    for container in (*spec["initContainers"], *spec["containers"]):
        assert expected == container["resources"], container["name"]
        assert "registry.example/jibril:0.1.0-rc1" == container["image"]


def test_checksum_follows_token(helm: Helm) -> None:
    """The pod template's checksum changes with the project token, so an
    upgrade with a new token rolls the pods, and stays for the same token."""
    first = checksum(helm.template(*REQUIRED, "--set-string", "garnet.token=one"))
    again = checksum(helm.template(*REQUIRED, "--set-string", "garnet.token=one"))
    second = checksum(helm.template(*REQUIRED, "--set-string", "garnet.token=two"))

    assert first == again
    assert first != second


NODE_NAME = "node-a"
POD_NAMESPACE = "agents"
# The image's entrypoint is `/usr/bin/jibrild run`. The image's commented
# /etc/default/jibril and /etc/jibril/config.yaml set nothing, so /dev/null
# replaces both, and settings files of the test machine are not read.
ENTRYPOINT_ARGS = ("run", "--config", "/dev/null", "--env-file", "/dev/null")
RUN_PREFIXES = ("/run/", "/var/run/")


class Pod:
    """One start of the rendered pod on this machine, laid out as the kubelet
    lays it out.

    A hostPath volume is a folder under `node`, and the agent reaches it
    through the paths in its environment, mapped to that folder. Every other
    volume is mounted under /run or /var/run in the pod, so it is laid out
    in `run_folder`, which is mounted on /run for the agent in a mount
    namespace of its own. The agent then reads the project token and the
    namespace file at their paths in the pod.
    """

    def __init__(self, documents: list[dict[str, Any]], root: Path, node: Path) -> None:
        self.documents = documents
        self.spec = pod_spec(documents)
        self.container = agent_container(documents)
        self.run_folder = root / "run"
        self.run_folder.mkdir(parents=True)
        self.folders: dict[str, Path] = {}

        mounts = {
            mount["name"]: mount["mountPath"]
            for mount in self.container["volumeMounts"]
        }
        for name, volume in volumes(documents).items():
            if "hostPath" in volume:
                self.folders[name] = self._host_path(node, volume["hostPath"])
                continue

            folder = self._folder_on_run(mounts[name])
            if "secret" in volume:
                self.folders[name] = self._secret(folder, volume["secret"])
            elif "downwardAPI" in volume:
                self.folders[name] = self._downward(folder, volume)
            else:
                raise AssertionError(f"volume type not supported by Pod: {volume}")

    def command_prefix(self) -> tuple[str, ...]:
        """Return the command prefix that runs a command with `run_folder`
        bind-mounted on /run and with the agent container's user and
        capabilities. The private mount namespace keeps the mount invisible
        to the rest of the machine."""
        script = 'mount --bind "$1" /run && shift && exec "$@"'
        return (
            *("unshare", "--mount", "--propagation", "private"),
            *("sh", "-c", script, "sh", str(self.run_folder)),
            *self.privileges(self.container),
        )

    def privileges(self, container: dict[str, Any]) -> tuple[str, ...]:
        """Return a setpriv command that gives a process the pod's user and
        group and the container's capabilities and no_new_privs flag."""
        pod_context = self.spec["securityContext"]
        context = container["securityContext"]
        command = [
            "setpriv",
            f"--reuid={pod_context['runAsUser']}",
            f"--regid={pod_context['runAsGroup']}",
            "--clear-groups",
        ]
        assert ["ALL"] == context["capabilities"]["drop"], container["name"]
        assert "add" not in context["capabilities"], container["name"]
        command.extend(["--bounding-set=-all", "--inh-caps=-all"])
        if context["allowPrivilegeEscalation"] is False:
            command.append("--no-new-privs")
        return (*command, "--")

    def map_path(self, text: str, container: dict[str, Any]) -> str:
        """Translate a path in a container to the node folder of its hostPath
        volume. A path under /run stays as it is."""
        for mount in container["volumeMounts"]:
            mount_path = mount["mountPath"]
            if mount_path.startswith(RUN_PREFIXES):
                continue
            if text == mount_path or text.startswith(mount_path + "/"):
                folder = self.folders[mount["name"]]
                return str(folder) + text.removeprefix(mount_path)
        return text

    def _folder_on_run(self, mount_path: str) -> Path:
        for prefix in RUN_PREFIXES:
            if mount_path.startswith(prefix):
                return self.run_folder / mount_path.removeprefix(prefix)
        raise AssertionError(
            f"Pod lays out volumes only under /run or /var/run, not at {mount_path}"
        )

    def run_init_containers(self) -> None:
        """Run each init container's command with its mapped paths and
        privileges."""
        for container in self.spec["initContainers"]:
            command = [
                self.map_path(argument, container) for argument in container["command"]
            ]
            subprocess.run(
                [*self.privileges(container), *command], check=True, timeout=30
            )

    def environ(self) -> dict[str, str]:
        """Return the agent container's environment as the kubelet builds it."""
        # The kubelet always sets these two, to the API server's service. The
        # daemon never connects to it.
        environ = {
            "KUBERNETES_SERVICE_HOST": "127.0.0.1",
            "KUBERNETES_SERVICE_PORT": "443",
        }
        for entry in self.container["env"]:
            environ[entry["name"]] = self._resolve(entry)
        return environ

    def _resolve(self, entry: dict[str, Any]) -> str:
        if "value" in entry:
            return self.map_path(entry["value"], self.container)

        source = entry["valueFrom"]
        if "fieldRef" in source:
            return self._field(source["fieldRef"]["fieldPath"])
        if "secretKeyRef" in source:
            reference = source["secretKeyRef"]
            data = self._secret_data(reference["name"])
            return base64.b64decode(data[reference["key"]]).decode()
        raise AssertionError(f"env entry source not supported by Pod: {entry}")

    def _field(self, field_path: str) -> str:
        fields = {"spec.nodeName": NODE_NAME, "metadata.namespace": POD_NAMESPACE}
        return fields[field_path]

    @staticmethod
    def _host_path(node: Path, host_path: dict[str, Any]) -> Path:
        """Return the node's folder of a hostPath volume. A missing folder is
        created with mode 0755, as the kubelet creates a DirectoryOrCreate
        folder."""
        assert "DirectoryOrCreate" == host_path["type"]
        folder: Path = node / host_path["path"].lstrip("/")
        if not folder.exists():
            folder.mkdir(parents=True)
            folder.chmod(0o755)
        return folder

    def _secret(self, folder: Path, secret: dict[str, Any]) -> Path:
        files = {
            item["path"]: base64.b64decode(
                self._secret_data(secret["secretName"])[item["key"]]
            )
            for item in secret["items"]
        }
        return write_atomic_volume(folder, files, secret["defaultMode"])

    def _secret_data(self, name: str) -> dict[str, str]:
        [secret] = [
            secret
            for secret in by_kind(self.documents, "Secret")
            if secret["metadata"]["name"] == name
        ]
        data: dict[str, str] = secret["data"]
        return data

    def _downward(self, folder: Path, volume: dict[str, Any]) -> Path:
        downward = volume["downwardAPI"]
        files = {
            item["path"]: self._field(item["fieldRef"]["fieldPath"]).encode()
            for item in downward["items"]
        }
        return write_atomic_volume(folder, files, downward["defaultMode"])


def write_atomic_volume(folder: Path, files: dict[str, bytes], mode: int) -> Path:
    """Lay out a secret or downward API volume as the kubelet's atomic writer
    does: the files in a timestamped folder, `..data` linked to that folder,
    and each file name linked to `..data/NAME`."""
    timestamped = folder / "..2026_12_04_10_00_00.1234567890"
    timestamped.mkdir(parents=True)
    for name, content in files.items():
        path = timestamped / name
        path.write_bytes(content)
        path.chmod(mode)
    (folder / "..data").symlink_to(timestamped.name)
    for name in files:
        (folder / name).symlink_to(f"..data/{name}")
    return folder


@pytest.fixture
def daemons() -> Iterator[list[DaemonProcess]]:
    """The agents a test starts, killed afterwards if still running."""
    started: list[DaemonProcess] = []
    yield started
    for daemon in started:
        daemon.close()


def start_pod(pod: Pod, tmp_path: Path, daemons: list[DaemonProcess]) -> DaemonProcess:
    """Run the pod's init containers, then start its agent container."""
    pod.run_init_containers()
    args = [*ENTRYPOINT_ARGS, *pod.container.get("args", [])]
    environ = clean_environ(**pod.environ())
    daemon = DaemonProcess(tmp_path, args, environ, pod.command_prefix())
    daemons.append(daemon)
    return daemon


def warnings_in(daemon: DaemonProcess) -> list[str]:
    return [line for line in daemon.lines if line.startswith("WARNING:")]


def test_pod_registers_once(
    helm: Helm, api: LocalGarnet, tmp_path: Path, daemons: list[DaemonProcess]
) -> None:
    """The rendered pod, started on this machine, registers its node as the
    kubernetes agent kind, and a second pod on the same node keeps the
    identity instead of registering again."""
    if os.geteuid() != 0:
        pytest.fail("the pod's volumes need a mount namespace. Run as root")
    assert Path("/run") == Path("/var/run").resolve(), "/var/run is not /run"
    documents = helm.template(
        *WITH_TOKEN, "--set", f"garnet.url={api.url}", "--set", "logLevel=debug"
    )
    node = tmp_path / "node"
    first_pod = Pod(documents, tmp_path / "pod-1", node)
    state = first_pod.folders["state"]

    first = start_pod(first_pod, tmp_path, daemons)
    first.wait_for_line("agent registration complete")
    first.wait_for_message("READY=1")
    first_status = Path(f"/proc/{first.process.pid}/status").read_text()
    first_code = first.stop()

    [request] = registrations(api)
    body = request["body"]
    assert isinstance(body, dict)
    assert "kubernetes" == body["kind"]
    context = body["kubernetes_context"]
    assert CLUSTER_NAME == context["cluster"]
    assert NODE_NAME == context["node"]
    assert POD_NAMESPACE == context["namespace"]
    assert 0 == first_code
    assert "CapEff:\t0000000000000000" in first_status.splitlines()
    assert "CapBnd:\t0000000000000000" in first_status.splitlines()
    assert "NoNewPrivs:\t1" in first_status.splitlines()
    assert "Uid:\t0\t0\t0\t0" in first_status.splitlines()
    assert [] == warnings_in(first)
    assert "INFO: detected runtime environment: kubernetes" in first.lines
    assert 0o700 == stat.S_IMODE(state.stat().st_mode)
    assert 0o600 == stat.S_IMODE((state / "agent.token").stat().st_mode)
    assert (state / "agent.json").is_file()

    second_pod = Pod(documents, tmp_path / "pod-2", node)
    second = start_pod(second_pod, tmp_path, daemons)
    second.wait_for_line("using stored agent token")
    second.wait_for_message("READY=1")
    second_code = second.stop()

    assert 1 == len(registrations(api))
    assert 0 == second_code
    assert [] == warnings_in(second)
    agent_token = (state / "agent.token").read_text().strip()
    for daemon in (first, second):
        assert PROJECT_TOKEN not in daemon.output()
        assert agent_token not in daemon.output()
