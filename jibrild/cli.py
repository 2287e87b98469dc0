"""The jibrild command line: the daemon and its inspection commands."""

import argparse
import asyncio
import json
import os
import stat
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from jibrild import __version__
from jibrild.environment import detect_runtime_environment
from jibrild.errors import ExitCode, JibrildError, SettingsError
from jibrild.hostfacts import read_host_facts
from jibrild.logs import configure_logs, get_logger, remember_project_token
from jibrild.registration_body import build_registration_body
from jibrild.reload import (
    SettingsReloader,
    log_settings_warnings,
    log_unknown_variables,
)
from jibrild.settings import (
    LoadedSettings,
    add_settings_options,
    options_from_args,
    render_settings,
)
from jibrild.settings_copies import (
    copy_settings,
    files_to_copy,
    read_copies,
    settings_paths,
    signal_reload,
)
from jibrild.sources.keys import SETTINGS_COPIES_ENV_VAR
from jibrild.tokenstore import Identity, TokenStore

EXIT_CODES = """\
exit codes:
  0   stopped on SIGTERM or SIGINT, or the command succeeded
  1   unexpected internal error, a second stop signal forced the exit, or
      (reset) the removal was not confirmed
  2   invalid command line, or (reset) no terminal to confirm on and no --yes
  3   (status) no agent token on disk
  65  registration rejected by the API (HTTP 400): the request body is wrong
  69  (register) the API kept failing until --wait ran out, or a signal
      stopped the command; the stored agent identity is unchanged
  73  the agent token file or its folder cannot be used
  75  another jibrild holds the state folder
  77  project token rejected by the API (HTTP 401 or 403)
  78  invalid or missing settings
"""

COMMANDS = ("run", "config", "detect", "status", "register", "reset", "copy-settings")

# `jibrild register` retries transient failures for this long by default.
DEFAULT_REGISTER_WAIT = 300.0

