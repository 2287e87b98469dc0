"""The agent token in memory: loaded from disk, or got by registration,
and replaced by registering again when the API rejects it."""

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from pydantic import SecretStr

from jibrild import __version__
from jibrild.api import AgentTokenRejectedError
from jibrild.environment import RuntimeEnvironment
from jibrild.errors import JibrildError, ProjectTokenRejectedError, SettingsError
from jibrild.hostfacts import HostFacts
from jibrild.logs import get_logger, remember_secret
from jibrild.notify import Notifier
from jibrild.registration import Registrar
from jibrild.registration_body import build_registration_body
from jibrild.settings import Settings
from jibrild.tokenstore import Identity, StoredToken, TokenStore, token_fingerprint

# While no project token can replace a rejected agent token, check back at
# this pace: slow enough to spare the API, quick enough to notice a fix.
DEGRADED_RETRY_SECONDS = 300.0


@dataclass
class AgentTokenHolder:
    """Hold the agent token for every API call.

    ``settings`` is read on each use, so a reload that sets a new project
    token is used by the next registration.
    """

    store: TokenStore
    registrar: Registrar
    notifier: Notifier
    settings: Callable[[], Settings]
    facts: HostFacts
    runtime: RuntimeEnvironment
    machine_id: str
    on_ready: Callable[[], None]
    project_token_origin: Callable[[], str] = lambda: "the settings"
    token: SecretStr | None = None
    identity: Identity | None = None
    stored: bool = False
    _store_failed: bool = False

    async def obtain(self) -> bool:
        """Use the stored agent token, or register; return False when the
        daemon stopped before a token was held."""
        stored = self._load_stored()
        reason = self._reason_to_register(stored)
        if reason is None and stored is not None:
            self._hold(stored.token, stored.identity, stored=True)
            get_logger().info(
                "using stored agent token",
                path=str(self.store.token_path),
                agent_id=self.agent_id(),
            )
            self.notifier.set_status(self.status())
            self.on_ready()
            return True

        if reason is not None and stored is not None:
            get_logger().warning("registering again", reason=reason)
        await self._register()
        return self.token is not None

    def current(self) -> SecretStr:
        """Return the held agent token, storing it first if an earlier
        write failed."""
        if self.token is None:
            raise RuntimeError("no agent token is held")
        self._store_held()
        return self.token

    def agent_id(self) -> str:
        """Return the agent id, or 'unknown' when no identity record has it."""
        return self.identity.agent_id if self.identity else "unknown"

    def status(self) -> str:
        """Return the STATUS= text of a healthy agent."""
        status = f"registered as {self.agent_id()}"
        return status if self.stored else status + "; agent token not stored"

    async def rejected(self, error: AgentTokenRejectedError) -> float:
        """Register again when a project token is at hand; otherwise log what
        to do and check back slowly. Return the seconds to wait."""
        log = get_logger()
        settings = self.settings()
        if settings.project_token is not None:
            log.warning("agent token rejected; registering again", status=error.status)
            await self._register()
            return settings.heartbeat_interval

        log.error(
            "agent token rejected and no project token is set",
            status=error.status,
            fix="set GARNET_API_TOKEN or GARNET_API_TOKEN_FILE, "
            "then 'systemctl reload jibril'",
        )
        self.notifier.set_status(
            f"{error}; set a project token and reload to register again"
        )
        return max(settings.heartbeat_interval, DEGRADED_RETRY_SECONDS)

    def _load_stored(self) -> StoredToken | None:
        stored = self.store.load()
        for warning in self.store.warnings:
            get_logger().warning(warning)
        self.store.warnings.clear()
        return stored

    def _reason_to_register(self, stored: StoredToken | None) -> str | None:
        """Return why the stored agent token cannot be used, or None."""
        if stored is None:
            return "no stored agent token"
        identity = stored.identity
        if identity is None:
            return None
        if identity.machine_id != self.machine_id:
            return "stored agent token was issued on another machine"
        if identity.api_url.rstrip("/") != self._api_url().rstrip("/"):
            return "stored agent token belongs to another API URL"
        return None

    def _api_url(self) -> str:
        # The client keeps the URL it started with; a reload that changes
        # the setting applies at the next start.
        return self.registrar.client.base_url

    async def _register(self) -> None:
        settings = self.settings()
        if settings.project_token is None:
            raise SettingsError(
                f"no usable agent token at {self.store.token_path} and no "
                "project token is set; set GARNET_API_TOKEN, "
                "GARNET_API_TOKEN_FILE or run-time.api.token"
            )

        body = build_registration_body(
            self.facts,
            self.runtime,
            version=__version__,
            machine_id=self.machine_id,
            labels=settings.labels,
        )
        try:
            registration = await self.registrar.register(settings.project_token, body)
        except ProjectTokenRejectedError as error:
            raise ProjectTokenRejectedError(
                f"{error}; check the project token set by {self.project_token_origin()}"
            ) from None
        if registration is None:
            return

        identity = Identity(
            agent_id=registration.agent_id,
            agent_kind=self.runtime.agent_kind,
            api_url=self._api_url(),
            machine_id=self.machine_id,
            registered_at=datetime.now(UTC).isoformat(timespec="seconds"),
            token_sha256=token_fingerprint(registration.agent_token),
        )
        self._hold(registration.agent_token, identity, stored=False)
        self._store_held()
        self._log_registration()

    def _log_registration(self) -> None:
        # These lines and their order are what operators grep for.
        log = get_logger()
        log.info("agent registration complete")
        log.info(f"agent kind: {self.runtime.agent_kind}")
        if self.stored:
            log.info(f"token stored at: {self.store.token_path}")
        log.info("registered", agent_id=self.agent_id())
        self.notifier.set_status(self.status())
        self.on_ready()

    def _hold(self, token: SecretStr, identity: Identity | None, stored: bool) -> None:
        remember_secret(token.get_secret_value())
        self.token = token
        self.identity = identity
        self.stored = stored

    def _store_held(self) -> None:
        """Write the held agent token; on failure keep it in memory, so the
        agent stays registered, and try again at the next heartbeat."""
        if self.stored or self.token is None or self.identity is None:
            return
        try:
            self.store.save(self.token, self.identity)
        except JibrildError as error:
            # Said once; the write is retried quietly at every heartbeat.
            if not self._store_failed:
                get_logger().error(
                    "cannot store agent token; keeping it in memory",
                    error=str(error),
                )
            self._store_failed = True
            return

        self.stored = True
        if self._store_failed:
            get_logger().info(
                "agent token stored after earlier failures",
                path=str(self.store.token_path),
            )
            self._store_failed = False
