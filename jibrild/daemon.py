"""The daemon's lifecycle: start-up, the agent token, heartbeats, signals,
reload and shutdown."""

import asyncio
import os
import signal
import traceback
from collections.abc import Mapping
from pathlib import Path

from jibrild import __version__
from jibrild.agent_token import AgentTokenHolder
from jibrild.api import GarnetClient
from jibrild.environment import RuntimeEnvironment, detect_runtime_environment
from jibrild.errors import ExitCode, JibrildError, SettingsError
from jibrild.heartbeat import HeartbeatLoop
from jibrild.hostfacts import HostFacts, read_host_facts
from jibrild.logs import configure_logs, get_logger, remember_project_token
from jibrild.notify import Notifier
from jibrild.registration import Registrar
from jibrild.reload import (
    RESTART_FIELDS,
    SettingsReloader,
    log_settings_warnings,
    log_unknown_variables,
    setting_key,
)
from jibrild.settings import LoadedSettings, Settings
from jibrild.tokenstore import TokenStore

# Shutdown waits this long for tasks to finish before giving up on them.
SHUTDOWN_TIMEOUT = 5.0

# SIGHUPs closer together than this are merged into one reload.
RELOAD_DELAY = 0.2

# Under a watchdog, a request may take at most this fraction of half the
# watchdog timeout (WATCHDOG_USEC).
WATCHDOG_TIMEOUT_FRACTION = 0.8


