"""The Garnet API client: the calls an agent makes, and what their responses
mean for it."""

import email.utils
import json
import os
import ssl
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit
from urllib.request import proxy_bypass

import aiohttp

# NOTE: aiohttp.helpers is not aiohttp's documented API, so an upgrade may
# move these; tests/test_api.py sends calls through a proxy and past it.
from aiohttp.helpers import ProxyInfo, proxies_from_env
from pydantic import SecretStr

from jibrild.errors import (
    JibrildError,
    ProjectTokenRejectedError,
    RegistrationRejectedError,
    SettingsError,
)
from jibrild.sources.checks import (
    hide_credentials,
    is_loopback_host,
    is_visible_ascii,
)

# Longer than any id the API gives; a longer one is shown as "unknown".
_MAX_AGENT_ID_LENGTH = 128

# No response of the API is near this size; a larger body is a proxy's page
# or a fault, and is not read into memory.
MAX_BODY_BYTES = 64 * 1024

_JSON = "application/json"


class TransientApiError(JibrildError):
    """A failure that may pass, so the call is retried: a timeout, a
    refused connection, a 429 or 5xx response, a malformed body."""

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class AgentTokenRejectedError(JibrildError):
    """The API no longer accepts the agent token: 401 (invalid or revoked)
    or 404 (the agent was deleted)."""

    def __init__(self, status: int) -> None:
        reason = "agent deleted" if status == 404 else "invalid or revoked"
        super().__init__(f"agent token rejected: HTTP {status} ({reason})")
        self.status = status


@dataclass(frozen=True)
class Registration:
    """The API's response to a registration."""

    agent_id: str
    agent_token: SecretStr


@dataclass(frozen=True)
class _Response:
    status: int
    body: bytes
    content_type: str
    retry_after: float | None
    location: str | None


def api_endpoint(base_url: str, path: str) -> str:
    """Join the base URL, which may carry a path prefix, and an API path."""
    return base_url.rstrip("/") + "/" + path.lstrip("/")


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Return the seconds a Retry-After header requests (RFC 9110,
    section 10.2.3: delay-seconds or an HTTP-date), or None."""
    if not value:
        return None

    value = value.strip()
    # str.isdigit() also takes digits such as "²", which float() rejects.
    if value.isascii() and value.isdigit():
        return float(value)

    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    now = time.time() if now is None else now
    return max(0.0, when.timestamp() - now)


def make_ssl_context(ca_file: Path | None) -> ssl.SSLContext | bool:
    """Return a verifying TLS context that also trusts ``ca_file``, or True
    for aiohttp's own verifying context when no CA file is given."""
    # aiohttp builds its default context when it is imported. A second
    # one would load the system CA store again at every start, which took
    # 20 ms and 0.8 MiB on the machine of docs/performance.md.
    if ca_file is None:
        return True
    context = ssl.create_default_context()
    context.load_verify_locations(cafile=str(ca_file))
    return context


def env_proxy(base_url: str, allow_insecure_http: bool = False) -> ProxyInfo | None:
    """Return the proxy that HTTPS_PROXY, HTTP_PROXY and NO_PROXY choose for
    ``base_url``, with credentials from the URL or ~/.netrc, or None.

    aiohttp's ``trust_env`` makes the same choice, but at every request and
    in a worker thread, with ~/.netrc read twice each time.
    """
    url = urlsplit(base_url)
    if url.hostname and proxy_bypass(url.hostname):
        return None
    _check_proxy_variables(url.scheme)
    proxy = proxies_from_env().get(url.scheme)
    if proxy is not None and url.scheme == "http" and not allow_insecure_http:
        _check_cleartext_proxy(str(proxy.proxy.host))
    return proxy


def _check_cleartext_proxy(proxy_host: str) -> None:
    """Raise SettingsError when an http:// API URL, allowed without the
    opt-in because it is loopback, would send the token in clear to a proxy
    on another host."""
    if is_loopback_host(proxy_host):
        return
    raise SettingsError(
        f"the HTTP proxy at {proxy_host} would get the plain http:// API "
        "requests, with their tokens, in clear; use an https:// API URL, add "
        "the API host to NO_PROXY, or set GARNET_API_ALLOW_INSECURE_HTTP=true"
    )


def _check_proxy_variables(scheme: str) -> None:
    """Raise SettingsError naming a proxy variable whose URL aiohttp could
    not use, with any password hidden, instead of failing at each request."""
    for name in (f"{scheme}_proxy", f"{scheme.upper()}_PROXY"):
        value = os.environ.get(name)
        if not value:
            continue
        problem = _proxy_url_problem(value)
        if problem is not None:
            raise SettingsError(
                f"{name}={hide_credentials(value)} is not a usable proxy URL: "
                f"{problem}; expected http://[user:password@]host:port"
            )
        return


