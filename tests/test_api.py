"""Tests of the Garnet API client over real HTTP against the local API."""

import asyncio
import json
import socket
import uuid
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest
from pydantic import SecretStr

from garnet_local.testing import LocalGarnet
from jibrild.api import (
    MAX_BODY_BYTES,
    AgentTokenRejectedError,
    GarnetClient,
    TransientApiError,
    api_endpoint,
    parse_retry_after,
)
from jibrild.errors import (
    ProjectTokenRejectedError,
    RegistrationRejectedError,
    SettingsError,
)
from tests.raw_server import RawServer
from tests.samples import REGISTRATION_BODY

PROJECT_TOKEN = SecretStr("test-project-token")
T = TypeVar("T")


@pytest.fixture
def api(tmp_path: Path) -> Iterator[LocalGarnet]:
    """The local Garnet API with one write and one read-only project token."""
    tokens = {"test-project-token": "write", "read-only-token": "readonly"}
    with LocalGarnet(tmp_path / "api", tokens) as server:
        yield server


def _call(
    url: str, action: Callable[[GarnetClient], Awaitable[T]], timeout: float = 5.0
) -> T:
    async def run() -> T:
        async with GarnetClient(url, timeout, "jibrild-test") as client:
            return await action(client)

    return asyncio.run(run())


def _register(
    url: str,
    body: dict[str, object] = REGISTRATION_BODY,
    token: SecretStr = PROJECT_TOKEN,
) -> Any:
    return _call(url, lambda client: client.register(token, body))


def test_endpoint_keeps_path_prefix() -> None:
    """A base URL with a path prefix keeps it, with or without a slash."""
    assert "https://x.example/garnet/api/v1/agents" == api_endpoint(
        "https://x.example/garnet/", "/api/v1/agents"
    )
    assert "https://x.example/garnet/api/v1/agents" == api_endpoint(
        "https://x.example/garnet", "api/v1/agents"
    )


def test_register_returns_id_and_token(api: LocalGarnet) -> None:
    """A registration returns 201 with the agent id and its token."""
    registration = _register(api.url)

    assert [registration.agent_id] == [agent["id"] for agent in api.agents()]
    assert 3 == len(registration.agent_token.get_secret_value().split("."))


def test_register_sends_contract_request(api: LocalGarnet) -> None:
    """The request carries X-Project-Token and the body as given."""
    _register(api.url)

    [request] = api.requests()

    assert "POST" == request["method"]
    assert "/api/v1/agents" == request["path"]
    assert ["X-Project-Token"] == list(request["credentials"])
    assert "Content-Type" in request["headers"]
    assert REGISTRATION_BODY == request["body"]


def test_register_under_path_prefix(tmp_path: Path) -> None:
    """A self-hosted API under a path prefix is reached there."""
    with LocalGarnet(tmp_path / "api", prefix="/garnet/") as server:
        registration = _register(server.url)

    assert registration.agent_id


def test_register_400_names_field(api: LocalGarnet) -> None:
    """A 400 is not retryable and its message carries the server's reason."""
    body = {**REGISTRATION_BODY, "ip": "not-an-ip"}

    with pytest.raises(RegistrationRejectedError) as raised:
        _register(api.url, body)

    assert str(raised.value).startswith("registration rejected: HTTP 400: ")
    assert "'ip'" in str(raised.value)


@pytest.mark.parametrize(
    ("token", "status"), [("wrong-token", 401), ("read-only-token", 403)]
)
def test_register_rejected_token(api: LocalGarnet, token: str, status: int) -> None:
    """401 and 403 reject the project token without echoing it."""
    with pytest.raises(ProjectTokenRejectedError) as raised:
        _register(api.url, token=SecretStr(token))

    assert str(raised.value).startswith(f"project token rejected: HTTP {status}")
    assert token not in str(raised.value)


