"""A small HTTP proxy on 127.0.0.1 for the proxy tests: CONNECT tunnels
for https:// and forwarding of absolute-form requests for http://.

It connects only to the 127.0.0.1 ports it is given, so a test can never
make it reach another host, and it records every request line.
"""

import select
import socket
import socketserver
import threading
from types import TracebackType
from typing import Self

_HEAD_LIMIT = 16 * 1024
_RELAY_CHUNK = 64 * 1024


class _Handler(socketserver.BaseRequestHandler):
    server: "_Server"

    def handle(self) -> None:
        head = _read_head(self.request)
        request_line = head.split(b"\r\n", 1)[0].decode("latin-1")
        self.server.owner.record(request_line)

        method, _, rest = request_line.partition(" ")
        target = rest.partition(" ")[0]
        port = self.server.owner.allowed_port(method, target)
        if port is None:
            self.request.sendall(b"HTTP/1.1 403 Forbidden\r\n\r\n")
            return

        with socket.create_connection(("127.0.0.1", port), timeout=10) as upstream:
            if method == "CONNECT":
                self.request.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
            else:
                # aiohttp's server accepts the absolute-form target as is.
                upstream.sendall(head)
            _relay(self.request, upstream)


class _Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, owner: "LoopbackProxy") -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.owner = owner


class LoopbackProxy:
    """A context manager running the proxy in a background thread."""

    def __init__(self, allowed_ports: set[int]) -> None:
        self.allowed_ports = allowed_ports
        self.requests: list[str] = []
        self._lock = threading.Lock()
        self._server = _Server(self)
        port = self._server.server_address[1]
        self.url = f"http://127.0.0.1:{port}"
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="connect-proxy", daemon=True
        )

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)

    def record(self, request_line: str) -> None:
        """Keep one request line, such as ``CONNECT 127.0.0.1:8443 HTTP/1.1``."""
        with self._lock:
            self.requests.append(request_line)

    def allowed_port(self, method: str, target: str) -> int | None:
        """Return the 127.0.0.1 port a request may reach, or None."""
        if method == "CONNECT":
            authority = target
        elif target.startswith("http://"):
            authority = target.removeprefix("http://").partition("/")[0]
        else:
            return None

        host, _, port_text = authority.rpartition(":")
        if host not in ("127.0.0.1", "localhost") or not port_text.isdigit():
            return None
        port = int(port_text)
        return port if port in self.allowed_ports else None

    def connects(self) -> list[str]:
        """Return the CONNECT request lines received so far."""
        with self._lock:
            return [line for line in self.requests if line.startswith("CONNECT ")]


def _read_head(sock: socket.socket) -> bytes:
    """Read up to the blank line that ends the request head."""
    head = b""
    while b"\r\n\r\n" not in head and len(head) < _HEAD_LIMIT:
        chunk = sock.recv(4096)
        if not chunk:
            break
        head += chunk
    return head


def _relay(client: socket.socket, upstream: socket.socket) -> None:
    """Copy bytes both ways until either side closes."""
    peers = {client: upstream, upstream: client}
    while True:
        readable, _, _ = select.select(list(peers), [], [], 30)
        if not readable:
            return
        for sock in readable:
            try:
                data = sock.recv(_RELAY_CHUNK)
            except OSError:
                return
            if not data:
                return
            peers[sock].sendall(data)
