"""Tests of the local Garnet API, over real HTTP on 127.0.0.1."""

import base64
import copy
import hashlib
import json
import logging
import os
import re
import select
import signal
import stat
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from garnet_local.app import make_app
from garnet_local.errors import StateFolderError
from garnet_local.testing import LocalGarnet

ROOT = Path(__file__).resolve().parent.parent
PROJECT_TOKEN = "test-project-token"
READONLY_TOKEN = "readonly-project-token"
TOKENS = {PROJECT_TOKEN: "write", READONLY_TOKEN: "readonly"}
LISTENING = re.compile(r"garnet local api listening url=(http://127\.0\.0\.1:\d+/)")

_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


@dataclass
class Reply:
    """An HTTP response as the tests inspect it."""

    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        """Parse the body as JSON."""
        return json.loads(self.body)


def call(
    url: str,
    method: str = "GET",
    headers: dict[str, str] | None = None,
    body: object = None,
    raw: bytes | None = None,
) -> Reply:
    """Send one request and return the reply, error statuses included."""
    data = raw if raw is not None else None
    if body is not None:
        data = json.dumps(body).encode()
    request = urllib.request.Request(  # noqa: S310 (only loopback URLs)
        url, data=data, method=method, headers=headers or {}
    )

    try:
        with _OPENER.open(request, timeout=10) as response:
            return Reply(response.status, dict(response.headers), response.read())
    except urllib.error.HTTPError as error:
        with error:
            return Reply(error.code, dict(error.headers), error.read())


def registration(**overrides: Any) -> dict[str, Any]:
    """Return a valid vanilla registration body with some fields replaced."""
    body: dict[str, Any] = {
        "os": "linux",
        "arch": "amd64",
        "hostname": "web-1",
        "version": "0.1.0",
        "ip": "10.0.0.7",
        "machine_id": "0123456789abcdef0123456789abcdef",
        "kind": "vanilla",
        "vanilla_context": {"job": "web-1", "runner_os": "linux"},
        "labels": {"team": "payments", "example.com/tier": "gold"},
    }
    body.update(overrides)

    return body


def kubernetes_registration(**context: Any) -> dict[str, Any]:
    """Return a valid kubernetes registration body with context fields replaced."""
    kubernetes_context = {"cluster": "prod.eu-1", "node": "node-a", **context}
    body = registration(kind="kubernetes", kubernetes_context=kubernetes_context)
    del body["vanilla_context"]

    return body


def github_registration(**context: Any) -> dict[str, Any]:
    """Return a valid github registration body with context fields replaced."""
    github_context = {
        "job": "build",
        "run_id": "9876543210",
        "workflow": "CI",
        "repository": "octo/app",
        "repository_id": "123456",
        **context,
    }
    body = registration(kind="github", github_context=github_context)
    del body["vanilla_context"]

    return body


def register(garnet: LocalGarnet, body: object = None) -> tuple[str, str]:
    """Register an agent and return its id and agent token."""
    reply = call(
        garnet.url + "api/v1/agents",
        "POST",
        {"X-Project-Token": PROJECT_TOKEN},
        registration() if body is None else body,
    )
    assert 201 == reply.status, reply.body

    return reply.json()["id"], reply.json()["agent_token"]


def heartbeat(garnet: LocalGarnet, agent_token: str) -> Reply:
    """Send one heartbeat with an agent token."""
    return call(
        garnet.url + "api/v1/agent_heartbeat", "POST", {"X-Agent-Token": agent_token}
    )


def put_event(garnet: LocalGarnet, agent_token: str, body: object) -> Reply:
    """Send one event with an agent token."""
    return call(
        garnet.url + "api/v1/events_v2", "PUT", {"X-Agent-Token": agent_token}, body
    )


def decode_part(part: str) -> dict[str, Any]:
    """Decode one base64url part of a JWT."""
    decoded: dict[str, Any] = json.loads(base64.urlsafe_b64decode(part + "=="))
    return decoded


def sha256_fingerprint(token: str) -> str:
    """Return the fingerprint the request log is expected to hold for a token."""
    return "sha256:" + hashlib.sha256(token.encode()).hexdigest()[:12]


@pytest.fixture
def garnet(tmp_path: Path) -> Iterator[LocalGarnet]:
    """A running local API with a write and a read-only project token."""
    with LocalGarnet(tmp_path / "state", TOKENS) as server:
        yield server


# Registration