def test_register_404_names_url(tmp_path: Path) -> None:
    """A 404 at the registration path suggests checking the API URL."""
    with LocalGarnet(tmp_path / "api", prefix="/garnet/") as server:
        wrong_base = server.url.removesuffix("garnet/")
        with pytest.raises(TransientApiError) as raised:
            _register(wrong_base)

    assert (
        f"HTTP 404 from {wrong_base}api/v1/agents; check that the API URL is "
        "the Garnet API's base URL"
    ) == str(raised.value)


@pytest.mark.fault(
    case=3,
    behaviour="429 is transient and keeps Retry-After in seconds.",
)
def test_429_carries_retry_after(api: LocalGarnet) -> None:
    """A 429 is transient and keeps the server's Retry-After seconds."""
    api.add_fault(path="/api/v1/agents", status=429, retry_after="7", times=1)

    with pytest.raises(TransientApiError) as raised:
        _register(api.url)

    assert 7.0 == raised.value.retry_after
    assert str(raised.value).startswith("HTTP 429")


@pytest.mark.fault(
    case=3,
    behaviour="500, 502 and 503 are transient and retried.",
)
@pytest.mark.parametrize("status", [500, 502, 503])
def test_5xx_is_transient(api: LocalGarnet, status: int) -> None:
    """Server errors are transient."""
    api.add_fault(path="/api/v1/agents", status=status, times=1)

    with pytest.raises(TransientApiError) as raised:
        _register(api.url)

    assert str(raised.value).startswith(f"HTTP {status}")


@pytest.mark.fault(
    case=3,
    behaviour="An HTML page is summarised by status, size and type.",
)
def test_html_error_page_summarised(api: LocalGarnet) -> None:
    """A proxy's HTML page is reported by size and type, not printed."""
    page = "<html><body>Bad Gateway</body></html>"
    api.add_fault(
        path="/api/v1/agents", status=502, body=page, content_type="text/html", times=1
    )

    with pytest.raises(TransientApiError) as raised:
        _register(api.url)

    assert f"HTTP 502 (<{len(page)} bytes of text/html>)" == str(raised.value)


@pytest.mark.fault(
    case=3,
    behaviour="A 201 without agent_token is transient, never trusted.",
)
def test_201_without_agent_token_is_transient(api: LocalGarnet) -> None:
    """A 201 whose body lacks agent_token is retried, not trusted."""
    api.add_fault(path="/api/v1/agents", status=201, body='{"id": "x"}', times=1)

    with pytest.raises(TransientApiError) as raised:
        _register(api.url)

    assert str(raised.value).startswith("HTTP 201 response has no agent_token")


def test_agent_token_with_newline_is_transient(api: LocalGarnet) -> None:
    """An agent_token that could not go in a header or a file is refused."""
    body = '{"id": "x", "agent_token": "ab\\ncd"}'
    api.add_fault(path="/api/v1/agents", status=201, body=body, times=1)

    with pytest.raises(TransientApiError) as raised:
        _register(api.url)

    assert "HTTP 201 response has an agent_token that is not visible ASCII text" == str(
        raised.value
    )


def test_heartbeat_sends_no_body(api: LocalGarnet) -> None:
    """A heartbeat has no body and so no Content-Type."""
    registration = _register(api.url)
    api.clear_requests()

    _call(api.url, lambda client: client.heartbeat(registration.agent_token))

    [request] = api.requests()
    assert request["body"] is None
    assert "Content-Type" not in request["headers"]


@pytest.mark.fault(
    case=3,
    behaviour="A 201 with truncated JSON is transient.",
)
def test_truncated_json_is_transient(api: LocalGarnet) -> None:
    """A 201 with a cut-off JSON body is retried."""
    api.add_fault(
        path="/api/v1/agents", status=201, body='{"id": "x", "agent_', times=1
    )

    with pytest.raises(TransientApiError):
        _register(api.url)


