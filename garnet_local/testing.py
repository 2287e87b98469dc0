"""LocalGarnet: the local API in a background thread, for tests."""

import asyncio
import json
import socket
import ssl
import threading
import types
import urllib.request
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Self

from aiohttp import web

from garnet_local.app import make_app, normalize_prefix
from garnet_local.server import bind_loopback, start_runner, url_of

DEFAULT_TEST_TOKENS: Mapping[str, str] = types.MappingProxyType(
    {"test-project-token": "write"}
)
_START_TIMEOUT_SECONDS = 10.0
_REQUEST_TIMEOUT_SECONDS = 10.0

# An empty ProxyHandler, because an http_proxy variable must not send
# loopback requests elsewhere.
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


class LocalGarnet:
    """A context manager serving the local API on 127.0.0.1 at a free port.

    The server runs on its own event loop in a daemon thread. The helper
    methods call the `/_local/` control endpoints and raise
    urllib.error.HTTPError when one responds with an error status.

    With ``server_context`` the API is served over TLS (an https:// URL),
    and the helper methods verify the server with ``client_context``.
    """

    def __init__(
        self,
        state_dir: Path,
        project_tokens: Mapping[str, str] = DEFAULT_TEST_TOKENS,
        prefix: str = "/",
        server_context: ssl.SSLContext | None = None,
        client_context: ssl.SSLContext | None = None,
    ) -> None:
        self.state_dir = state_dir
        self.project_tokens = dict(project_tokens)
        self.prefix = normalize_prefix(prefix)
        self.server_context = server_context
        self._opener = _OPENER
        if client_context is not None:
            self._opener = urllib.request.build_opener(
                urllib.request.ProxyHandler({}),
                urllib.request.HTTPSHandler(context=client_context),
            )
        self.url = ""
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._ready = threading.Event()
        self._startup_error: BaseException | None = None

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def start(self) -> None:
        """Load the state folder, bind a port and wait until the server runs."""
        app = make_app(self.state_dir, self.project_tokens, self.prefix)
        sock = bind_loopback("127.0.0.1", 0)
        scheme = "http" if self.server_context is None else "https"
        self.url = url_of(sock, self.prefix, scheme)

        self._ready.clear()
        self._thread = threading.Thread(
            target=asyncio.run,
            args=(self._serve(app, sock),),
            name="local-garnet",
            daemon=True,
        )
        self._thread.start()

        if not self._ready.wait(_START_TIMEOUT_SECONDS):
            raise TimeoutError(f"local Garnet API did not start at {self.url}")
        if self._startup_error is not None:
            raise self._startup_error

    def stop(self) -> None:
        """Stop the server and wait for its thread to end."""
        if self._thread is None or self._loop is None or self._stop is None:
            return

        self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(_START_TIMEOUT_SECONDS)
        self._thread = None

    def agents(self) -> list[dict[str, Any]]:
        """List every agent with its id, kind, hostname, state and heartbeats."""
        agents: list[dict[str, Any]] = self._call("GET", "_local/agents")
        return agents

    def revoke(self, agent_id: str) -> None:
        """Revoke an agent's token."""
        self._call("POST", f"_local/agents/{agent_id}/revoke")

    def delete(self, agent_id: str) -> None:
        """Delete an agent, keeping a tombstone so its calls get 404."""
        self._call("DELETE", f"_local/agents/{agent_id}")

    def add_fault(self, **fields: Any) -> dict[str, Any]:
        """Add a fault (path, method, status, delay, retry_after, body, ...)."""
        fault: dict[str, Any] = self._call("POST", "_local/faults", fields)
        return fault

    def clear_faults(self) -> None:
        """Remove every fault."""
        self._call("DELETE", "_local/faults")

    def requests(self) -> list[dict[str, Any]]:
        """List the API requests received, oldest first."""
        requests: list[dict[str, Any]] = self._call("GET", "_local/requests")
        return requests

    def clear_requests(self) -> None:
        """Empty the request log."""
        self._call("DELETE", "_local/requests")

    async def _serve(self, app: web.Application, sock: socket.socket) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        try:
            runner = await start_runner(app, sock, self.server_context)
        except BaseException as error:
            self._startup_error = error
            raise
        finally:
            self._ready.set()

        try:
            await self._stop.wait()
        finally:
            await runner.cleanup()

    def _call(self, method: str, path: str, body: object = None) -> Any:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(  # noqa: S310 (the URL is on 127.0.0.1)
            self.url + path,
            data=data,
            method=method,
            headers={"Content-Type": "application/json"},
        )
        with self._opener.open(request, timeout=_REQUEST_TIMEOUT_SECONDS) as response:
            raw = response.read()

        return json.loads(raw) if raw else None