def test_healthz_needs_no_credential(garnet: LocalGarnet) -> None:
    """GET /healthz returns 200 without any credential."""
    reply = call(garnet.url + "healthz")

    assert 200 == reply.status
    assert {"status": "ok"} == reply.json()


def test_registration_returns_id_and_jwt(garnet: LocalGarnet) -> None:
    """A valid registration gets 201 with a UUID and an HS256 JWT for it."""
    before = int(time.time())

    agent_id, agent_token = register(garnet)

    header, claims_part, signature = agent_token.split(".")
    claims = decode_part(claims_part)
    assert agent_id == str(uuid.UUID(agent_id))
    assert {"alg": "HS256", "typ": "JWT"} == decode_part(header)
    assert agent_id == claims["sub"]
    assert before <= claims["iat"] <= time.time()
    assert claims["exp"] > before + 50 * 365 * 24 * 3600
    assert 32 == len(claims["jti"])
    assert 43 == len(signature)


def test_registration_accepts_every_kind(garnet: LocalGarnet) -> None:
    """Bodies of each agent kind, with optional fields, IPv6 and extras, pass."""
    bodies = [
        registration(ip="fd00::7", unknown_field={"ignored": True}),
        registration(labels=None),
        kubernetes_registration(namespace="jibril"),
        kubernetes_registration(namespace=""),
        github_registration(
            actor="octocat", ref_protected=True, job_index=3, runner_os="Linux"
        ),
    ]

    for body in bodies:
        register(garnet, body)

    kinds = [agent["kind"] for agent in garnet.agents()]
    assert ["vanilla", "vanilla", "kubernetes", "kubernetes", "github"] == kinds


@pytest.mark.parametrize(
    ("headers", "status", "message"),
    [
        ({}, 401, "missing X-Project-Token header"),
        ({"X-Project-Token": "wrong-token"}, 401, "invalid project token"),
        ({"X-Project-Token": "latin-1-\xe9\xff"}, 401, "invalid project token"),
        (
            {"X-Project-Token": READONLY_TOKEN},
            403,
            "project token is read-only, but registration needs write permission",
        ),
        (
            {"X-Agent-Token": "a.b.c"},
            401,
            "missing X-Project-Token header",
        ),
    ],
)
def test_registration_rejects_project_token(
    garnet: LocalGarnet, headers: dict[str, str], status: int, message: str
) -> None:
    """A missing, unknown or read-only project token is rejected."""
    reply = call(garnet.url + "api/v1/agents", "POST", headers, registration())

    assert status == reply.status
    assert {"error": message} == reply.json()
    assert [] == garnet.agents()


def _without(body: dict[str, Any], *path: str) -> dict[str, Any]:
    """Return a copy of body with the field at path removed."""
    result = copy.deepcopy(body)
    target = result
    for key in path[:-1]:
        target = target[key]
    del target[path[-1]]

    return result


def _req(field: str) -> str:
    return f"invalid field '{field}': is required"