@pytest.mark.fault(
    case=3,
    behaviour="A body over the 64 KiB cap is refused without being read.",
)
def test_oversized_body_not_read(api: LocalGarnet) -> None:
    """A body over the cap is refused instead of read into memory."""
    api.add_fault(
        path="/api/v1/agents", status=503, body="x" * (MAX_BODY_BYTES + 1), times=1
    )

    with pytest.raises(TransientApiError) as raised:
        _register(api.url)

    assert "byte limit" in str(raised.value)


@pytest.mark.fault(
    case=2,
    behaviour="A delayed response times out after the request timeout as a transient "
    "error.",
)
def test_slow_answer_times_out(api: LocalGarnet) -> None:
    """An API that does not respond within the timeout is a transient error."""
    api.add_fault(path="/api/v1/agents", delay=3.0, times=1)

    with pytest.raises(TransientApiError) as raised:
        _call(
            api.url,
            lambda client: client.register(PROJECT_TOKEN, REGISTRATION_BODY),
            0.3,
        )

    assert str(raised.value).endswith("timed out after 0.3s")


def test_connection_refused_is_transient() -> None:
    """Nothing listening is a transient error naming host and port."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]

    with pytest.raises(TransientApiError) as raised:
        _register(f"http://127.0.0.1:{port}/")

    assert str(raised.value).startswith(f"cannot connect to 127.0.0.1:{port}: ")


def test_heartbeat_ok(api: LocalGarnet) -> None:
    """A heartbeat with a fresh agent token is counted by the API."""
    registration = _register(api.url)

    _call(api.url, lambda client: client.heartbeat(registration.agent_token))

    assert 1 == api.agents()[0]["heartbeats"]


@pytest.mark.parametrize(("action", "status"), [("revoke", 401), ("delete", 404)])
def test_heartbeat_rejected(api: LocalGarnet, action: str, status: int) -> None:
    """Revoked agents get 401 and deleted ones 404."""
    registration = _register(api.url)
    getattr(api, action)(registration.agent_id)

    with pytest.raises(AgentTokenRejectedError) as raised:
        _call(api.url, lambda client: client.heartbeat(registration.agent_token))

    assert status == raised.value.status


def test_event_created_then_updated(api: LocalGarnet) -> None:
    """The same event id twice is created once, then updated."""
    registration = _register(api.url)
    event = {"id": str(uuid.uuid4()), "kind": "infos", "data": {"a": 1}}

    first = _call(api.url, lambda c: c.send_event(registration.agent_token, event))
    second = _call(api.url, lambda c: c.send_event(registration.agent_token, event))

    assert first is True
    assert second is False


def test_retry_after_seconds() -> None:
    """A Retry-After in delay-seconds is taken as is."""
    assert 120.0 == parse_retry_after("120")


@pytest.mark.fault(
    case=3,
    behaviour="Retry-After as an HTTP date is parsed into seconds from now.",
)
def test_retry_after_http_date() -> None:
    """An HTTP-date Retry-After gives the seconds until that date."""
    now = 1_800_000_000.0  # 2027-01-15T08:00:00Z

    delay = parse_retry_after("Fri, 15 Jan 2027 08:00:30 GMT", now)

    assert 30.0 == delay


def test_retry_after_invalid_is_none() -> None:
    """A Retry-After that is neither form is ignored."""
    assert parse_retry_after("soon") is None
    assert parse_retry_after(None) is None


def _clear_proxy_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.lower(), raising=False)


def test_http_proxy_carries_calls(
    api: LocalGarnet, monkeypatch: pytest.MonkeyPatch
) -> None:
    """HTTP_PROXY sends calls for another host to the proxy, here the
    local API, which serves the absolute URL's path."""
    _clear_proxy_variables(monkeypatch)
    monkeypatch.setenv("HTTP_PROXY", api.url)

    registration = _register("http://api.garnet.invalid/")

    assert registration.agent_token.get_secret_value()
    assert ["/api/v1/agents"] == [entry["path"] for entry in api.requests()]


