"""Shared test set-up: the checkout root on sys.path, so garnet_local
imports, and log settings undone after each test."""

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import structlog

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


@pytest.fixture(autouse=True)
def _reset_logs() -> Iterator[None]:
    """Undo each test's log set-up, which may write to a stream pytest
    closes after the test."""
    yield
    structlog.reset_defaults()