INVALID_REGISTRATIONS = [
    (_without(registration(), "os"), _req("os")),
    (_without(registration(), "arch"), _req("arch")),
    (_without(registration(), "hostname"), _req("hostname")),
    (_without(registration(), "version"), _req("version")),
    (_without(registration(), "ip"), _req("ip")),
    (_without(registration(), "machine_id"), _req("machine_id")),
    (_without(registration(), "kind"), _req("kind")),
    (registration(os=None), _req("os")),
    (registration(hostname=""), _req("hostname")),
    (
        registration(os=1),
        "invalid field 'os': expected a string, got a number",
    ),
    (
        registration(version=["0.1"]),
        "invalid field 'version': expected a string, got an array",
    ),
    (
        registration(machine_id=True),
        "invalid field 'machine_id': expected a string, got a boolean",
    ),
    (
        registration(ip="300.1.2.3"),
        "invalid field 'ip': '300.1.2.3' is not an IP address",
    ),
    (
        registration(ip="host.example"),
        "invalid field 'ip': 'host.example' is not an IP address",
    ),
    (
        registration(kind="docker"),
        "invalid field 'kind': 'docker' is not an agent kind, "
        "expected one of vanilla, kubernetes, github",
    ),
    (
        _without(registration(), "vanilla_context"),
        "invalid field 'vanilla_context': is required when kind is 'vanilla'",
    ),
    (
        registration(vanilla_context="web-1"),
        "invalid field 'vanilla_context': expected an object, got a string",
    ),
    (
        _without(registration(), "vanilla_context", "job"),
        _req("vanilla_context.job"),
    ),
    (
        registration(vanilla_context={"job": "web-1", "runner_os": 5}),
        "invalid field 'vanilla_context.runner_os': expected a string, got a number",
    ),
    (
        registration(github_context={"job": "build"}),
        "invalid field 'github_context': must not be set when kind is 'vanilla'",
    ),
    (
        _without(kubernetes_registration(), "kubernetes_context", "cluster"),
        _req("kubernetes_context.cluster"),
    ),
    (
        kubernetes_registration(cluster="Prod_EU"),
        "invalid field 'kubernetes_context.cluster': 'Prod_EU' must be a DNS-1123 "
        "subdomain: lower-case alphanumerics, '-' and '.', starting and ending "
        "with an alphanumeric",
    ),
    (
        kubernetes_registration(cluster="a" * 254),
        f"invalid field 'kubernetes_context.cluster': '{'a' * 80}...' must be at "
        "most 253 characters",
    ),
    (
        _without(kubernetes_registration(), "kubernetes_context", "node"),
        _req("kubernetes_context.node"),
    ),
    (
        kubernetes_registration(namespace="kube.system"),
        "invalid field 'kubernetes_context.namespace': 'kube.system' must be a "
        "DNS-1123 label: lower-case alphanumerics and '-', starting and ending "
        "with an alphanumeric",
    ),
    (
        kubernetes_registration(namespace="n" * 64),
        f"invalid field 'kubernetes_context.namespace': '{'n' * 64}' must be at "
        "most 63 characters",
    ),
    (
        kubernetes_registration(namespace=7),
        "invalid field 'kubernetes_context.namespace': expected a string, got a number",
    ),
    (
        _without(github_registration(), "github_context"),
        "invalid field 'github_context': is required when kind is 'github'",
    ),
    (
        _without(github_registration(), "github_context", "repository_id"),
        _req("github_context.repository_id"),
    ),
    (
        github_registration(run_id=9876543210),
        "invalid field 'github_context.run_id': expected a string, got a number",
    ),
    (
        github_registration(sha=1),
        "invalid field 'github_context.sha': expected a string, got a number",
    ),
    (
        github_registration(ref_protected="true"),
        "invalid field 'github_context.ref_protected': expected a boolean, "
        "got a string",
    ),
    (
        github_registration(job_index=1.5),
        "invalid field 'github_context.job_index': expected an integer, got a number",
    ),
    (
        github_registration(job_index=True),
        "invalid field 'github_context.job_index': expected an integer, got a boolean",
    ),
    (
        github_registration(job_index=2**63),
        f"invalid field 'github_context.job_index': {2**63} overflows a 64-bit int",
    ),
    (
        registration(labels=["team=payments"]),
        "invalid field 'labels': expected an object, got an array",
    ),
    (
        registration(labels={"replicas": 3}),
        "invalid field 'labels': value of key 'replicas' must be a string, "
        "got a number",
    ),
    (
        registration(labels={"bad key": "x"}),
        "invalid field 'labels': key 'bad key' is not a valid label key: the name "
        "must consist of alphanumerics, '-', '_' or '.', and start and end with "
        "an alphanumeric",
    ),
    (
        registration(labels={"a/b/c": "x"}),
        "invalid field 'labels': key 'a/b/c' is not a valid label key: it must "
        "contain at most one '/'",
    ),
    (
        registration(labels={"/tier": "x"}),
        "invalid field 'labels': key '/tier' is not a valid label key: the prefix "
        "before '/' must not be empty",
    ),
    (
        registration(labels={"Example.com/tier": "x"}),
        "invalid field 'labels': key 'Example.com/tier' is not a valid label key: "
        "the prefix must be a DNS-1123 subdomain: lower-case alphanumerics, '-' "
        "and '.', starting and ending with an alphanumeric",
    ),
    (
        registration(labels={"example.com/": "x"}),
        "invalid field 'labels': key 'example.com/' is not a valid label key: the "
        "name must not be empty",
    ),
    (
        registration(labels={"k" * 64: "x"}),
        f"invalid field 'labels': key '{'k' * 64}' is not a valid label key: the "
        "name must be at most 63 characters",
    ),
    (
        registration(labels={"a": "x" * (256 * 1024)}),
        "invalid field 'labels': keys and values total 262145 bytes, the maximum "
        "is 262144",
    ),
]


