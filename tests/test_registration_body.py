"""Tests of the registration body sent to POST /api/v1/agents."""

import json
from types import MappingProxyType

import pytest

from jibrild.environment import RuntimeEnvironment
from jibrild.hostfacts import HostFacts
from jibrild.registration_body import build_registration_body

FACTS = HostFacts(
    os="linux",
    arch="amd64",
    hostname="web-1",
    ip="192.0.2.10",
    machine_id="f" * 32,
)
MACHINE_ID = "3d1219c7c4c5404aaa1f6d2a48adfda4"

VANILLA = RuntimeEnvironment(
    name="vanilla",
    agent_kind="vanilla",
    context=MappingProxyType({"job": "web-1", "runner_os": "Linux"}),
)
CONTAINER = RuntimeEnvironment(
    name="container",
    agent_kind="vanilla",
    context=MappingProxyType({"job": "etl", "runner_os": "Linux"}),
    engine="docker",
    notes=("a note that stays out of the body",),
)
KUBERNETES = RuntimeEnvironment(
    name="kubernetes",
    agent_kind="kubernetes",
    context=MappingProxyType(
        {"cluster": "prod-eu", "node": "node-a", "namespace": "monitoring"}
    ),
)
GITHUB = RuntimeEnvironment(
    name="github",
    agent_kind="github",
    context=MappingProxyType(
        {
            "job": "build",
            "run_id": "9876543210",
            "workflow": "CI",
            "repository": "octo-org/octo-repo",
            "repository_id": "123456789",
            "ref_protected": False,
        }
    ),
)


def build(runtime: RuntimeEnvironment, labels: dict[str, str]) -> dict[str, object]:
    """Build a body from FACTS with a fixed version and machine id."""
    return build_registration_body(
        FACTS, runtime, version="0.1.0", machine_id=MACHINE_ID, labels=labels
    )


def test_vanilla_body_exact() -> None:
    """A vanilla body has every required field in the contract's order."""
    body = build(VANILLA, {"team": "payments", "example.com/tier": "gold"})

    assert body == {
        "os": "linux",
        "arch": "amd64",
        "hostname": "web-1",
        "version": "0.1.0",
        "ip": "192.0.2.10",
        "machine_id": MACHINE_ID,
        "labels": {"team": "payments", "example.com/tier": "gold"},
        "kind": "vanilla",
        "vanilla_context": {"job": "web-1", "runner_os": "Linux"},
    }
    assert list(body) == [
        "os",
        "arch",
        "hostname",
        "version",
        "ip",
        "machine_id",
        "labels",
        "kind",
        "vanilla_context",
    ]


def test_machine_id_argument_wins() -> None:
    """The machine_id argument, not the one in the facts, is sent."""
    body = build(VANILLA, {})

    assert body["machine_id"] == MACHINE_ID


def test_empty_labels_omitted() -> None:
    """Empty labels leave the labels field out."""
    body = build(VANILLA, {})

    assert "labels" not in body


def test_container_sends_vanilla_kind() -> None:
    """A container registers as the vanilla kind, without engine or notes."""
    body = build(CONTAINER, {})

    assert body["kind"] == "vanilla"
    assert body["vanilla_context"] == {"job": "etl", "runner_os": "Linux"}
    assert "engine" not in body
    assert "notes" not in body


def test_kubernetes_body_only_its_context() -> None:
    """A kubernetes body carries kubernetes_context and no other context."""
    body = build(KUBERNETES, {})

    assert body["kind"] == "kubernetes"
    assert body["kubernetes_context"] == {
        "cluster": "prod-eu",
        "node": "node-a",
        "namespace": "monitoring",
    }
    assert "vanilla_context" not in body
    assert "github_context" not in body


def test_github_body_keeps_bool() -> None:
    """github_context keeps ref_protected a JSON boolean."""
    body = build(GITHUB, {})

    assert body["kind"] == "github"
    encoded = json.loads(json.dumps(body))
    assert encoded["github_context"]["ref_protected"] is False
    assert "vanilla_context" not in body
    assert "kubernetes_context" not in body


def test_body_is_json_serialisable() -> None:
    """Read-only contexts are copied into plain dicts that json can encode."""
    body = build(KUBERNETES, {"team": "payments"})

    assert json.loads(json.dumps(body)) == body
    assert type(body["kubernetes_context"]) is dict


def test_unknown_agent_kind() -> None:
    """An agent kind outside the contract is a programming error."""
    runtime = RuntimeEnvironment(name="container", agent_kind="container", context={})

    with pytest.raises(ValueError, match="unknown agent kind 'container'"):
        build(runtime, {})
