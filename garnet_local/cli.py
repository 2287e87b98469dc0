"""Command line of the local Garnet API: `python -m garnet_local`."""

import argparse
import asyncio
import logging
import os
import signal
import socket
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

from aiohttp import web

from garnet_local.app import make_app
from garnet_local.errors import LocalApiError
from garnet_local.server import bind_loopback, start_runner, url_of
from garnet_local.state import PERMISSIONS
from garnet_local.store import write_atomic

PROJECT_TOKEN_VARIABLE = "GARNET_LOCAL_PROJECT_TOKEN"
DEFAULT_PROJECT_TOKEN = "local-project-token"

log = logging.getLogger("garnet_local")


def main(argv: Sequence[str] | None = None) -> int:
    """Run the server until SIGTERM or SIGINT and return the exit code."""
    options = _parse_options(argv)
    logging.basicConfig(
        level=logging.INFO, format="%(levelname)s %(name)s: %(message)s"
    )

    try:
        project_tokens = load_project_tokens(options.project_token_file, os.environ)
        sock = bind_loopback(options.host, options.port)
        app = make_app(options.state_dir, project_tokens)
        return asyncio.run(_serve(app, sock, options.url_file))
    except LocalApiError as error:
        print(f"garnet_local: {error}", file=sys.stderr)
        return int(error.exit_code)


def load_project_tokens(
    path: Path | None, environ: Mapping[str, str]
) -> dict[str, str]:
    """Return project tokens and their permissions from the first source set.

    The sources are the file at path, then the environment variable
    GARNET_LOCAL_PROJECT_TOKEN, then the built-in `local-project-token`.
    """
    if path is not None:
        tokens = _read_project_token_file(path)
        source = "file"
    elif environ.get(PROJECT_TOKEN_VARIABLE, "").strip():
        tokens = {environ[PROJECT_TOKEN_VARIABLE].strip(): "write"}
        source = "environment"
    else:
        tokens = {DEFAULT_PROJECT_TOKEN: "write"}
        source = "default"

    log.info("project tokens loaded source=%s count=%d", source, len(tokens))

    return tokens


def _read_project_token_file(path: Path) -> dict[str, str]:
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as error:
        raise LocalApiError(
            f"cannot read the project token file {path}: {error}. "
            "Check --project-token-file."
        ) from None

    tokens: dict[str, str] = {}
    for number, line in enumerate(lines, start=1):
        words = line.split()
        if words and not words[0].startswith("#"):
            token, permission = _parse_token_line(words, f"{path}:{number}")
            tokens[token] = permission

    if not tokens:
        raise LocalApiError(f"no project token in {path}: add one per line")

    return tokens


def _parse_token_line(words: list[str], where: str) -> tuple[str, str]:
    # The error messages name the line but never quote the token.
    if len(words) > 2:
        raise LocalApiError(
            f"{where}: expected `TOKEN` or `TOKEN readonly`, found {len(words)} words"
        )

    permission = words[1] if len(words) == 2 else "write"
    if permission not in PERMISSIONS:
        raise LocalApiError(
            f"{where}: invalid permission {permission!r}, expected 'write' or "
            "'readonly'"
        )
    if not words[0].isascii():
        raise LocalApiError(f"{where}: the project token must be ASCII")

    return words[0], permission


async def _serve(
    app: web.Application, sock: socket.socket, url_file: Path | None
) -> int:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signal_number in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signal_number, stop.set)

    runner = await start_runner(app, sock)
    url = url_of(sock)
    # The URL file comes first, so a reader of the line also finds the file.
    if url_file is not None:
        await asyncio.to_thread(write_atomic, url_file, url.encode(), 0o644)
    print(f"garnet local api listening url={url}", flush=True)

    try:
        await stop.wait()
    finally:
        await runner.cleanup()
        # A URL file left behind would point at a port where no server listens.
        if url_file is not None:
            await asyncio.to_thread(url_file.unlink, missing_ok=True)

    log.info("garnet local api stopped")

    return 0


def _parse_options(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m garnet_local",
        description="Serve a local stand-in for the Garnet API on loopback.",
    )
    parser.add_argument(
        "--host", default="127.0.0.1", help="loopback address (default: 127.0.0.1)"
    )
    parser.add_argument(
        "--port", type=int, default=0, help="TCP port, 0 picks a free one (default)"
    )
    parser.add_argument(
        "--state-dir",
        type=Path,
        required=True,
        help="folder for agents.json and the token secret, created if missing",
    )
    parser.add_argument(
        "--project-token-file",
        type=Path,
        help="file of project tokens, one `TOKEN` or `TOKEN readonly` a line "
        f"(default: ${PROJECT_TOKEN_VARIABLE}, else {DEFAULT_PROJECT_TOKEN!r})",
    )
    parser.add_argument(
        "--url-file",
        type=Path,
        help="file to write the base URL to (without a newline) once listening, "
        "removed again on a clean stop",
    )

    return parser.parse_args(argv)