class Daemon:
    """One run of the agent daemon."""

    def __init__(
        self,
        loaded: LoadedSettings,
        reloader: SettingsReloader,
        root: Path = Path("/"),
        environ: Mapping[str, str] | None = None,
    ) -> None:
        self.settings: Settings = loaded.settings
        self.origins = loaded.origins
        self.reloader = reloader
        self.root = root
        self.environ = os.environ if environ is None else environ
        self.notifier = Notifier()
        self.store = TokenStore(self.settings.agent_token_path)
        self.stop = asyncio.Event()
        self.wake = asyncio.Event()
        self._ready_sent = False
        self._signals = 0
        # The last status the agent reported, shown again once a failed
        # reload is followed by one that succeeds.
        self._agent_status = ""
        self._reload_pending = False

    async def run(self) -> int:
        """Run until SIGTERM or SIGINT; return the exit code."""
        log = get_logger()
        self._install_signal_handlers()
        watchdog = asyncio.create_task(self._watchdog())
        main = asyncio.create_task(self._main())
        stop = asyncio.create_task(self.stop.wait())
        exit_code = 0
        try:
            await asyncio.wait((main, stop), return_when=asyncio.FIRST_COMPLETED)
            if main.done():
                main.result()
        except JibrildError as error:
            log.error(str(error), exit_code=int(error.exit_code))
            self.notifier.set_status(f"failed: {error}")
            exit_code = error.exit_code
        except Exception as error:
            log.error(
                "internal error",
                error=f"{type(error).__name__}: {error}",
                exit_code=int(ExitCode.INTERNAL),
            )
            log.debug("internal error traceback", traceback=traceback.format_exc())
            self.notifier.set_status(f"failed: internal error: {error}")
            exit_code = ExitCode.INTERNAL
        finally:
            # A failure's status stays for `systemctl status` to show.
            self.notifier.stopping(self.notifier.status if exit_code else "stopping")
            stop.cancel()
            cancelled = await _cancel(main, watchdog)
            self._ignore_stop_signals()
            self.store.unlock()
            self.notifier.close()
            log.info("stopped", cancelled_tasks=cancelled)
        return exit_code

    async def _main(self) -> None:
        self.store.prepare()
        for warning in self.store.take_warnings():
            get_logger().warning(warning)
        facts = read_host_facts(self.root)
        runtime = self._detect(facts)

        async with GarnetClient(
            self.settings.api_url,
            self._request_timeout(),
            f"jibrild/{__version__}",
            self.settings.ca_file,
            self.settings.allow_insecure_http,
        ) as client:
            registrar = Registrar(
                client,
                self.notifier,
                self.stop,
                on_transient_failure=self._report_status,
            )
            holder = AgentTokenHolder(
                store=self.store,
                registrar=registrar,
                settings=lambda: self.settings,
                read_facts=lambda: read_host_facts(self.root),
                runtime=runtime,
                machine_id=facts.machine_id or self.store.machine_id(),
                on_status=self._report_status,
                project_token_origin=lambda: self.origins.get(
                    "project_token", "the settings"
                ),
            )
            if not await holder.obtain():
                return

            loop = HeartbeatLoop(
                client=client,
                notifier=self.notifier,
                stop=self.stop,
                wake=self.wake,
                interval=lambda: self.settings.heartbeat_interval,
                agent_token=holder.current,
                healthy_status=holder.status,
                on_rejected=holder.rejected,
                on_success=holder.heartbeat_ok,
            )
            await loop.run()

    def _detect(self, facts: HostFacts) -> RuntimeEnvironment:
        return detect_and_log(self.root, self.environ, facts, self.settings)

    def _request_timeout(self) -> float:
        """Return api.request-timeout, cut below half of systemd's watchdog
        timeout, so a hung request ends, and is logged and shown in STATUS=,
        well before the watchdog's limit of silence."""
        configured = self.settings.request_timeout
        half_watchdog = self.notifier.watchdog_interval
        if half_watchdog is None or configured < half_watchdog:
            return configured

        timeout = half_watchdog * WATCHDOG_TIMEOUT_FRACTION
        get_logger().warning(
            "request timeout cut to below half the watchdog timeout",
            setting="api.request-timeout",
            configured=f"{configured:g}s",
            watchdog_timeout=f"{half_watchdog * 2:g}s",
            request_timeout=f"{timeout:g}s",
        )
        return timeout

    def _report_status(self, status: str) -> None:
        """Show a status. The first one also sends READY=1, because by then
        the agent token is held or a first attempt failed for a reason that
        only time can fix."""
        self._agent_status = status
        if self._ready_sent:
            self.notifier.set_status(status)
            return
        self._ready_sent = True
        self.notifier.ready(status)

    async def _watchdog(self) -> None:
        """Ping systemd's watchdog from the event loop, so a stuck loop
        stops the pings and systemd restarts the daemon."""
        interval = self.notifier.watchdog_interval
        if interval is None:
            return
        while True:
            self.notifier.ping_watchdog()
            await asyncio.sleep(interval)

    def _install_signal_handlers(self) -> None:
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGTERM, self._request_stop, "SIGTERM")
        loop.add_signal_handler(signal.SIGINT, self._request_stop, "SIGINT")
        loop.add_signal_handler(signal.SIGHUP, self._schedule_reload)

    def _ignore_stop_signals(self) -> None:
        """Once shut down, a late stop signal has nothing left to force."""
        loop = asyncio.get_running_loop()
        for number in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(number)
            signal.signal(number, signal.SIG_IGN)

    def _request_stop(self, name: str) -> None:
        self._signals += 1
        if self._signals > 1:
            get_logger().warning("second stop signal; exiting at once", signal=name)
            os._exit(1)
        get_logger().info("stopping", signal=name)
        self.stop.set()

    def _schedule_reload(self) -> None:
        """Reload shortly. SIGHUPs that arrive meanwhile, such as from a
        burst of `systemctl reload`, are merged into that one reload."""
        if self._reload_pending:
            return
        self._reload_pending = True
        asyncio.get_running_loop().call_later(RELOAD_DELAY, self._reload)

    def _reload(self) -> None:
        self._reload_pending = False
        log = get_logger()
        # Before READY=1, a RELOADING=1 and its closing READY=1 would tell
        # systemd that start-up is done.
        if self._ready_sent:
            self.notifier.reloading()
        try:
            loaded = self.reloader.load()
        except SettingsError as error:
            log_unknown_variables(error.unknown_variables)
            log.error("reload failed; keeping the previous settings", error=str(error))
            self.notifier.set_status(f"reload failed, previous settings kept: {error}")
            self._reloaded()
            return

        changed = self.reloader.changed(self.settings, loaded.settings)
        log_settings_warnings(loaded)
        for name in sorted(RESTART_FIELDS.intersection(changed)):
            log.warning(
                "setting changed; restart to apply it", setting=setting_key(name)
            )
        if "labels" in changed:
            log.info("labels changed; they are sent at the next registration")
        remember_project_token(loaded.settings)
        self.settings = loaded.settings
        self.origins = loaded.origins
        configure_logs(self.settings.log_level, self.environ)
        names = ",".join(setting_key(name) for name in changed)
        log.info("settings reloaded", changed=names or "nothing")
        if self._agent_status:
            self.notifier.set_status(self._agent_status)
        self.wake.set()
        self._reloaded()

    def _reloaded(self) -> None:
        if self._ready_sent:
            self.notifier.reloaded()


def detect_and_log(
    root: Path, environ: Mapping[str, str], facts: HostFacts, settings: Settings
) -> RuntimeEnvironment:
    """Detect the runtime environment and log it with the notes of the
    detection."""
    log = get_logger()
    runtime = detect_runtime_environment(
        root,
        environ,
        hostname=facts.hostname,
        cluster_name=settings.cluster_name,
        job=settings.job,
        override=settings.runtime_environment,
    )
    for note in (*facts.notes, *runtime.notes):
        log.info(note)
    details = {"engine": runtime.engine} if runtime.engine else {}
    log.info(f"detected runtime environment: {runtime.name}", **details)
    return runtime


async def _cancel(*tasks: asyncio.Task[object]) -> int:
    """Cancel the tasks still running and wait for them, within bounds;
    return how many were cancelled."""
    pending = [task for task in tasks if not task.done()]
    for task in pending:
        task.cancel()
    if pending:
        await asyncio.wait(pending, timeout=SHUTDOWN_TIMEOUT)
    return len(pending)
