"""The agent token in memory: loaded from disk, or got by registration,
and replaced by registering again when the API rejects it."""

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from urllib.parse import urlsplit

from pydantic import SecretStr

from jibrild import __version__
from jibrild.api import AgentTokenRejectedError
from jibrild.backoff import Backoff
from jibrild.environment import RuntimeEnvironment
from jibrild.errors import (
    JibrildError,
    ProjectTokenRejectedError,
    RegistrationRejectedError,
    SettingsError,
)
from jibrild.heartbeat import NextBeat, OnWake
from jibrild.hostfacts import HostFacts
from jibrild.journal import (
    AGENT_TOKEN_REJECTED,
    IDENTITY_RESET,
    REGISTRATION_COMPLETE,
    REREGISTRATION,
    event,
)
from jibrild.logs import get_logger, remember_secret
from jibrild.registration import Registrar, RegistrationRequest, format_delay
from jibrild.registration_body import build_registration_body
from jibrild.settings import Settings
from jibrild.tokenstore import Identity, StoredToken, TokenStore, token_fingerprint

# Ports a URL may leave out, when comparing API URLs.
_DEFAULT_PORTS = {"http": 80, "https": 443}

# While no registration can replace a rejected agent token, check back at
# this pace: slow enough to spare the API, quick enough to notice a fix.
DEGRADED_RETRY_SECONDS = 300.0

# Spacing of registrations whose new agent token is rejected before any
# heartbeat succeeds with it: something between the agent and the API (a
# gateway, say) rejects every token, and each registration makes an agent.
_REREGISTER_BASE_SECONDS = 60.0
_REREGISTER_CAP_SECONDS = 3600.0

# The settings through which an operator gives the project token.
HOW_TO_SET_PROJECT = "set GARNET_API_TOKEN, GARNET_API_TOKEN_FILE or run-time.api.token"


