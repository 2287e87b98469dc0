"""kill -9 a process that writes agent tokens, many times, and check the
token store after each kill.

Run as ``python -m tests.kill_loop FOLDER COUNT SEED``; prints a JSON
report. The process stays single-threaded, so fork() is safe: each round
forks a child that stores new agent tokens in a loop, SIGKILLs it after a
random delay, then reads the store as a starting daemon would. A token found
without its own identity counts as broken.
"""

import dataclasses
import json
import os
import random
import re
import signal
import sys
import time
from pathlib import Path
from typing import NoReturn

from pydantic import SecretStr

from jibrild.errors import JibrildError
from jibrild.tokenstore import Identity, StoredToken, TokenStore, token_fingerprint

TOKEN_PATTERN = re.compile(r"agent-\d+-\d+-[0-9a-f]{32}")


def _identity(token: SecretStr) -> Identity:
    return Identity(
        agent_id="agent-under-kill",
        agent_kind="vanilla",
        api_url="http://127.0.0.1:1/",
        machine_id="0" * 32,
        registered_at="2026-01-01T00:00:00+00:00",
        token_sha256=token_fingerprint(token),
    )


def _write_forever(store: TokenStore, round_number: int) -> NoReturn:
    """Store one new agent token after another until killed."""
    try:
        store.prepare()
        for serial in range(1_000_000):
            token = SecretStr(f"agent-{round_number}-{serial}-{os.urandom(16).hex()}")
            store.save(token, _identity(token))
    finally:
        os._exit(1)
    os._exit(0)


def _seconds_per_save(folder: Path) -> float:
    """Time a few saves, so kills land anywhere in a write."""
    store = TokenStore(folder / "timing" / "agent.token")
    store.prepare()
    started = time.perf_counter()
    for serial in range(20):
        token = SecretStr(f"agent-0-{serial}-{os.urandom(16).hex()}")
        store.save(token, _identity(token))
    store.unlock()
    return (time.perf_counter() - started) / 20


def _check(store: TokenStore) -> str:
    """Return what a starting daemon finds, or 'broken: <why>'."""
    try:
        store.prepare()
        stored = store.load()
    except JibrildError as error:
        return f"broken: {error}"
    finally:
        store.unlock()
    warnings = store.take_warnings()

    leftovers = sorted(p.name for p in store.folder.glob(".tmp-*"))
    if leftovers:
        return f"broken: temporary files left after prepare: {leftovers}"
    if not store.token_path.exists():
        return "absent"
    if stored is None:
        return f"broken: token file present but not loaded: {warnings}"
    if not TOKEN_PATTERN.fullmatch(stored.token.get_secret_value()):
        return "broken: token file holds a partial token"
    return _check_identity(store, stored, warnings)


def _check_identity(store: TokenStore, stored: StoredToken, warnings: list[str]) -> str:
    """Return how the token's identity was found, or 'broken: <why>'."""
    if stored.identity is None:
        return f"broken: agent token without its identity: {warnings}"
    if stored.identity.token_sha256 != token_fingerprint(stored.token):
        return "broken: identity of another agent token"
    record = json.loads(store.record_path.read_text())
    if dataclasses.asdict(stored.identity) != record:
        return "broken: record not rewritten to the token's identity alone"
    if any("save was interrupted" in warning for warning in warnings):
        return "complete, previous identity"
    return "complete"


def main(folder: Path, count: int, seed: int) -> int:
    """Run ``count`` kill rounds and print the report."""
    rng = random.Random(seed)  # noqa: S311 (kill delays, not secrets)
    max_delay = 3 * _seconds_per_save(folder) + 0.002
    store = TokenStore(folder / "state" / "agent.token")
    outcomes: dict[str, int] = {}
    broken: list[str] = []

    for round_number in range(1, count + 1):
        # Every other round starts from an empty folder, so kills also
        # land in the first write, when there is no previous token.
        if round_number % 2:
            for path in store.folder.glob("*") if store.folder.exists() else []:
                path.unlink()

        pid = os.fork()
        if pid == 0:
            _write_forever(store, round_number)
        time.sleep(rng.uniform(0, max_delay))
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)

        outcome = _check(store)
        if outcome.startswith("broken"):
            broken.append(f"round {round_number}: {outcome}")
            outcome = "broken"
        outcomes[outcome] = outcomes.get(outcome, 0) + 1

    report = {"rounds": count, "outcomes": outcomes, "broken": broken[:10]}
    print(json.dumps(report))
    return 0


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])))
