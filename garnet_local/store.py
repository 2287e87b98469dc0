"""Registered agents, kept in `<state>/agents.json` across restarts."""

import asyncio
import json
import os
import tempfile
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from garnet_local.errors import StateFolderError

AGENTS_FILE_NAME = "agents.json"


@dataclass
class Agent:
    """One registration, and what the control endpoints did to it since."""

    id: str
    kind: str
    hostname: str
    registered_at: str
    token_id: str
    registration: dict[str, Any]
    revoked: bool = False
    deleted: bool = False
    # Counted in memory only, so it starts at 0 after a restart.
    heartbeats: int = field(default=0, compare=False)

    def to_record(self) -> dict[str, Any]:
        """Return the fields saved in agents.json."""
        return {
            "id": self.id,
            "kind": self.kind,
            "hostname": self.hostname,
            "registered_at": self.registered_at,
            "token_id": self.token_id,
            "registration": self.registration,
            "revoked": self.revoked,
            "deleted": self.deleted,
        }

    def to_listing(self) -> dict[str, Any]:
        """Return the summary that `GET /_local/agents` lists."""
        return {
            "id": self.id,
            "kind": self.kind,
            "hostname": self.hostname,
            "revoked": self.revoked,
            "deleted": self.deleted,
            "heartbeats": self.heartbeats,
            "registered_at": self.registered_at,
        }


class AgentStore:
    """Agents by id, loaded at start and saved after every change."""

    def __init__(self, state_dir: Path) -> None:
        self.path = state_dir / AGENTS_FILE_NAME
        self.agents = _load_agents(self.path)
        self._save_lock = asyncio.Lock()

    def add(self, agent_id: str, token_id: str, registration: dict[str, Any]) -> Agent:
        """Record a new agent from a validated registration body."""
        agent = Agent(
            id=agent_id,
            kind=registration["kind"],
            hostname=registration["hostname"],
            registered_at=datetime.now(UTC).isoformat(timespec="seconds"),
            token_id=token_id,
            registration=registration,
        )
        self.agents[agent_id] = agent

        return agent

    async def save(self) -> None:
        """Write agents.json atomically, off the event loop."""
        # The snapshot is taken under the lock, so the last write to finish
        # always carries the latest state.
        async with self._save_lock:
            document = {"agents": [a.to_record() for a in self.agents.values()]}
            data = json.dumps(document, indent=2).encode() + b"\n"
            await asyncio.to_thread(write_atomic, self.path, data)


def write_atomic(path: Path, data: bytes, mode: int = 0o600) -> None:
    """Replace path with data through a synced temporary file in its folder."""
    descriptor, temporary = tempfile.mkstemp(
        dir=path.parent, prefix=f".{path.name}.", suffix=".tmp"
    )
    try:
        with os.fdopen(descriptor, "wb") as file:
            os.fchmod(file.fileno(), mode)
            file.write(data)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise

    _fsync_folder(path.parent)


def _fsync_folder(folder: Path) -> None:
    # The rename is durable only once the folder entry itself is synced.
    descriptor = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def _load_agents(path: Path) -> dict[str, Agent]:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return {}
    except (OSError, UnicodeDecodeError) as error:
        raise StateFolderError(
            f"cannot read the agents file {path}: {error}. Check its permissions."
        ) from None

    try:
        records = json.loads(text)["agents"]
        agents = [Agent(**record) for record in records]
    except (ValueError, KeyError, TypeError) as error:
        raise StateFolderError(
            f"invalid agents file {path}: {error}. Fix it, or delete it to "
            "forget every registered agent."
        ) from None

    return {agent.id: agent for agent in agents}