@pytest.mark.parametrize(("body", "message"), INVALID_REGISTRATIONS)
def test_registration_rejects_invalid_field(
    garnet: LocalGarnet, body: dict[str, Any], message: str
) -> None:
    """Each invalid registration gets 400 naming the field and the problem."""
    headers = {"X-Project-Token": PROJECT_TOKEN}

    reply = call(garnet.url + "api/v1/agents", "POST", headers, body)

    assert 400 == reply.status
    assert {"error": message} == reply.json()


def test_labels_at_size_limit_accepted(garnet: LocalGarnet) -> None:
    """Labels whose keys and values total exactly 256 KiB are accepted."""
    body = registration(labels={"a": "x" * (256 * 1024 - 1)})

    register(garnet, body)

    assert 1 == len(garnet.agents())


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (b"", "invalid request body: empty, expected JSON"),
        (
            b"{not json",
            "invalid request body: Expecting property name enclosed in double "
            "quotes: line 1 column 2 (char 1)",
        ),
        (b'{"os": NaN}', "invalid request body: NaN is not valid JSON"),
        (b"[]", "invalid request body: expected a JSON object, got an array"),
        (b"null", "invalid request body: expected a JSON object, got null"),
    ],
)
def test_registration_rejects_bad_json(
    garnet: LocalGarnet, raw: bytes, message: str
) -> None:
    """A body that is not a JSON object gets 400 saying why."""
    headers = {"X-Project-Token": PROJECT_TOKEN}

    reply = call(garnet.url + "api/v1/agents", "POST", headers, raw=raw)

    assert 400 == reply.status
    assert {"error": message} == reply.json()


# Heartbeats, events and profiles


def test_heartbeat_counts_without_saving(garnet: LocalGarnet) -> None:
    """Heartbeats get 200, are counted, and leave agents.json untouched."""
    agent_id, agent_token = register(garnet)
    agents_file = garnet.state_dir / "agents.json"
    saved = agents_file.stat()

    replies = [heartbeat(garnet, agent_token) for _ in range(3)]

    assert [200, 200, 200] == [reply.status for reply in replies]
    assert {"status": "ok"} == replies[0].json()
    assert agent_id == garnet.agents()[0]["id"]
    assert 3 == garnet.agents()[0]["heartbeats"]
    assert saved.st_ino == agents_file.stat().st_ino
    assert saved.st_mtime_ns == agents_file.stat().st_mtime_ns


def test_heartbeat_rejects_bad_agent_token(garnet: LocalGarnet) -> None:
    """A missing, malformed or tampered agent token gets 401."""
    _, agent_token = register(garnet)
    header, claims, signature = agent_token.split(".")
    forged_claims = base64.urlsafe_b64encode(b'{"sub":"x"}').rstrip(b"=").decode()
    cases = [
        ({}, "missing X-Agent-Token header"),
        ({"X-Project-Token": PROJECT_TOKEN}, "missing X-Agent-Token header"),
        ({"X-Agent-Token": "not-a-jwt"}, "invalid agent token"),
        ({"X-Agent-Token": "latin-1-\xe9.\xff.x"}, "invalid agent token"),
        (
            {"X-Agent-Token": f"{header}.{forged_claims}.{signature}"},
            "invalid agent token",
        ),
        (
            {"X-Agent-Token": f"{header}.{claims}.{signature[:-2]}AA"},
            "invalid agent token",
        ),
    ]

    for headers, message in cases:
        reply = call(garnet.url + "api/v1/agent_heartbeat", "POST", headers)
        assert 401 == reply.status, headers
        assert {"error": message} == reply.json()


def test_heartbeat_after_revoke_is_401(garnet: LocalGarnet) -> None:
    """A revoked agent token gets 401 and the agent is listed as revoked."""
    agent_id, agent_token = register(garnet)

    garnet.revoke(agent_id)
    reply = heartbeat(garnet, agent_token)

    assert 401 == reply.status
    assert {"error": "agent token revoked"} == reply.json()
    assert garnet.agents()[0]["revoked"] is True


def test_heartbeat_after_delete_is_404(garnet: LocalGarnet) -> None:
    """A deleted agent's token gets 404, and the agent stays as a tombstone."""
    agent_id, agent_token = register(garnet)

    garnet.delete(agent_id)
    reply = heartbeat(garnet, agent_token)

    assert 404 == reply.status
    expected_error = f"agent {agent_id} not found because it was deleted"
    assert {"error": expected_error} == reply.json()
    assert garnet.agents()[0]["deleted"] is True


