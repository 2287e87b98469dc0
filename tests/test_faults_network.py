"""Faults of the API and the network, with the daemon as a subprocess: a
dead or unresolvable API, failing TLS, hung requests under a watchdog,
odd responses, proxies and a private CA."""

import asyncio
import email.utils
import re
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from pydantic import SecretStr

from garnet_local.testing import LocalGarnet
from jibrild.api import MAX_BODY_BYTES, GarnetClient, TransientApiError
from tests.agent import Agent, registrations
from tests.proxy import LoopbackProxy
from tests.raw_server import RawServer
from tests.samples import REGISTRATION_BODY
from tests.tls import PrivateCa, make_private_ca

PROJECT_TOKEN = SecretStr("test-project-token")


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


def _register(url: str, timeout: float = 5.0) -> None:
    async def run() -> None:
        async with GarnetClient(url, timeout, "jibrild-test") as client:
            await client.register(PROJECT_TOKEN, REGISTRATION_BODY)

    asyncio.run(run())


@pytest.fixture
def private_ca(tmp_path: Path) -> PrivateCa:
    """A fresh CA and a certificate for 127.0.0.1 and localhost."""
    return make_private_ca(tmp_path / "ca")


@pytest.fixture
def tls_api(tmp_path: Path, private_ca: PrivateCa) -> Iterator[LocalGarnet]:
    """The local Garnet API over TLS with the private CA's certificate."""
    server = LocalGarnet(
        tmp_path / "tls-api",
        server_context=private_ca.server_context(),
        client_context=private_ca.client_context(),
    )
    with server:
        yield server


@pytest.fixture
def tls_agent(tmp_path: Path, tls_api: LocalGarnet) -> Iterator[Agent]:
    """A daemon's settings, pointed at the local API over TLS."""
    agent = Agent(tmp_path, tls_api)
    yield agent
    for process in agent.processes:
        process.close()
    assert [] == agent.leaked_secrets(), "a token was printed or sent to systemd"


def _port_of(url: str) -> int:
    match = re.search(r":(\d+)/", url)
    assert match is not None, url
    return int(match.group(1))


@pytest.mark.fault(
    case=1,
    behaviour="Connection refused: READY=1 at once, STATUS= names the failed "
    "attempt, the error and the next attempt's delay; retries go on.",
)
def test_connection_refused_keeps_retrying(agent: Agent) -> None:
    """With nothing listening, the daemon stays up and keeps retrying."""
    port = _closed_port()
    daemon = agent.start(GARNET_API_URL=f"http://127.0.0.1:{port}/")

    ready = daemon.wait_for_message("READY=1")
    second = daemon.wait_for_line("agent registration failed attempt=2")
    alive = daemon.process.poll() is None
    code = daemon.stop()

    assert ready.startswith(
        "READY=1\nSTATUS=registration attempt 1 failed (cannot connect to "
        f"127.0.0.1:{port}: Connection refused); next attempt in "
    )
    assert second.startswith(
        'WARNING: agent registration failed attempt=2 error="cannot connect to '
        f'127.0.0.1:{port}: Connection refused" next_attempt_in='
    )
    assert alive
    assert 0 == code


@pytest.mark.fault(
    case=1,
    behaviour="Host unresolvable (in a network namespace without DNS): the "
    "daemon stays up and STATUS= names the host.",
)
def test_unresolvable_host_keeps_retrying(agent: Agent) -> None:
    """A name that cannot be resolved is a transient failure naming it."""
    probe = subprocess.run(["unshare", "--net", "true"], check=False)
    if probe.returncode != 0:
        pytest.skip("unshare --net is not permitted here")
    daemon = agent.start(
        command_prefix=("unshare", "--net"),
        GARNET_API_URL="https://garnet-api.invalid/",
    )

    ready = daemon.wait_for_message("READY=1")
    alive = daemon.process.poll() is None
    code = daemon.stop()

    assert ready.startswith(
        "READY=1\nSTATUS=registration attempt 1 failed (cannot connect to "
        "garnet-api.invalid:443: "
    )
    assert alive
    assert 0 == code


