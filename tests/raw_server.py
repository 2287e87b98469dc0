"""A loopback TCP server that sends one canned byte string to each client,
for responses that aiohttp's own server would never send: a body cut short,
a chunked body of any size, or nothing at all."""

import socket
import threading
from types import TracebackType
from typing import Self


class RawServer:
    """A context manager serving ``response`` on 127.0.0.1 at a free port.

    It reads the request first, unless ``read_request`` is False. With
    ``response`` None it then keeps the connection open without responding
    until the server stops.
    """

    def __init__(self, response: bytes | None, read_request: bool = True) -> None:
        self.response = response
        self.read_request = read_request
        self._sock = socket.socket()
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen()
        # accept() wakes up this often to see whether the server stopped.
        self._sock.settimeout(0.1)
        self.port: int = self._sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}/"
        self._stop = threading.Event()
        self._clients: list[socket.socket] = []
        self._thread = threading.Thread(target=self._serve, daemon=True)

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._stop.set()
        self._thread.join(5)
        self._sock.close()
        for client in self._clients:
            client.close()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                client, _ = self._sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            client.settimeout(10)
            self._clients.append(client)
            if self.read_request:
                _read_request(client)
            if self.response is not None:
                client.sendall(self.response)
                client.close()


def _read_request(client: socket.socket) -> None:
    """Read the head and the Content-Length body, so that closing the
    socket after the response does not reset the connection."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = client.recv(4096)
        if not chunk:
            return
        data += chunk

    head, _, body = data.partition(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value.strip())
    while len(body) < length:
        chunk = client.recv(4096)
        if not chunk:
            return
        body += chunk