def test_control_unknown_agent_is_404(garnet: LocalGarnet) -> None:
    """Revoking or deleting an unknown agent id gets 404."""
    for action in (garnet.revoke, garnet.delete):
        with pytest.raises(urllib.error.HTTPError) as caught:
            action("no-such-agent")

        assert 404 == caught.value.code
        expected_body = {"error": "agent no-such-agent not found"}
        assert expected_body == json.loads(caught.value.read())
        caught.value.close()


def test_event_created_then_updated(garnet: LocalGarnet) -> None:
    """An event id gets 201 the first time and 202 when sent again."""
    _, agent_token = register(garnet)
    event_id = str(uuid.uuid4())
    event = {"id": event_id, "kind": "detections", "data": {"rule": "x"}}

    first = put_event(garnet, agent_token, event)
    again = put_event(garnet, agent_token, {**event, "id": event_id.upper()})

    assert 201 == first.status
    assert {"id": event_id} == first.json()
    assert 202 == again.status
    assert {"id": event_id} == again.json()


@pytest.mark.parametrize(
    ("event", "message"),
    [
        (
            {"id": "nope", "kind": "flows", "data": {}},
            "invalid field 'id': 'nope' is not a UUID",
        ),
        ({"kind": "flows", "data": {}}, "invalid field 'id': is required"),
        (
            {"id": str(uuid.uuid4()), "kind": "alerts", "data": {}},
            "invalid field 'kind': 'alerts' is not an event kind, expected one of "
            "flows, detections, infos, netpolicy",
        ),
        (
            {"id": str(uuid.uuid4()), "kind": "infos"},
            "invalid field 'data': is required",
        ),
        (
            {"id": str(uuid.uuid4()), "kind": "netpolicy", "data": [1]},
            "invalid field 'data': expected an object, got an array",
        ),
    ],
)
def test_event_rejects_invalid_field(
    garnet: LocalGarnet, event: dict[str, Any], message: str
) -> None:
    """An invalid event gets 400 naming the field."""
    _, agent_token = register(garnet)

    reply = put_event(garnet, agent_token, event)

    assert 400 == reply.status
    assert {"error": message} == reply.json()


def test_event_rejects_bad_agent_token(garnet: LocalGarnet) -> None:
    """An event with an invalid agent token gets 401."""
    event = {"id": str(uuid.uuid4()), "kind": "flows", "data": {}}

    reply = put_event(garnet, "a.b.c", event)

    assert 401 == reply.status
    assert {"error": "invalid agent token"} == reply.json()


def test_profile_needs_agent_token(garnet: LocalGarnet) -> None:
    """A profile gets 201 with an agent token and 401 without one."""
    _, agent_token = register(garnet)
    url = garnet.url + "api/v1/profiles"

    accepted = call(url, "POST", {"X-Agent-Token": agent_token}, {"cpu": 1})
    rejected = call(url, "POST", {}, {"cpu": 1})

    assert 201 == accepted.status
    assert 401 == rejected.status
    assert {"error": "missing X-Agent-Token header"} == rejected.json()


def test_unknown_route_gets_json_error(garnet: LocalGarnet) -> None:
    """Unknown paths get 404 and wrong methods 405, both as JSON errors."""
    missing = call(garnet.url + "api/v1/nothing")
    wrong_method = call(garnet.url + "api/v1/agents")

    assert 404 == missing.status
    assert {"error": "not found: GET /api/v1/nothing"} == missing.json()
    assert 405 == wrong_method.status
    assert {"error": "method not allowed: GET /api/v1/agents"} == wrong_method.json()
    assert "POST" == wrong_method.headers["Allow"]


# Persistence


def test_restart_keeps_agents_and_tokens(tmp_path: Path) -> None:
    """After a restart the same agent token works and revocations persist."""
    state_dir = tmp_path / "state"
    with LocalGarnet(state_dir, TOKENS) as first:
        agent_id, agent_token = register(first)
        revoked_id, revoked_token = register(first)
        first.revoke(revoked_id)

    with LocalGarnet(state_dir, TOKENS) as second:
        alive = heartbeat(second, agent_token)
        revoked = heartbeat(second, revoked_token)
        listed = {agent["id"]: agent for agent in second.agents()}

    assert 200 == alive.status
    assert 401 == revoked.status
    assert listed[agent_id]["revoked"] is False
    assert listed[revoked_id]["revoked"] is True
    assert 1 == listed[agent_id]["heartbeats"]