# As with systemctl status, 3 means "not running here": no identity on disk.
_NOT_REGISTERED = 3


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line and return the exit code."""
    args = _parse(_with_command(list(sys.argv[1:] if argv is None else argv)))
    command: Callable[[argparse.Namespace], int] = args.handler
    try:
        return command(args)
    except JibrildError as error:
        get_logger().error(str(error), exit_code=int(error.exit_code))
        return error.exit_code
    except KeyboardInterrupt:
        return ExitCode.OK


def _parse(argv: list[str]) -> argparse.Namespace:
    """Parse the command line; unknown arguments are named, but values that
    are not options are only counted, since one may be a pasted token."""
    parser = _parser()
    args, extras = parser.parse_known_args(argv)
    misplaced = [extra for extra in extras if extra in COMMANDS]
    if misplaced:
        command = misplaced[0]
        parser.error(f"put the command first: jibrild {command} [options]")
    if extras:
        options = [extra.split("=", 1)[0] for extra in extras if extra.startswith("-")]
        hidden = len(extras) - len(options)
        if hidden:
            options.append(f"{hidden} more value(s) not shown")
        parser.error("unrecognized arguments: " + ", ".join(options))
    return args


def _with_command(argv: list[str]) -> list[str]:
    """Make ``run`` the command when none is given."""
    if argv and (argv[0] in COMMANDS or argv[0] in ("-h", "--help", "--version")):
        return argv
    return ["run", *argv]


def _parser() -> argparse.ArgumentParser:
    # allow_abbrev=False: "--agent-token SECRET" must not be taken as
    # --agent-token-path and its value shown back in an error.
    parser = argparse.ArgumentParser(
        allow_abbrev=False,
        prog="jibrild",
        description="Connect this host to the Garnet API: register once with "
        "the project token, then send heartbeats with the agent token.",
        epilog=EXIT_CODES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"jibrild {__version__}")
    commands = parser.add_subparsers(title="commands", metavar="COMMAND")

    _command(commands, "run", _run, "run the daemon in the foreground (default)")
    config = _command(commands, "config", _config, "print the effective settings")
    config.add_argument(
        "--show-origin",
        action="store_true",
        help="say where each value came from",
    )
    _command(
        commands,
        "detect",
        _detect,
        "print the runtime environment and the registration body, as JSON",
    )
    _command(commands, "status", _status, "print the agent identity on disk")
    register = _command(
        commands,
        "register",
        _register,
        "register now with the project token and store the agent identity, "
        "unless one is stored and usable; then exit",
    )
    register.add_argument(
        "--force",
        action="store_true",
        help="register even when a usable agent identity is stored, and replace it",
    )
    register.add_argument(
        "--wait",
        type=_positive_seconds,
        default=DEFAULT_REGISTER_WAIT,
        metavar="SECONDS",
        help="retry transient failures (API unreachable, HTTP 429 or 5xx) for "
        f"up to this many seconds, then exit 69 (default {DEFAULT_REGISTER_WAIT:g})",
    )
    reset = _command(
        commands,
        "reset",
        _reset,
        "remove the agent identity (agent token, identity record, machine-id "
        "file) so that a disk image can be cloned; the next start registers "
        "again",
    )
    reset.add_argument(
        "--yes",
        action="store_true",
        help="remove without asking for confirmation on the terminal",
    )
    copy = _command(
        commands,
        "copy-settings",
        _copy_settings,
        "copy the root-only settings files for jibril.service (run as root by "
        "its ExecStartPre= and ExecReload=)",
    )
    copy.add_argument(
        "--reload-pid",
        type=int,
        metavar="PID",
        help="then send SIGHUP to this daemon, so it loads the copies",
    )
    return parser


def _command(
    commands: "argparse._SubParsersAction[argparse.ArgumentParser]",
    name: str,
    handler: Callable[[argparse.Namespace], int],
    summary: str,
) -> argparse.ArgumentParser:
    parser = commands.add_parser(
        name,
        allow_abbrev=False,
        help=summary,
        description=summary,
        epilog=EXIT_CODES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.set_defaults(handler=handler)
    parser.add_argument(
        "--config",
        type=Path,
        metavar="PATH",
        help="YAML settings file (default /etc/jibril/config.yaml)",
    )
    parser.add_argument(
        "--env-file",
        type=Path,
        metavar="PATH",
        help="KEY=VALUE settings file (default /etc/default/jibril)",
    )
    add_settings_options(parser)
    return parser


def _load(args: argparse.Namespace) -> LoadedSettings:
    configure_logs("info")
    copies = os.environ.get(SETTINGS_COPIES_ENV_VAR)
    if copies:
        read_copies(Path(copies), settings_paths(args.config, args.env_file))
    try:
        loaded = _reloader(args).load()
    except SettingsError as error:
        log_unknown_variables(error.unknown_variables)
        raise

    configure_logs(loaded.settings.log_level)
    remember_project_token(loaded.settings)
    log_settings_warnings(loaded)
    return loaded


def _run(args: argparse.Namespace) -> int:
    # aiohttp is heavy to import; only the daemon needs it.
    from jibrild.daemon import Daemon  # noqa: PLC0415

    loaded = _load(args)
    return asyncio.run(Daemon(loaded, _reloader(args)).run())


def _reloader(args: argparse.Namespace) -> SettingsReloader:
    # The first load goes through the reloader too, so that values systemd
    # copied from /etc/default/jibril into the environment are reported as
    # the file's, with its line, from the start.
    return SettingsReloader(
        options_from_args(args), dict(os.environ), args.config, args.env_file
    )


def _positive_seconds(text: str) -> float:
    try:
        seconds = float(text)
    except ValueError:
        seconds = -1.0
    if not 0 < seconds < float("inf"):
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}")
    return seconds


def _register(args: argparse.Namespace) -> int:
    # Imported here because aiohttp is heavy to import.
    from jibrild.identity_commands import register  # noqa: PLC0415

    return register(_load(args), force=args.force, wait=args.wait)


def _reset(args: argparse.Namespace) -> int:
    from jibrild.identity_commands import reset  # noqa: PLC0415

    return reset(_load(args).settings.agent_token_path, yes=args.yes)


def _copy_settings(args: argparse.Namespace) -> int:
    configure_logs("info")
    folder = os.environ.get("RUNTIME_DIRECTORY")
    if not folder:
        raise SettingsError(
            "RUNTIME_DIRECTORY is not set; copy-settings runs as root from "
            "jibril.service, which sets RuntimeDirectory=jibril"
        )

    paths = settings_paths(args.config, args.env_file)
    # RUNTIME_DIRECTORY may list several folders; the unit names one.
    copy_settings(Path(folder.split(":")[0]), files_to_copy(paths, os.environ))
    if args.reload_pid is not None:
        signal_reload(args.reload_pid)
    return ExitCode.OK


def _config(args: argparse.Namespace) -> int:
    loaded = _load(args)
    print(render_settings(loaded, show_origin=args.show_origin), end="")
    return ExitCode.OK


def _detect(args: argparse.Namespace) -> int:
    settings = _load(args).settings
    facts = read_host_facts()
    runtime = detect_runtime_environment(
        Path("/"),
        os.environ,
        hostname=facts.hostname,
        cluster_name=settings.cluster_name,
        job=settings.job,
        override=settings.runtime_environment,
    )
    machine_id = facts.machine_id or _stored_machine_id(
        TokenStore(settings.agent_token_path)
    )
    report = {
        "runtime_environment": runtime.name,
        "container_engine": runtime.engine,
        "agent_kind": runtime.agent_kind,
        "notes": [*facts.notes, *runtime.notes],
        "registration_body": build_registration_body(
            facts,
            runtime,
            version=__version__,
            machine_id=machine_id,
            labels=settings.labels,
        ),
    }
    print(json.dumps(report, indent=2))
    return ExitCode.OK


def _stored_machine_id(store: TokenStore) -> str:
    """Return the state folder's machine id without creating one."""
    try:
        return store.machine_id_path.read_text().strip() or "(none yet)"
    except OSError:
        return "(none yet)"


