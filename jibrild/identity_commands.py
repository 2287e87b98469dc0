"""`jibrild reset` and `jibrild register`: remove the agent identity, or
register now, while no daemon uses the state folder."""

import asyncio
import os
import signal
import sys
from pathlib import Path

from jibrild import __version__
from jibrild.agent_token import HOW_TO_SET_PROJECT, AgentTokenHolder
from jibrild.api import GarnetClient
from jibrild.daemon import detect_and_log
from jibrild.errors import (
    AlreadyRunningError,
    ApiUnavailableError,
    ExitCode,
    SettingsError,
    TokenStoreError,
    UsageError,
)
from jibrild.hostfacts import read_host_facts
from jibrild.logs import get_logger
from jibrild.notify import Notifier
from jibrild.registration import Registrar
from jibrild.settings import LoadedSettings
from jibrild.tokenstore import TokenStore

_YES = ("y", "yes")
_MACHINE_ID_NOTE = (
    "for a golden image, also empty /etc/machine-id, so that the clones do "
    "not share it (see machine-id(5))"
)


def reset(token_path: Path, yes: bool) -> int:
    """Remove the agent identity in the state folder of ``token_path``,
    after a confirmation on the terminal unless ``yes``; return the exit
    code."""
    store = TokenStore(token_path)
    if not store.folder.is_dir():
        print(f"nothing to remove: state folder {store.folder} does not exist")
        return ExitCode.OK

    _lock(store, "reset")
    try:
        files = store.identity_files()
        if not files:
            print(f"nothing to remove: no agent identity in {store.folder}")
            return ExitCode.OK
        if not yes and not _confirm(store, files):
            print("nothing removed")
            # Not zero, so that `jibrild reset && poweroff` stops here.
            return ExitCode.INTERNAL
        removed = store.remove_identity()
    finally:
        store.unlock()

    for path in removed:
        print(f"removed {path}")
    print("jibrild registers again with the project token at its next start")
    print(_MACHINE_ID_NOTE)
    return ExitCode.OK


def _confirm(store: TokenStore, files: list[Path]) -> bool:
    """Ask on the terminal whether to remove ``files``; the default is no."""
    if not sys.stdin.isatty():
        raise UsageError(
            "standard input is not a terminal, so jibrild reset cannot ask "
            "for confirmation; pass --yes to remove the agent identity in "
            f"{store.folder} without asking"
        )

    agent_id = store.recorded_agent_id() or "unknown (no valid identity record)"
    print(f"agent id: {agent_id}")
    print("files to remove:")
    for path in files:
        print(f"  {path}")
    print("The agent stays listed in Garnet until it is deleted there.")
    print("Remove the agent identity? [y/N] ", end="", flush=True)
    return sys.stdin.readline().strip().lower() in _YES


def register(loaded: LoadedSettings, force: bool, wait: float) -> int:
    """Register now when the daemon would, or always with ``force``; retry
    transient failures for ``wait`` seconds. Return the exit code."""
    settings = loaded.settings
    if force and settings.project_token is None:
        raise SettingsError(
            f"jibrild register --force needs a project token; {HOW_TO_SET_PROJECT}"
        )

    store = TokenStore(settings.agent_token_path)
    _lock(store, "register", prepare=True)
    try:
        holder = asyncio.run(_obtain(loaded, store, force, wait))
    finally:
        store.unlock()

    if not holder.registered:
        print(
            f"already registered as agent {holder.agent_id()} "
            f"(agent token {store.token_path}); jibrild register --force "
            "registers again and replaces it"
        )
        return ExitCode.OK
    if not holder.stored:
        raise TokenStoreError(
            f"registered as agent {holder.agent_id()}, but its agent token "
            "could not be stored, as the error above says; fix that, delete "
            "the unused agent in Garnet and run jibrild register again"
        )
    return ExitCode.OK


async def _obtain(
    loaded: LoadedSettings, store: TokenStore, force: bool, wait: float
) -> AgentTokenHolder:
    """Obtain an agent token as the daemon does. Raise ApiUnavailableError
    when ``wait`` runs out or a signal arrives before that."""
    settings = loaded.settings
    facts = read_host_facts()
    runtime = detect_and_log(Path("/"), os.environ, facts, settings)
    stop = asyncio.Event()
    stopped_by: list[str] = []

    def stop_for(reason: str) -> None:
        stopped_by.append(reason)
        stop.set()

    loop = asyncio.get_running_loop()
    for number in (signal.SIGINT, signal.SIGTERM):
        name = signal.Signals(number).name
        loop.add_signal_handler(number, stop_for, f"registration stopped by {name}")
    # NOTE: the last failure's log line gives the full backoff delay as
    # next_attempt_in, even when the deadline comes first.
    loop.call_later(
        wait, stop_for, f"registration did not succeed within --wait {wait:g}s"
    )

    # This command is never the service's main process, so it sends
    # nothing to systemd's notify socket.
    os.environ.pop("NOTIFY_SOCKET", None)
    async with GarnetClient(
        settings.api_url,
        settings.request_timeout,
        f"jibrild/{__version__}",
        settings.ca_file,
        settings.allow_insecure_http,
    ) as client:
        holder = AgentTokenHolder(
            store=store,
            registrar=Registrar(client, Notifier(), stop, lambda _status: None),
            settings=lambda: settings,
            read_facts=read_host_facts,
            runtime=runtime,
            machine_id=facts.machine_id or store.machine_id(),
            on_status=lambda _status: None,
            project_token_origin=lambda: loaded.origins.get(
                "project_token", "the settings"
            ),
        )
        if not await holder.obtain(force=force):
            raise ApiUnavailableError(
                f"{stopped_by[0]}; the stored agent identity is unchanged. "
                "Check the API URL, the network and the warnings above, then "
                "run jibrild register again"
            )
    return holder


def _lock(store: TokenStore, command: str, prepare: bool = False) -> None:
    """Take the state folder's lock, creating the folder first when
    ``prepare``; name the daemon holding it and the next step otherwise."""
    try:
        if prepare:
            store.prepare()
        else:
            store.lock()
    except AlreadyRunningError as error:
        raise AlreadyRunningError(
            f"another jibrild (PID {error.holder}) is using {store.folder}; "
            f"stop jibril first (systemctl stop jibril), then run jibrild "
            f"{command} again",
            error.holder,
        ) from None

    for warning in store.take_warnings():
        get_logger().warning(warning)