@pytest.mark.fault(
    case=1,
    behaviour="TLS handshake failure (https:// to a plain HTTP port): the "
    "daemon stays up; the error names host, port and OpenSSL's reason.",
)
def test_tls_handshake_failure_keeps_retrying(agent: Agent, api: LocalGarnet) -> None:
    """https:// to a port that speaks plain HTTP is a transient failure."""
    https_url = api.url.replace("http://", "https://")
    port = _port_of(api.url)
    daemon = agent.start(GARNET_API_URL=https_url)

    ready = daemon.wait_for_message("READY=1")
    alive = daemon.process.poll() is None
    code = daemon.stop()

    assert ready.startswith(
        f"READY=1\nSTATUS=registration attempt 1 failed (TLS handshake with "
        f"127.0.0.1:{port} failed: wrong version number; check that the API "
        "URL's port serves https); next attempt in "
    )
    assert alive
    assert 0 == code


@pytest.mark.fault(
    case=1,
    behaviour="A server that resets the connection during the TLS handshake: "
    "the error names the reset instead of an empty text.",
)
def test_reset_during_handshake_named() -> None:
    """A reset without errno or text is still named in the error."""
    with RawServer(b"", read_request=False) as server:
        url = server.url.replace("http://", "https://")
        with pytest.raises(TransientApiError) as raised:
            _register(url)

    # Whether the reset reaches aiohttp with errno ECONNRESET or without
    # any text depends on timing; either way the reset is named.
    prefix = f"cannot connect to 127.0.0.1:{server.port}: "
    message = str(raised.value)
    assert message.startswith(prefix)
    reason = message.removeprefix(prefix)
    assert reason in ("ConnectionResetError", "Connection reset by peer")


@pytest.mark.fault(
    case=2,
    behaviour="api.request-timeout is cut below half of WATCHDOG_USEC with a "
    "warning; hung requests time out and watchdog pings go on meanwhile.",
)
def test_hung_request_under_watchdog(agent: Agent, api: LocalGarnet) -> None:
    """A request timeout longer than half the watchdog timeout is cut, and
    the watchdog is pinged while registration requests hang."""
    agent.config.write_text("run-time:\n  api:\n    request-timeout: 10\n")
    api.add_fault(path="/api/v1/agents", delay=30.0, times=2)
    daemon = agent.start(WATCHDOG_USEC="3000000")

    cut = daemon.wait_for_line("request timeout cut")
    second = daemon.wait_for_line("agent registration failed attempt=2", timeout=20)
    daemon.wait_for_line("token stored at:", timeout=20)
    code = daemon.stop()

    assert (
        "WARNING: request timeout cut to below half the watchdog timeout "
        "setting=api.request-timeout configured=10s watchdog_timeout=3s "
        "request_timeout=1.2s"
    ) == cut
    assert "timed out after 1.2s" in second
    messages = daemon.messages
    first_try = messages.index("STATUS=registering (attempt 1)")
    second_failure = next(
        index
        for index, message in enumerate(messages)
        if "registration attempt 2 failed" in message
    )
    assert "WATCHDOG=1" in messages[first_try:second_failure]
    assert 0 == code


@pytest.mark.fault(
    case=2,
    behaviour="A server that accepts the connection and never answers: the "
    "request times out after api.request-timeout as a transient error.",
)
def test_silent_server_times_out() -> None:
    """A server that reads the request and stays silent times out."""
    with RawServer(None) as server, pytest.raises(TransientApiError) as raised:
        _register(server.url, timeout=0.5)

    assert f"request to {server.url}api/v1/agents timed out after 0.5s" == str(
        raised.value
    )


@pytest.mark.fault(
    case=3,
    behaviour="429 with Retry-After as an HTTP date: the next attempt waits "
    "at least until that date.",
)
def test_retry_after_http_date_honoured(agent: Agent, api: LocalGarnet) -> None:
    """The daemon waits out a Retry-After given as an HTTP date."""
    # Ten minutes ahead: far more than the daemon can take to start.
    date = email.utils.formatdate(time.time() + 600, usegmt=True)
    api.add_fault(path="/api/v1/agents", status=429, retry_after=date, times=1)
    daemon = agent.start()

    warning = daemon.wait_for_line("agent registration failed")
    daemon.stop()

    match = re.search(r"next_attempt_in=(\d+)s$", warning)
    assert match is not None, warning
    assert int(match.group(1)) >= 500
    assert 'error="HTTP 429' in warning