@dataclass
class AgentTokenHolder:
    """Hold the agent token for every API call.

    ``settings`` and ``read_facts`` are called on each use, so a reload that
    sets a new project token, or a host that got its address after boot, is
    seen by the next registration.
    """

    store: TokenStore
    registrar: Registrar
    settings: Callable[[], Settings]
    read_facts: Callable[[], HostFacts]
    runtime: RuntimeEnvironment
    machine_id: str
    on_status: Callable[[str], None]
    project_token_origin: Callable[[], str]
    token: SecretStr | None = field(default=None, init=False)
    identity: Identity | None = field(default=None, init=False)
    stored: bool = field(default=False, init=False)
    # Whether this holder got its agent token by registering.
    registered: bool = field(default=False, init=False)
    _store_failed: bool = field(default=False, init=False)
    _unconfirmed: bool = field(default=False, init=False)
    _next_registration: float = field(default=0.0, init=False)
    _registrations: Backoff = field(
        default_factory=lambda: Backoff(
            _REREGISTER_BASE_SECONDS, _REREGISTER_CAP_SECONDS, floor_fraction=0.5
        ),
        init=False,
    )

    async def obtain(self, force: bool = False) -> bool:
        """Use the stored agent token, or register; return False when the
        daemon stopped before a token was held. ``force`` registers even
        when the stored agent token is usable, replacing it."""
        stored = self._load_stored()
        reason = self._reason_to_register(stored)
        if force and stored is not None and reason is None:
            reason = "registration forced with --force"
        if reason is None and stored is not None:
            self._hold(stored.token, stored.identity, stored=True)
            get_logger().info(
                "using stored agent token",
                path=str(self.store.token_path),
                agent_id=self.agent_id(),
            )
            self.on_status(self.status())
            return True

        if self.settings().project_token is None:
            raise SettingsError(
                f"{reason} at {self.store.token_path} and no project token is "
                f"set; {HOW_TO_SET_PROJECT}"
            )
        if stored is not None:
            get_logger().warning(
                "registering again",
                reason=reason,
                journal=event(IDENTITY_RESET, previous_agent_id=self._id_of(stored)),
            )
        # A removed agent token leaves its identity record, which names the
        # agent this registration replaces.
        previous = self._id_of(stored) if stored else self.store.orphaned_agent_id()
        await self._register(previous)
        return self.token is not None

    def current(self) -> SecretStr:
        """Return the held agent token, storing it first if an earlier
        write failed."""
        if self.token is None:
            raise RuntimeError("no agent token is held")
        self._store_held()
        return self.token

    def heartbeat_ok(self) -> None:
        """Note that the API accepted the held agent token."""
        self._unconfirmed = False
        self._registrations.reset()

    def agent_id(self) -> str:
        """Return the agent id, or 'unknown' when no identity record has it."""
        return self.identity.agent_id if self.identity else "unknown"

    def status(self) -> str:
        """Return the STATUS= text of a healthy agent."""
        status = f"registered as {self.agent_id()}"
        return status if self.stored else status + "; agent token not stored"

    async def rejected(self, error: AgentTokenRejectedError) -> NextBeat:
        """Register again when that is possible and not too soon; otherwise
        log what to do and check back slowly. Return the next wait."""
        settings = self.settings()
        if settings.project_token is None:
            return self._degraded(
                error,
                "agent token rejected and no project token is set",
                f"{HOW_TO_SET_PROJECT}, then 'systemctl reload jibril'",
                journal=self._rejected_event(),
            )

        wait = self._next_registration - time.monotonic()
        if self._unconfirmed and wait > 0:
            get_logger().warning(
                "agent token rejected again before any heartbeat succeeded; "
                "delaying the next registration",
                status=error.status,
                next_attempt_in=format_delay(wait),
                journal=self._rejected_event(),
            )
            self.on_status(f"{error}; next registration in {format_delay(wait)}")
            return NextBeat(wait, OnWake.KEEP)

        get_logger().warning(
            "agent token rejected; registering again",
            status=error.status,
            journal=self._rejected_event(),
        )
        try:
            await self._register(self.agent_id())
        except (
            ProjectTokenRejectedError,
            RegistrationRejectedError,
            SettingsError,
        ) as failure:
            return self._degraded(
                error, "registering again failed", f"{failure}; then reload"
            )

        # The new agent token is unconfirmed until a heartbeat succeeds.
        self._unconfirmed = True
        self._next_registration = time.monotonic() + max(
            settings.heartbeat_interval, self._registrations.next_delay()
        )
        return NextBeat(settings.heartbeat_interval)

    def _degraded(
        self,
        error: AgentTokenRejectedError,
        message: str,
        fix: str,
        journal: dict[str, str] | None = None,
    ) -> NextBeat:
        """Keep running without a usable agent token, and log why; ``journal``
        marks the line that first reports the rejection."""
        get_logger().error(message, status=error.status, fix=fix, journal=journal)
        self.on_status(f"{message} (HTTP {error.status}); {fix}")
        interval = self.settings().heartbeat_interval
        return NextBeat(max(interval, DEGRADED_RETRY_SECONDS), OnWake.BEAT)

    def _load_stored(self) -> StoredToken | None:
        stored = self.store.load()
        for warning in self.store.take_warnings():
            get_logger().warning(warning)
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
        if not same_api_url(identity.api_url, self._api_url()):
            return "stored agent token belongs to another API URL"
        return None

    def _api_url(self) -> str:
        # The client keeps the URL it started with; a reload that changes
        # the setting applies at the next start.
        return self.registrar.client.base_url

    def _request(self) -> RegistrationRequest:
        """Build one registration attempt from the settings of now."""
        settings = self.settings()
        if settings.project_token is None:
            raise SettingsError(f"no project token is set; {HOW_TO_SET_PROJECT}")
        body = build_registration_body(
            self.read_facts(),
            self.runtime,
            version=__version__,
            machine_id=self.machine_id,
            labels=settings.labels,
        )
        return settings.project_token, body

    async def _register(self, previous_agent_id: str | None) -> None:
        """Register; ``previous_agent_id`` names the agent this one replaces."""
        try:
            registration = await self.registrar.register(self._request)
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
        self.registered = True
        self._store_held()
        self._log_registration(previous_agent_id)

    def _log_registration(self, previous_agent_id: str | None) -> None:
        # These lines and their order are what operators grep for. Where
        # the journal is there, its fields go with them.
        log = get_logger()
        log.info(
            "agent registration complete",
            journal=event(
                REGISTRATION_COMPLETE,
                agent_id=self.agent_id(),
                agent_kind=self.runtime.agent_kind,
                runtime_environment=self.runtime.name,
                api_url=self._api_url(),
            ),
        )
        log.info(f"agent kind: {self.runtime.agent_kind}")
        if self.stored:
            log.info(f"token stored at: {self.store.token_path}")
        if previous_agent_id is None:
            log.info("registered", agent_id=self.agent_id())
        else:
            log.info(
                "registered again",
                agent_id=self.agent_id(),
                previous_agent_id=previous_agent_id,
                journal=event(REREGISTRATION),
            )
        self.on_status(self.status())

    def _rejected_event(self) -> dict[str, str]:
        return event(AGENT_TOKEN_REJECTED, agent_id=self.agent_id())

    @staticmethod
    def _id_of(stored: StoredToken) -> str:
        return stored.identity.agent_id if stored.identity else "unknown"

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
            # Logged once; the write is retried quietly at every heartbeat.
            if not self._store_failed:
                get_logger().error(
                    "cannot store agent token; keeping it in memory",
                    error=str(error),
                )
            self._store_failed = True
            return

        self.stored = True
        if self._store_failed:
            get_logger().info(f"token stored at: {self.store.token_path}")
            self._store_failed = False


def same_api_url(first: str, second: str) -> bool:
    """Tell whether two API URLs name the same API, whatever the case of
    scheme and host, an explicit default port or a trailing slash."""
    return _api_url_key(first) == _api_url_key(second)


def _api_url_key(url: str) -> tuple[str, str, int | None, str]:
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    try:
        port = parts.port or _DEFAULT_PORTS.get(scheme)
    except ValueError:
        port = None
    return scheme, (parts.hostname or "").lower(), port, parts.path.rstrip("/")