def test_state_files_private_and_tokenless(garnet: LocalGarnet) -> None:
    """agents.json and the token secret are mode 0600 and hold no agent token."""
    _, agent_token = register(garnet)
    agents_file = garnet.state_dir / "agents.json"
    secret_file = garnet.state_dir / "token-secret"

    assert 0o600 == stat.S_IMODE(agents_file.stat().st_mode)
    assert 0o600 == stat.S_IMODE(secret_file.stat().st_mode)
    assert 32 == len(secret_file.read_bytes())
    assert agent_token not in agents_file.read_text()
    assert PROJECT_TOKEN not in agents_file.read_text()
    assert [] == [p.name for p in garnet.state_dir.iterdir() if p.name.startswith(".")]


def test_corrupt_agents_file_rejected(tmp_path: Path) -> None:
    """A malformed agents.json stops the server with the path and the fix."""
    (tmp_path / "agents.json").write_text("{")

    with pytest.raises(StateFolderError) as caught:
        make_app(tmp_path, TOKENS)

    expected = (
        f"invalid agents file {tmp_path / 'agents.json'}: Expecting property name "
        "enclosed in double quotes: line 1 column 2 (char 1). Fix it, or delete "
        "it to forget every registered agent."
    )
    assert expected == str(caught.value)


def test_short_token_secret_rejected(tmp_path: Path) -> None:
    """A token secret of the wrong size stops the server with the path."""
    (tmp_path / "token-secret").write_bytes(b"short")

    with pytest.raises(StateFolderError) as caught:
        make_app(tmp_path, TOKENS)

    expected = (
        f"invalid token secret {tmp_path / 'token-secret'}: expected 32 bytes, "
        "found 5. Delete it to create a new one, which invalidates every agent "
        "token issued so far."
    )
    assert expected == str(caught.value)


# Faults


def test_fault_responds_then_expires(garnet: LocalGarnet) -> None:
    """A fault with times=1 sends its status, headers and body once."""
    garnet.add_fault(
        path="/api/v1/agents",
        method="post",
        status=503,
        retry_after=5,
        body="<html>busy</html>",
        content_type="text/html",
        times=1,
    )
    headers = {"X-Project-Token": PROJECT_TOKEN}
    url = garnet.url + "api/v1/agents"

    faulted = call(url, "POST", headers, registration())
    normal = call(url, "POST", headers, registration())

    assert 503 == faulted.status
    assert "5" == faulted.headers["Retry-After"]
    assert "text/html" == faulted.headers["Content-Type"]
    assert b"<html>busy</html>" == faulted.body
    assert 201 == normal.status
    assert 1 == len(garnet.agents())


def test_fault_default_body_is_json(garnet: LocalGarnet) -> None:
    """A fault without a body sends a JSON error and no Retry-After."""
    garnet.add_fault(path="/healthz", status=500, times=1)

    reply = call(garnet.url + "healthz")

    assert 500 == reply.status
    assert {"error": "fault injected by the local Garnet API"} == reply.json()
    assert "Retry-After" not in reply.headers


def test_fault_times_counts_down(garnet: LocalGarnet) -> None:
    """A fault with times=2 applies to exactly two requests."""
    garnet.add_fault(path="/healthz", status=429, times=2)

    statuses = [call(garnet.url + "healthz").status for _ in range(3)]

    assert [429, 429, 200] == statuses


def test_fault_without_times_until_cleared(garnet: LocalGarnet) -> None:
    """A fault with times=None applies until the faults are cleared."""
    garnet.add_fault(path="/healthz", status=502, times=None)

    during = [call(garnet.url + "healthz").status for _ in range(3)]
    garnet.clear_faults()
    after = call(garnet.url + "healthz").status

    assert [502, 502, 502] == during
    assert 200 == after


def test_fault_method_must_match(garnet: LocalGarnet) -> None:
    """A fault for one method leaves other methods alone."""
    garnet.add_fault(path="/healthz", method="POST", status=500)

    reply = call(garnet.url + "healthz")

    assert 200 == reply.status