@pytest.mark.fault(
    case=3,
    behaviour="A proxy's HTML error page: STATUS= and the log give its "
    "status, size and type, never its text.",
)
def test_html_page_summarised_in_status(agent: Agent, api: LocalGarnet) -> None:
    """An HTML page from a proxy is summarised, not printed."""
    page = "<html><body><h1>502 Bad Gateway</h1></body></html>"
    api.add_fault(
        path="/api/v1/agents", status=502, body=page, content_type="text/html", times=1
    )
    daemon = agent.start()

    ready = daemon.wait_for_message("READY=1")
    daemon.wait_for_line("token stored at:", timeout=20)
    daemon.stop()

    assert ready.startswith(
        "READY=1\nSTATUS=registration attempt 1 failed (HTTP 502 "
        f"(<{len(page)} bytes of text/html>)); next attempt in "
    )
    assert "<html>" not in daemon.output()


@pytest.mark.fault(
    case=3,
    behaviour="A body cut short (fewer bytes than Content-Length, then "
    "close) is a transient error.",
)
def test_body_cut_short_is_transient() -> None:
    """A response that ends before its Content-Length is retried."""
    response = (
        b"HTTP/1.1 201 Created\r\nContent-Type: application/json\r\n"
        b'Content-Length: 100\r\n\r\n{"id": "x", "agent_'
    )
    with RawServer(response) as server, pytest.raises(TransientApiError) as raised:
        _register(server.url)

    assert str(raised.value).startswith(
        f"request to {server.url}api/v1/agents failed: ClientPayloadError"
    )


