"""Binding a loopback socket and running the application on it."""

import ipaddress
import socket
import ssl

from aiohttp import web

from garnet_local.errors import LocalApiError

# In-flight requests, a delayed one included, get this long at shutdown.
_SHUTDOWN_TIMEOUT_SECONDS = 1.0


def bind_loopback(host: str, port: int) -> socket.socket:
    """Bind a TCP socket to a loopback host and port (0 picks a free port)."""
    address = _parse_loopback(host)
    family = socket.AF_INET6 if address.version == 6 else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((str(address), port))
    except OSError as error:
        sock.close()
        raise LocalApiError(
            f"cannot listen on {host} port {port}: {error.strerror}. "
            "Choose another --port, or 0 for a free one."
        ) from None

    return sock


def url_of(sock: socket.socket, prefix: str = "/", scheme: str = "http") -> str:
    """Return the base URL of a bound socket, ending with the prefix."""
    host, port = sock.getsockname()[:2]
    if ":" in host:
        host = f"[{host}]"

    return f"{scheme}://{host}:{port}{prefix}"


async def start_runner(
    app: web.Application,
    sock: socket.socket,
    ssl_context: ssl.SSLContext | None = None,
) -> web.AppRunner:
    """Start serving app on sock, over TLS when ``ssl_context`` is given.
    The caller stops it with `runner.cleanup()`."""
    # access_log=None because the application logs its own line per request.
    runner = web.AppRunner(
        app, access_log=None, shutdown_timeout=_SHUTDOWN_TIMEOUT_SECONDS
    )
    await runner.setup()
    await web.SockSite(runner, sock, ssl_context=ssl_context).start()

    return runner


def _parse_loopback(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    if host == "localhost":
        host = "127.0.0.1"

    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        address = None
    if address is None or not address.is_loopback:
        raise LocalApiError(
            f"invalid host {host!r}: the local API listens only on a loopback "
            "address (127.0.0.0/8, ::1 or localhost) because its control "
            "endpoints take no credential"
        )

    return address
