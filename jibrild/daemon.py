"""The daemon's lifecycle: start-up, the agent token, heartbeats, signals,
reload and shutdown."""

import asyncio
import os
import signal
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path

from pydantic import SecretStr

from jibrild import __version__
from jibrild.api import AgentTokenRejectedError, GarnetClient
from jibrild.environment import RuntimeEnvironment, detect_runtime_environment
from jibrild.errors import JibrildError, SettingsError
from jibrild.heartbeat import HeartbeatLoop
from jibrild.hostfacts import HostFacts, read_host_facts
from jibrild.logs import configure_logs, get_logger, remember_secret
from jibrild.notify import Notifier
from jibrild.registration import Registrar
from jibrild.registration_body import build_registration_body
from jibrild.reload import RESTART_FIELDS, SettingsReloader
from jibrild.settings import LoadedSettings, Settings
from jibrild.tokenstore import Identity, StoredToken, TokenStore, token_fingerprint

# While no project token can replace a rejected agent token, check back at
# this pace: slow enough to spare the API, quick enough to notice a fix.
DEGRADED_RETRY_SECONDS = 300.0

# Shutdown waits this long for tasks to finish before giving up on them.
SHUTDOWN_TIMEOUT = 5.0


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
        self.reloader = reloader
        self.root = root
        self.environ = os.environ if environ is None else environ
        self.notifier = Notifier()
        self.store = TokenStore(self.settings.agent_token_path)
        self.stop = asyncio.Event()
        self.wake = asyncio.Event()
        self.agent_token: SecretStr | None = None
        self.identity: Identity | None = None
        self.stored = False
        self._ready_sent = False
        self._signals = 0

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
        finally:
            self.notifier.stopping()
            cancelled = await _cancel(main, stop, watchdog)
            self.store.unlock()
            self.notifier.close()
            log.info("stopped", cancelled_tasks=cancelled)
        return exit_code

    async def _main(self) -> None:
        self.store.prepare()
        self.store.lock()
        facts = read_host_facts(self.root)
        runtime = self._detect(facts)

        async with GarnetClient(
            self.settings.api_url,
            self.settings.request_timeout,
            f"jibrild/{__version__}",
            self.settings.ca_file,
        ) as client:
            registrar = Registrar(
                client,
                self.notifier,
                self.stop,
                on_transient_failure=self._ready_once,
            )
            machine_id = facts.machine_id or self.store.machine_id()
            await self._obtain_agent_token(registrar, facts, runtime, machine_id)
            if self.agent_token is None:
                return

            loop = HeartbeatLoop(
                client=client,
                notifier=self.notifier,
                stop=self.stop,
                wake=self.wake,
                interval=lambda: self.settings.heartbeat_interval,
                agent_token=self._held_token,
                healthy_status=self._healthy_status,
                on_rejected=lambda error: self._agent_token_rejected(
                    error, registrar, facts, runtime, machine_id
                ),
            )
            await loop.run()

    def _detect(self, facts: HostFacts) -> RuntimeEnvironment:
        log = get_logger()
        runtime = detect_runtime_environment(
            self.root,
            self.environ,
            hostname=facts.hostname,
            cluster_name=self.settings.cluster_name,
            job=self.settings.job,
            override=self.settings.runtime_environment,
        )
        for note in (*facts.notes, *runtime.notes):
            log.info(note)
        details = {"engine": runtime.engine} if runtime.engine else {}
        log.info(f"detected runtime environment: {runtime.name}", **details)
        return runtime

    async def _obtain_agent_token(
        self,
        registrar: Registrar,
        facts: HostFacts,
        runtime: RuntimeEnvironment,
        machine_id: str,
    ) -> None:
        stored = self._load_stored()
        reason = self._reason_to_register(stored, machine_id)
        if reason is None and stored is not None:
            self._hold(stored.token, stored.identity, stored=True)
            agent_id = stored.identity.agent_id if stored.identity else "unknown"
            get_logger().info(
                "using stored agent token",
                path=str(self.store.token_path),
                agent_id=agent_id,
            )
            self._ready_once()
            return

        reason = reason or "no stored agent token"
        await self._register(registrar, facts, runtime, machine_id, reason)

    def _load_stored(self) -> StoredToken | None:
        stored = self.store.load()
        for warning in self.store.warnings:
            get_logger().warning(warning)
        self.store.warnings.clear()
        return stored

    def _reason_to_register(
        self, stored: StoredToken | None, machine_id: str
    ) -> str | None:
        """Return why the stored agent token cannot be used, or None."""
        if stored is None:
            return "no stored agent token"
        identity = stored.identity
        if identity is None:
            return None
        if identity.machine_id != machine_id:
            return "stored agent token was issued on another machine"
        if identity.api_url.rstrip("/") != self.settings.api_url.rstrip("/"):
            return "stored agent token belongs to another API URL"
        return None

    async def _register(
        self,
        registrar: Registrar,
        facts: HostFacts,
        runtime: RuntimeEnvironment,
        machine_id: str,
        reason: str,
    ) -> None:
        log = get_logger()
        project_token = self.settings.project_token
        if project_token is None:
            raise SettingsError(
                f"{reason} at {self.store.token_path} and no project token is "
                "set; set GARNET_API_TOKEN in /etc/default/jibril, "
                "GARNET_API_TOKEN_FILE, or api.token in /etc/jibril/config.yaml"
            )
        if reason != "no stored agent token":
            log.warning("registering again", reason=reason)

        body = build_registration_body(
            facts,
            runtime,
            version=__version__,
            machine_id=machine_id,
            labels=self.settings.labels,
        )
        registration = await registrar.register(project_token, body)
        if registration is None:
            return

        identity = Identity(
            agent_id=registration.agent_id,
            agent_kind=runtime.agent_kind,
            api_url=self.settings.api_url,
            machine_id=machine_id,
            registered_at=datetime.now(UTC).isoformat(timespec="seconds"),
            token_sha256=token_fingerprint(registration.agent_token),
        )
        self._hold(registration.agent_token, identity, stored=False)
        self._store_held()

        log.info("agent registration complete")
        log.info(f"agent kind: {runtime.agent_kind}")
        if self.stored:
            log.info(f"token stored at: {self.store.token_path}")
        log.info("registered", agent_id=registration.agent_id)
        self._ready_once()
        self.notifier.set_status(self._healthy_status())

    def _hold(self, token: SecretStr, identity: Identity | None, stored: bool) -> None:
        remember_secret(token.get_secret_value())
        self.agent_token = token
        self.identity = identity
        self.stored = stored

    def _store_held(self) -> None:
        """Write the held agent token; on failure keep it in memory, so the
        agent stays registered, and try again after the next heartbeat."""
        if self.stored or self.agent_token is None or self.identity is None:
            return
        try:
            self.store.save(self.agent_token, self.identity)
        except JibrildError as error:
            get_logger().error(
                "cannot store agent token; keeping it in memory",
                error=str(error),
            )
            return
        self.stored = True

    def _held_token(self) -> SecretStr:
        if self.agent_token is None:
            raise RuntimeError("heartbeat without an agent token")
        self._store_held()
        return self.agent_token

    def _healthy_status(self) -> str:
        agent_id = self.identity.agent_id if self.identity else "unknown"
        status = f"registered as {agent_id}"
        return status if self.stored else status + "; agent token not stored"

    async def _agent_token_rejected(
        self,
        error: AgentTokenRejectedError,
        registrar: Registrar,
        facts: HostFacts,
        runtime: RuntimeEnvironment,
        machine_id: str,
    ) -> float:
        """Register again when a project token is at hand; otherwise say what
        to do and check back slowly. Return the seconds to wait."""
        log = get_logger()
        log.warning("agent token rejected", status=error.status)
        if self.settings.project_token is not None:
            self.stored = True  # the old token is replaced, not kept pending
            await self._register(registrar, facts, runtime, machine_id, str(error))
            return self.settings.heartbeat_interval

        log.error(
            "agent token rejected and no project token is set",
            fix="set GARNET_API_TOKEN in /etc/default/jibril, then "
            "'systemctl reload jibril'",
        )
        self.notifier.set_status(
            f"{error}; set a project token and reload to register again"
        )
        return max(self.settings.heartbeat_interval, DEGRADED_RETRY_SECONDS)

    def _ready_once(self) -> None:
        if not self._ready_sent:
            self._ready_sent = True
            self.notifier.ready(self.notifier.status or "starting")

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
        loop.add_signal_handler(signal.SIGHUP, self._reload)

    def _request_stop(self, name: str) -> None:
        self._signals += 1
        if self._signals > 1:
            get_logger().warning("second stop signal; exiting at once", signal=name)
            os._exit(1)
        get_logger().info("stopping", signal=name)
        self.stop.set()

    def _reload(self) -> None:
        log = get_logger()
        self.notifier.reloading()
        try:
            loaded = self.reloader.load()
        except SettingsError as error:
            log.error("reload failed; keeping the previous settings", error=str(error))
            self.notifier.reloaded()
            return

        changed = self.reloader.changed(self.settings, loaded.settings)
        for warning in loaded.warnings:
            log.warning(warning)
        for name in sorted(RESTART_FIELDS.intersection(changed)):
            log.warning("setting changed; restart to apply it", setting=name)
        self.settings = loaded.settings
        configure_logs(self.settings.log_level, self.environ)
        log.info("settings reloaded", changed=",".join(changed) or "nothing")
        self.wake.set()
        self.notifier.reloaded()


async def _cancel(*tasks: asyncio.Task[object]) -> int:
    """Cancel the tasks still running and wait for them, within bounds;
    return how many were cancelled."""
    pending = [task for task in tasks if not task.done()]
    for task in pending:
        task.cancel()
    if pending:
        await asyncio.wait(pending, timeout=SHUTDOWN_TIMEOUT)
    return len(pending)