def test_fault_delay_then_normal_response(garnet: LocalGarnet) -> None:
    """A fault with only a delay waits, then the request is handled normally."""
    garnet.add_fault(path="/healthz", delay=0.3, times=1)

    started = time.monotonic()
    delayed = call(garnet.url + "healthz")
    elapsed = time.monotonic() - started

    assert 200 == delayed.status
    assert elapsed >= 0.3


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"status": 500}, "invalid field 'path': expected a path starting with /"),
        (
            {"path": "/healthz", "status": "500"},
            "invalid field 'status': expected an integer",
        ),
        (
            {"path": "/healthz", "status": 99},
            "invalid field 'status': expected 200 to 599",
        ),
        (
            {"path": "/healthz", "delay": -1},
            "invalid field 'delay': expected 0 or more seconds",
        ),
        (
            {"path": "/healthz", "times": 0},
            "invalid field 'times': expected an integer of 1 or more",
        ),
        (
            {"path": "/healthz", "retry_after": "5\r\nX-Bad: 1"},
            "invalid field 'retry_after': expected seconds or an HTTP date as "
            "printable text",
        ),
    ],
)
def test_fault_rejects_invalid_field(
    garnet: LocalGarnet, fields: dict[str, Any], message: str
) -> None:
    """An invalid fault gets 400 naming the field."""
    reply = call(garnet.url + "_local/faults", "POST", {}, fields)

    assert 400 == reply.status
    assert {"error": message} == reply.json()


# Request log and logging


def test_request_log_contains_no_token(garnet: LocalGarnet) -> None:
    """The request log keeps header names and fingerprints, never token values."""
    _, agent_token = register(garnet)
    heartbeat(garnet, agent_token)

    entries = garnet.requests()

    assert [
        ("POST", "/api/v1/agents", 201),
        ("POST", "/api/v1/agent_heartbeat", 200),
    ] == [(e["method"], e["path"], e["status"]) for e in entries]
    assert "X-Project-Token" in entries[0]["headers"]
    project_fingerprint = sha256_fingerprint(PROJECT_TOKEN)
    assert {"X-Project-Token": project_fingerprint} == entries[0]["credentials"]
    assert registration() == entries[0]["body"]
    agent_fingerprint = sha256_fingerprint(agent_token)
    assert {"X-Agent-Token": agent_fingerprint} == entries[1]["credentials"]
    assert entries[1]["body"] is None
    assert PROJECT_TOKEN not in json.dumps(entries)
    assert agent_token not in json.dumps(entries)


def test_oversized_body_is_413_and_logged(garnet: LocalGarnet) -> None:
    """A body over 1 MiB gets a JSON 413 and appears in the request log."""
    headers = {"X-Project-Token": PROJECT_TOKEN}

    reply = call(garnet.url + "api/v1/agents", "POST", headers, raw=b"x" * 2**21)

    assert 413 == reply.status
    expected = {"error": "request entity too large: POST /api/v1/agents"}
    assert expected == reply.json()
    assert [(413, None)] == [(e["status"], e["body"]) for e in garnet.requests()]


def test_request_log_clears(garnet: LocalGarnet) -> None:
    """Clearing the request log empties it, and control calls are not logged."""
    call(garnet.url + "healthz")
    garnet.agents()

    before_clear = garnet.requests()
    garnet.clear_requests()
    after_clear = garnet.requests()

    assert ["/healthz"] == [entry["path"] for entry in before_clear]
    assert [] == after_clear


def test_log_line_per_request_without_token(
    garnet: LocalGarnet, caplog: pytest.LogCaptureFixture
) -> None:
    """Each request logs method, path, status and any error, and no token."""
    caplog.set_level(logging.INFO, logger="garnet_local")

    _, agent_token = register(garnet)
    heartbeat(garnet, agent_token)
    heartbeat(garnet, agent_token + "x")

    messages = [r.getMessage() for r in caplog.records if r.name == "garnet_local"]
    assert "request method=POST path=/api/v1/agents status=201" in messages
    assert "request method=POST path=/api/v1/agent_heartbeat status=200" in messages
    assert (
        "request method=POST path=/api/v1/agent_heartbeat status=401 "
        "error='invalid agent token'"
    ) in messages
    assert PROJECT_TOKEN not in caplog.text
    assert agent_token not in caplog.text


# Prefix mode


def test_prefix_serves_api_under_it(tmp_path: Path) -> None:
    """With a prefix the API is served under it, and the bare path gets 404."""
    with LocalGarnet(tmp_path, TOKENS, prefix="/garnet") as garnet:
        registered = call(
            garnet.url + "api/v1/agents",
            "POST",
            {"X-Project-Token": PROJECT_TOKEN},
            registration(),
        )
        bare = call(garnet.url.removesuffix("garnet/") + "api/v1/agents", "POST")
        garnet.add_fault(path="/healthz", status=503, times=1)
        faulted = call(garnet.url + "healthz")
        paths = [entry["path"] for entry in garnet.requests()]

    assert garnet.url.endswith("/garnet/")
    assert 201 == registered.status
    assert 404 == bare.status
    assert 503 == faulted.status
    assert ["/garnet/api/v1/agents", "/api/v1/agents", "/garnet/healthz"] == paths


