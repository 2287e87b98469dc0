"""The state one server instance shares between its request handlers."""

import collections
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import web

from garnet_local.faults import FaultList
from garnet_local.store import AgentStore
from garnet_local.tokens import load_or_create_secret

PERMISSIONS = ("write", "readonly")
PROJECT_TOKEN_HEADER = "X-Project-Token"
AGENT_TOKEN_HEADER = "X-Agent-Token"

# At one heartbeat a minute this covers about a week. Older entries are
# dropped first.
REQUEST_LOG_MAX_ENTRIES = 10_000


@dataclass
class ServerState:
    """Project tokens, agents, events, faults and the request log."""

    project_tokens: Mapping[str, str]
    secret: bytes
    agents: AgentStore
    prefix: str
    faults: FaultList = field(default_factory=FaultList)
    events: dict[str, dict[str, Any]] = field(default_factory=dict)
    request_log: collections.deque[dict[str, Any]] = field(
        default_factory=lambda: collections.deque(maxlen=REQUEST_LOG_MAX_ENTRIES)
    )

    @classmethod
    def load(
        cls, state_dir: Path, project_tokens: Mapping[str, str], prefix: str
    ) -> "ServerState":
        """Create the state folder if needed and load its secret and agents."""
        _check_project_tokens(project_tokens)
        state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)

        return cls(
            project_tokens=dict(project_tokens),
            secret=load_or_create_secret(state_dir),
            agents=AgentStore(state_dir),
            prefix=prefix,
        )


STATE_KEY = web.AppKey("garnet_local_state", ServerState)


def _check_project_tokens(project_tokens: Mapping[str, str]) -> None:
    for permission in project_tokens.values():
        if permission not in PERMISSIONS:
            raise ValueError(
                f"invalid project token permission {permission!r}, "
                "expected 'write' or 'readonly'"
            )