def _proxy_url_problem(value: str) -> str | None:
    try:
        parts = urlsplit(value)
        port = parts.port
    except ValueError as error:
        return str(error)
    if parts.scheme not in ("http", "https"):
        return "the scheme must be http or https"
    if not parts.hostname:
        return "no host"
    if port == 0:
        return "port 0"
    return None


class GarnetClient:
    """One HTTP session to the Garnet API, reused for every call."""

    def __init__(
        self,
        base_url: str,
        timeout: float,
        user_agent: str,
        ca_file: Path | None = None,
        allow_insecure_http: bool = False,
    ) -> None:
        self.base_url = base_url
        self._allow_insecure_http = allow_insecure_http
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._headers = {"User-Agent": user_agent, "Accept": _JSON}
        self._ca_file = ca_file
        self._session: aiohttp.ClientSession | None = None
        self._proxy: ProxyInfo | None = None

    async def __aenter__(self) -> "GarnetClient":
        # The proxy is chosen once, since every call goes to the same host
        # and the process environment does not change. Without trust_env,
        # aiohttp sends no credentials of its own from ~/.netrc to the API.
        self._proxy = env_proxy(self.base_url, self._allow_insecure_http)
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(ssl=make_ssl_context(self._ca_file)),
            timeout=self._timeout,
            headers=self._headers,
        )
        return self

    async def __aexit__(self, *_exc: object) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def register(
        self, project_token: SecretStr, body: Mapping[str, object]
    ) -> Registration:
        """Register this host as an agent with the project token."""
        response = await self._call(
            "POST",
            "api/v1/agents",
            {"X-Project-Token": project_token.get_secret_value()},
            body,
        )
        if response.status in (401, 403):
            detail = _error_detail(response)
            raise ProjectTokenRejectedError(
                f"project token rejected: HTTP {response.status}{detail}"
            )
        if response.status == 400:
            raise RegistrationRejectedError(
                f"registration rejected: HTTP 400{_error_detail(response)}"
            )
        if response.status in (404, 405):
            # Retried all the same: a proxy or a deployment may be changing.
            raise TransientApiError(
                f"HTTP {response.status} from "
                f"{api_endpoint(self.base_url, 'api/v1/agents')}; check that "
                "the API URL is the Garnet API's base URL"
            )
        _raise_unless(response, (200, 201))

        return _parse_registration(response)

    async def heartbeat(self, agent_token: SecretStr) -> None:
        """Send one heartbeat with the agent token."""
        response = await self._call(
            "POST",
            "api/v1/agent_heartbeat",
            {"X-Agent-Token": agent_token.get_secret_value()},
            None,
        )
        if response.status in (401, 404):
            raise AgentTokenRejectedError(response.status)
        _raise_unless(response, (200,))

    async def send_event(
        self, agent_token: SecretStr, event: Mapping[str, object]
    ) -> bool:
        """Send one event; return True when the API created it and False
        when it updated an event with the same id."""
        response = await self._call(
            "PUT",
            "api/v1/events_v2",
            {"X-Agent-Token": agent_token.get_secret_value()},
            event,
        )
        if response.status == 401:
            raise AgentTokenRejectedError(401)
        if response.status == 400:
            raise JibrildError(f"event rejected: HTTP 400{_error_detail(response)}")
        _raise_unless(response, (201, 202))

        return response.status == 201

    async def _call(
        self,
        method: str,
        path: str,
        credential: Mapping[str, str],
        body: Mapping[str, object] | None,
    ) -> _Response:
        if self._session is None:
            raise RuntimeError("GarnetClient used outside 'async with'")

        url = api_endpoint(self.base_url, path)
        headers = dict(credential)
        data = None
        # Without a body, aiohttp would add a Content-Type of its own.
        skip_headers: tuple[str, ...] = ("Content-Type",)
        if body is not None:
            headers["Content-Type"] = _JSON
            data = json.dumps(body, separators=(",", ":")).encode()
            skip_headers = ()

        try:
            async with self._session.request(
                method,
                url,
                headers=headers,
                data=data,
                allow_redirects=False,
                skip_auto_headers=skip_headers,
                proxy=self._proxy.proxy if self._proxy else None,
                proxy_auth=self._proxy.proxy_auth if self._proxy else None,
            ) as http_response:
                payload = await _read_capped(http_response)
                return _Response(
                    status=http_response.status,
                    body=payload,
                    content_type=http_response.content_type,
                    retry_after=parse_retry_after(
                        http_response.headers.get("Retry-After")
                    ),
                    location=http_response.headers.get("Location"),
                )
        except TimeoutError:
            raise TransientApiError(
                f"request to {url} timed out after {self._timeout.total:g}s"
            ) from None
        except aiohttp.ClientError as error:
            raise TransientApiError(_client_error_text(error, url)) from None