# Command line


def start_cli(
    tmp_path: Path, *options: str, env: dict[str, str] | None = None
) -> subprocess.Popen[str]:
    """Start `python -m garnet_local` on a free port with a state folder."""
    command = [
        sys.executable,
        "-m",
        "garnet_local",
        "--port",
        "0",
        "--state-dir",
        str(tmp_path / "state"),
        *options,
    ]

    return subprocess.Popen(
        command,
        cwd=ROOT,
        env={**os.environ, **(env or {})},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def read_listening_url(process: subprocess.Popen[str]) -> str:
    """Wait up to 10 s for the listening line and return its URL."""
    assert process.stdout is not None
    ready, _, _ = select.select([process.stdout], [], [], 10)
    assert ready, "no listening line within 10 s"

    line = process.stdout.readline()
    match = LISTENING.fullmatch(line.rstrip("\n"))
    assert match is not None, line

    return match.group(1)


def stop_cli(process: subprocess.Popen[str], signal_number: int) -> tuple[int, str]:
    """Send a signal and return the exit code and standard error."""
    process.send_signal(signal_number)
    _, stderr = process.communicate(timeout=10)

    return process.returncode, stderr


def test_cli_prints_url_and_stops_on_sigterm(tmp_path: Path) -> None:
    """The CLI prints its URL, writes the URL file, and exits 0 on SIGTERM."""
    url_file = tmp_path / "garnet.url"
    process = start_cli(tmp_path, "--url-file", str(url_file))

    url = read_listening_url(process)
    url_in_file = url_file.read_text()
    registered = call(
        url + "api/v1/agents",
        "POST",
        {"X-Project-Token": "local-project-token"},
        registration(),
    )
    returncode, stderr = stop_cli(process, signal.SIGTERM)

    assert url == url_in_file
    assert 201 == registered.status
    assert 0 == returncode
    assert "request method=POST path=/api/v1/agents status=201" in stderr
    assert "local-project-token" not in stderr
    assert not url_file.exists()


def test_cli_token_file_and_sigint(tmp_path: Path) -> None:
    """Tokens come from the file, readonly ones get 403, and SIGINT exits 0."""
    token_file = tmp_path / "tokens"
    token_file.write_text("# tokens\nfile-token\nro-token readonly\n\n")
    process = start_cli(
        tmp_path,
        "--project-token-file",
        str(token_file),
        env={"GARNET_LOCAL_PROJECT_TOKEN": "env-token"},
    )

    url = read_listening_url(process)
    statuses = [
        call(
            url + "api/v1/agents", "POST", {"X-Project-Token": token}, registration()
        ).status
        for token in ("file-token", "ro-token", "env-token", "local-project-token")
    ]
    returncode, _ = stop_cli(process, signal.SIGINT)

    assert [201, 403, 401, 401] == statuses
    assert 0 == returncode


@pytest.mark.parametrize(
    ("options", "token_text", "message"),
    [
        (
            ["--host", "0.0.0.0"],  # noqa: S104 (the test expects a rejection)
            None,
            "garnet_local: invalid host '0.0.0.0': the local API listens only on "
            "a loopback address (127.0.0.0/8, ::1 or localhost) because its "
            "control endpoints take no credential",
        ),
        (
            [],
            "good-token\nsecret-token admin\n",
            "garnet_local: {tokens}:2: invalid permission 'admin', expected "
            "'write' or 'readonly'",
        ),
        (
            [],
            "# only a comment\n",
            "garnet_local: no project token in {tokens}: add one per line",
        ),
    ],
)
def test_cli_rejects_bad_options(
    tmp_path: Path, options: list[str], token_text: str | None, message: str
) -> None:
    """A non-loopback host or a bad token file exits 2 with one message."""
    tokens = tmp_path / "tokens"
    if token_text is not None:
        tokens.write_text(token_text)
        options = [*options, "--project-token-file", str(tokens)]

    process = start_cli(tmp_path, *options)
    _, stderr = process.communicate(timeout=10)

    assert 2 == process.returncode
    assert message.format(tokens=tokens) == stderr.splitlines()[-1]
    assert "secret-token" not in stderr