def _status(args: argparse.Namespace) -> int:
    settings = _load(args).settings
    store = TokenStore(settings.agent_token_path)
    stored = store.load()
    for warning in store.take_warnings():
        get_logger().warning(warning)

    lines = {"token file": str(store.token_path)}
    if stored is None:
        lines["state"] = "not registered (no agent token on disk)"
    else:
        mode = stat.S_IMODE(store.token_path.stat().st_mode)
        lines["token file mode"] = f"{mode:04o}"
        identity = stored.identity
        if identity is None:
            lines["state"] = "agent token present, identity record missing"
        else:
            lines["state"] = "registered"
            lines["agent id"] = identity.agent_id
            lines["agent kind"] = identity.agent_kind
            lines["api url"] = identity.api_url
            lines["registered at"] = identity.registered_at
            lines["machine id"] = identity.machine_id
            note = _identity_note(identity, settings.api_url, store)
            if note:
                lines["note"] = note

    width = max(len(key) for key in lines) + 1
    for key, value in lines.items():
        print(f"{key + ':':<{width}} {value}")
    return ExitCode.OK if stored is not None else _NOT_REGISTERED


def _identity_note(identity: Identity, api_url: str, store: TokenStore) -> str:
    """Say why the daemon would not use this identity, or return ''."""
    machine_id = read_host_facts().machine_id or _stored_machine_id(store)
    if identity.machine_id != machine_id:
        return "issued on another machine; the daemon will register again"
    if identity.api_url.rstrip("/") != api_url.rstrip("/"):
        return f"issued by another API than {api_url}; the daemon will register again"
    return ""