def _client_error_text(error: aiohttp.ClientError, url: str) -> str:
    """Return what failed for an aiohttp error, with the host involved and,
    where the operator can fix it, the setting to check."""
    if isinstance(error, aiohttp.ClientConnectorCertificateError):
        reason = getattr(error.certificate_error, "verify_message", "")
        return (
            f"TLS certificate of {error.host} not trusted"
            f"{': ' + reason if reason else ''}; for a private CA set "
            "GARNET_API_CA_FILE or run-time.api.ca-file to its PEM file"
        )
    if isinstance(error, aiohttp.ClientConnectorSSLError):
        return (
            f"TLS handshake with {error.host}:{error.port} failed: "
            f"{_tls_error_text(error.os_error)}; check that the API URL's "
            "port serves https"
        )
    if isinstance(error, aiohttp.ClientProxyConnectionError):
        return (
            f"cannot connect to proxy {error.host}:{error.port}: "
            f"{_os_error_text(error.os_error)}; check HTTPS_PROXY, HTTP_PROXY "
            "and NO_PROXY"
        )
    if isinstance(error, aiohttp.ClientHttpProxyError):
        return (
            f"proxy rejected the tunnel to {url}: HTTP {error.status}; check "
            "the proxy's rules, HTTPS_PROXY and NO_PROXY"
        )
    if isinstance(error, aiohttp.ClientConnectorError):
        return (
            f"cannot connect to {error.host}:{error.port}: "
            f"{_os_error_text(error.os_error)}"
        )
    # The text may quote a proxy URL, with its password.
    return hide_credentials(f"request to {url} failed: {type(error).__name__}: {error}")


async def _read_capped(response: aiohttp.ClientResponse) -> bytes:
    if (response.content_length or 0) > MAX_BODY_BYTES:
        raise TransientApiError(
            f"response of {response.content_length} bytes is over the "
            f"{MAX_BODY_BYTES}-byte limit"
        )

    chunks = []
    size = 0
    while chunk := await response.content.read(MAX_BODY_BYTES + 1 - size):
        chunks.append(chunk)
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            raise TransientApiError(
                f"response is over the {MAX_BODY_BYTES}-byte limit; not reading it"
            )
    return b"".join(chunks)


def _os_error_text(error: OSError) -> str:
    """Return the C library's text for an OSError's errno, or its own text."""
    # asyncio's strerror reads "Connect call failed (...)", which hides the
    # reason that errno gives, such as "Connection refused".
    if error.errno:
        return os.strerror(error.errno)
    if error.strerror:
        return error.strerror
    # A reset during the TLS handshake carries neither errno nor text.
    return str(error) or type(error).__name__


def _tls_error_text(error: OSError) -> str:
    """Return OpenSSL's reason, such as 'wrong version number'."""
    reason = getattr(error, "reason", None)
    if isinstance(reason, str) and reason:
        return reason.lower().replace("_", " ")
    return _os_error_text(error)


def _raise_unless(response: _Response, expected: tuple[int, ...]) -> None:
    if response.status in expected:
        return
    # Redirects are not followed, since they would carry the token to a
    # place the operator did not name.
    if 300 <= response.status < 400:
        raise TransientApiError(
            f"HTTP {response.status} redirect to {response.location or 'nowhere'}; "
            "set the API URL to the API's final address"
        )
    raise TransientApiError(
        f"HTTP {response.status}{_error_detail(response)}", response.retry_after
    )


def _error_detail(response: _Response) -> str:
    """Return ': <message>' from a JSON error body, or the body's size."""
    message = _json_object(response.body).get("error")
    if isinstance(message, str) and message:
        return f": {message[:200]}"
    if response.body:
        kind = response.content_type or "unknown type"
        return f" (<{len(response.body)} bytes of {kind}>)"
    return ""


def _json_object(body: bytes) -> dict[str, Any]:
    try:
        value = json.loads(body)
    except (ValueError, RecursionError):
        # RecursionError: a body nested deeper than the parser's stack.
        return {}
    return value if isinstance(value, dict) else {}


def _parse_registration(response: _Response) -> Registration:
    fields = _json_object(response.body)
    agent_id = fields.get("id")
    agent_token = fields.get("agent_token")
    if not isinstance(agent_token, str) or not agent_token.strip():
        raise TransientApiError(
            f"HTTP {response.status} response has no agent_token"
            f" (<{len(response.body)} bytes of {response.content_type or 'unknown'}>)"
        )
    # The token goes into an HTTP header and a one-line file.
    if not is_visible_ascii(agent_token.strip()):
        raise TransientApiError(
            f"HTTP {response.status} response has an agent_token that is not "
            "visible ASCII text"
        )
    # The id goes into log lines, STATUS= and the identity record.
    if (
        not isinstance(agent_id, str)
        or not is_visible_ascii(agent_id)
        or len(agent_id) > _MAX_AGENT_ID_LENGTH
    ):
        agent_id = "unknown"
    return Registration(agent_id=agent_id, agent_token=SecretStr(agent_token.strip()))