def test_no_proxy_bypasses_proxy(
    api: LocalGarnet, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A host listed in NO_PROXY is called directly, not through the proxy."""
    _clear_proxy_variables(monkeypatch)
    monkeypatch.setenv("HTTP_PROXY", "http://127.0.0.1:9/")
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")

    registration = _register(api.url)

    assert registration.agent_token.get_secret_value()


def _raw_response(status_line: bytes, headers: bytes, body: bytes) -> bytes:
    length = b"Content-Length: %d\r\n" % len(body)
    return status_line + b"\r\n" + headers + length + b"\r\n" + body


@pytest.mark.fault(
    case=3,
    behaviour="A body nested too deeply to parse (any status) is a transient "
    "error, at registration and at heartbeat, never a crash.",
)
@pytest.mark.parametrize("status", [b"HTTP/1.1 502 Bad Gateway", b"HTTP/1.1 201 X"])
def test_deeply_nested_body_is_transient(status: bytes) -> None:
    """A JSON body nested past the parser's stack is a transient error."""
    response = _raw_response(
        status, b"Content-Type: application/json\r\n", b"[" * 20000
    )

    with RawServer(response) as server:
        with pytest.raises(TransientApiError):
            _register(server.url)
        with pytest.raises(TransientApiError):
            _call(server.url, lambda c: c.heartbeat(SecretStr("aaa.bbb.ccc")))


@pytest.mark.parametrize("value", ["\u00b2", "\u2460", "1\u2075", "-5", " "])
def test_retry_after_odd_digits_ignored(value: str) -> None:
    """Digits outside ASCII, such as a superscript two, are no delay."""
    assert parse_retry_after(value) is None


@pytest.mark.parametrize("agent_id", ["a\nb", "x" * 129, "caf\u00e9"])
def test_unusable_agent_id_is_unknown(agent_id: str) -> None:
    """An agent id that cannot go into a log line is kept out of it."""
    body = json.dumps({"id": agent_id, "agent_token": "aaa.bbb.ccc"}).encode()
    response = _raw_response(
        b"HTTP/1.1 201 Created", b"Content-Type: application/json\r\n", body
    )

    with RawServer(response) as server:
        registration = _register(server.url)

    assert "unknown" == registration.agent_id


@pytest.mark.fault(
    case=5,
    behaviour="A proxy variable that is not a usable URL is an error at start "
    "naming the variable, with its password hidden.",
)
@pytest.mark.parametrize(
    "value",
    ["bob:s3cretpw@127.0.0.1:3128", "http://bob:s3cretpw@127.0.0.1:99999"],
)
def test_malformed_proxy_variable_named(
    monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    """The error names HTTPS_PROXY and never shows its password."""
    monkeypatch.setenv("HTTPS_PROXY", value)

    with pytest.raises(SettingsError) as caught:
        _call("https://127.0.0.1:9/", lambda c: asyncio.sleep(0))

    assert str(caught.value).startswith("HTTPS_PROXY=")
    assert "s3cretpw" not in str(caught.value)


@pytest.mark.fault(
    case=7,
    behaviour="A plain http:// API URL on loopback is not sent in clear "
    "through an HTTP proxy on another host without the opt-in.",
)
def test_cleartext_to_remote_proxy_rejected(monkeypatch: pytest.MonkeyPatch) -> None:
    """HTTP_PROXY on another host would carry the tokens in clear."""
    # Nothing is sent: the check runs before the first request.
    monkeypatch.setenv("HTTP_PROXY", "http://192.0.2.1:3128")
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)

    with pytest.raises(SettingsError) as caught:
        _call("http://127.0.0.1:9/", lambda c: asyncio.sleep(0))

    assert "HTTP proxy at 192.0.2.1" in str(caught.value)
    assert "GARNET_API_ALLOW_INSECURE_HTTP" in str(caught.value)