@pytest.mark.fault(
    case=3,
    behaviour="A chunked body without Content-Length is read only up to the "
    "cap, then refused.",
)
def test_chunked_oversized_body_capped() -> None:
    """A body with no length given is cut off at the cap."""
    chunk = b"x" * 8192
    chunks = b"".join(
        b"%x\r\n%s\r\n" % (len(chunk), chunk)
        for _ in range(MAX_BODY_BYTES // len(chunk) + 2)
    )
    response = (
        b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n" + chunks + b"0\r\n\r\n"
    )
    with RawServer(response) as server, pytest.raises(TransientApiError) as raised:
        _register(server.url)

    assert f"response is over the {MAX_BODY_BYTES}-byte limit; not reading it" == str(
        raised.value
    )


@pytest.mark.fault(
    case=5,
    behaviour="HTTPS_PROXY and https_proxy are honoured: the registration "
    "goes through a CONNECT tunnel of a proxy on loopback.",
)
@pytest.mark.parametrize("variable", ["HTTPS_PROXY", "https_proxy"])
def test_https_proxy_honoured(
    tls_agent: Agent, private_ca: PrivateCa, variable: str
) -> None:
    """The daemon tunnels to the API through the proxy in the environment."""
    port = _port_of(tls_agent.api.url)
    with LoopbackProxy({port}) as proxy:
        daemon = tls_agent.start(
            GARNET_API_CA_FILE=str(private_ca.ca_file), **{variable: proxy.url}
        )
        daemon.wait_for_line("token stored at:")
        code = daemon.stop()

    assert f"CONNECT 127.0.0.1:{port} HTTP/1.1" in proxy.connects()
    assert 1 == len(registrations(tls_agent.api))
    assert 0 == code


@pytest.mark.fault(
    case=5,
    behaviour="HTTP_PROXY and http_proxy are honoured for an http:// API URL: "
    "the registration is forwarded by a proxy on loopback.",
)
@pytest.mark.parametrize("variable", ["HTTP_PROXY", "http_proxy"])
def test_http_proxy_honoured(agent: Agent, api: LocalGarnet, variable: str) -> None:
    """The daemon sends plain HTTP requests through the proxy."""
    port = _port_of(api.url)
    with LoopbackProxy({port}) as proxy:
        daemon = agent.start(**{variable: proxy.url})
        daemon.wait_for_line("token stored at:")
        code = daemon.stop()

    assert f"POST {api.url}api/v1/agents HTTP/1.1" in proxy.requests
    assert 1 == len(registrations(api))
    assert 0 == code


@pytest.mark.fault(
    case=5,
    behaviour="NO_PROXY and no_proxy are respected: a listed API host is "
    "reached directly and the proxy sees no request.",
)
@pytest.mark.parametrize("variable", ["NO_PROXY", "no_proxy"])
def test_no_proxy_respected(
    tls_agent: Agent, private_ca: PrivateCa, variable: str
) -> None:
    """A host in NO_PROXY bypasses the proxy."""
    port = _port_of(tls_agent.api.url)
    with LoopbackProxy({port}) as proxy:
        daemon = tls_agent.start(
            GARNET_API_CA_FILE=str(private_ca.ca_file),
            HTTPS_PROXY=proxy.url,
            **{variable: "garnet.example,127.0.0.1"},
        )
        daemon.wait_for_line("token stored at:")
        code = daemon.stop()

    assert [] == proxy.requests
    assert 1 == len(registrations(tls_agent.api))
    assert 0 == code


@pytest.mark.fault(
    case=5,
    behaviour="A proxy that is down: the daemon stays up and STATUS= names "
    "the proxy and the variables to check.",
)
def test_proxy_down_named(tls_agent: Agent, private_ca: PrivateCa) -> None:
    """A dead proxy is reported as the proxy, not as the API."""
    port = _closed_port()
    daemon = tls_agent.start(
        GARNET_API_CA_FILE=str(private_ca.ca_file),
        HTTPS_PROXY=f"http://127.0.0.1:{port}",
    )

    ready = daemon.wait_for_message("READY=1")
    alive = daemon.process.poll() is None
    code = daemon.stop()

    assert ready.startswith(
        "READY=1\nSTATUS=registration attempt 1 failed (cannot connect to "
        f"proxy 127.0.0.1:{port}: Connection refused; check HTTPS_PROXY, "
        "HTTP_PROXY and NO_PROXY); next attempt in "
    )
    assert alive
    assert 0 == code


@pytest.mark.fault(
    case=5,
    behaviour="A proxy that rejects the CONNECT tunnel (403): the error "
    "names the proxy's status and the variables to check.",
)
def test_proxy_rejecting_tunnel_named(tls_agent: Agent, private_ca: PrivateCa) -> None:
    """A proxy's refusal is reported with its status."""
    with LoopbackProxy(set()) as proxy:
        daemon = tls_agent.start(
            GARNET_API_CA_FILE=str(private_ca.ca_file), HTTPS_PROXY=proxy.url
        )
        ready = daemon.wait_for_message("READY=1")
        code = daemon.stop()

    assert ready.startswith(
        "READY=1\nSTATUS=registration attempt 1 failed (proxy rejected the "
        f"tunnel to {tls_agent.api.url}api/v1/agents: HTTP 403; check the "
        "proxy's rules, HTTPS_PROXY and NO_PROXY); next attempt in "
    )
    assert [] == registrations(tls_agent.api)
    assert 0 == code


@pytest.mark.fault(
    case=6,
    behaviour="GARNET_API_CA_FILE naming the private CA makes TLS to a "
    "self-hosted API work.",
)
def test_private_ca_file_trusted(tls_agent: Agent, private_ca: PrivateCa) -> None:
    """With the CA file set, the daemon registers over TLS."""
    daemon = tls_agent.start(GARNET_API_CA_FILE=str(private_ca.ca_file))

    daemon.wait_for_line("token stored at:")
    code = daemon.stop()

    assert 1 == len(registrations(tls_agent.api))
    assert 0 == code


@pytest.mark.fault(
    case=6,
    behaviour="Without the CA file: no registration, verification stays on, "
    "and the error names the host and the setting to use.",
)
def test_private_ca_missing_names_setting(tls_agent: Agent) -> None:
    """An untrusted certificate is retried with advice, never accepted."""
    daemon = tls_agent.start()

    ready = daemon.wait_for_message("READY=1")
    warning = daemon.wait_for_line("agent registration failed")
    alive = daemon.process.poll() is None
    code = daemon.stop()

    expected = (
        "TLS certificate of 127.0.0.1 not trusted: unable to get local issuer "
        "certificate; for a private CA set GARNET_API_CA_FILE or "
        "run-time.api.ca-file to its PEM file"
    )
    assert ready.startswith(
        f"READY=1\nSTATUS=registration attempt 1 failed ({expected})"
    )
    assert f'error="{expected}"' in warning
    assert [] == registrations(tls_agent.api)
    assert alive
    assert 0 == code
