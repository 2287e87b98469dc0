"""Shared test set-up: the checkout root on sys.path, so garnet_local
imports, log settings undone after each test, and the local API and a
daemon under test for the end-to-end tests."""

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import structlog

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from garnet_local.testing import LocalGarnet
from tests.agent import Agent


@pytest.fixture(autouse=True)
def _reset_logs() -> Iterator[None]:
    """Undo each test's log set-up, which may write to a stream pytest
    closes after the test."""
    yield
    structlog.reset_defaults()


@pytest.fixture
def api(tmp_path: Path) -> Iterator[LocalGarnet]:
    """The local Garnet API in a state folder of its own."""
    with LocalGarnet(tmp_path / "api") as server:
        yield server


@pytest.fixture
def agent(tmp_path: Path, api: LocalGarnet) -> Iterator[Agent]:
    """A daemon's settings, pointed at the local API; afterwards, no output
    of its processes may contain their project token or the agent token."""
    agent = Agent(tmp_path, api)
    yield agent
    for process in agent.processes:
        process.close()
    assert [] == agent.leaked_secrets(), "a token was printed or sent to systemd"
