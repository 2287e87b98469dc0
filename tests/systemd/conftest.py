"""Fixtures of the systemd harness: one booted machine with the jibril
package installed and one local Garnet API on the host's loopback, shared
by every test of the run."""

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from garnet_local.testing import LocalGarnet
from tests.systemd.harness import CREDENTIAL_PROJECT_TOKEN, PROJECT_TOKEN, REPORT
from tests.systemd.machine import Machine, booted

CHECKOUT = Path(__file__).resolve().parents[2]
DEFAULT_CACHE = CHECKOUT / ".cache" / "systemd"


@pytest.fixture(scope="session")
def cache_dir() -> Path:
    return Path(os.environ.get("JIBRIL_SYSTEMD_CACHE", DEFAULT_CACHE))


@pytest.fixture(scope="session")
def machine(cache_dir: Path) -> Iterator[Machine]:
    rootfs = cache_dir / "rootfs"
    if not (rootfs / "usr/bin/jibrild").exists():
        pytest.fail(f"no rootfs with jibrild at {rootfs}; run `make test-systemd`")

    with booted(rootfs, cache_dir / "console.log") as running:
        yield running


@pytest.fixture(scope="session")
def garnet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalGarnet]:
    tokens = {PROJECT_TOKEN: "write", CREDENTIAL_PROJECT_TOKEN: "write"}
    with LocalGarnet(tmp_path_factory.mktemp("garnet"), project_tokens=tokens) as api:
        yield api


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    for line in REPORT.values():
        terminalreporter.write_line(line)
