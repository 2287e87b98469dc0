"""A known project token planted in every settings source, and the agent
tokens the API hands out, must not appear in anything jibrild prints,
logs, sends to systemd or writes, in clear or base64."""

import base64
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from garnet_local.testing import LocalGarnet
from tests.agent import Agent, registrations, wait_for
from tests.daemon_process import clean_environ

PLANTED = "planted-Pr0ject-T0ken-4c1d9e7f"
SOURCES = ("environment", "env-file", "token-file", "credential", "yaml")
# GARNET_API_TOKEN_FILE beside GARNET_API_TOKEN of another source is a
# settings error, so the token file joins no other source.
ALL_COMPATIBLE = ("environment", "env-file", "credential", "yaml")
REPO = Path(__file__).resolve().parent.parent


def encodings(secret: str) -> list[str]:
    """Return the secret and every text that its base64 forms must contain:
    for each of the three alignments in a longer base64 text, the run of
    characters that depends on the secret's bytes alone."""
    data = secret.encode()
    forms = [secret]
    for encode in (base64.b64encode, base64.urlsafe_b64encode):
        for offset in range(3):
            encoded = encode(b"\0" * offset + data).decode()
            start = -(-offset * 4 // 3)
            forms.append(encoded[start + 1 : -4])
    return forms


def leaks(text: str, secrets: list[str]) -> list[str]:
    """Return each secret form found in ``text``."""
    return [form for secret in secrets for form in encodings(secret) if form in text]


@pytest.fixture
def api(tmp_path: Path) -> Iterator[LocalGarnet]:
    """The local Garnet API accepting the planted project token."""
    with LocalGarnet(tmp_path / "api", {PLANTED: "write"}) as server:
        yield server


def _plant(agent: Agent, sources: tuple[str, ...]) -> dict[str, str]:
    """Put the planted token in each source; return the environment."""
    environ: dict[str, str] = {}
    yaml = "run-time:\n  log-level: debug\n  heartbeat-interval: 1\n"
    if "yaml" in sources:
        yaml += f"  api:\n    token: {PLANTED}\n"
    agent.config.write_text(yaml)

    token_file = agent.tmp_path / "project.token"
    token_file.write_text(PLANTED + "\n")
    token_file.chmod(0o600)
    env_lines = []
    if "env-file" in sources:
        env_lines.append(f"GARNET_API_TOKEN='{PLANTED}'")
    if "token-file" in sources:
        env_lines.append(f"export GARNET_API_TOKEN_FILE={token_file}")
    agent.env_file.write_text("".join(line + "\n" for line in env_lines))
    agent.env_file.chmod(0o600)

    if "credential" in sources:
        credentials = agent.tmp_path / "credentials"
        credentials.mkdir()
        (credentials / "garnet-api-token").write_text(PLANTED)
        (credentials / "garnet-api-token").chmod(0o400)
        environ["CREDENTIALS_DIRECTORY"] = str(credentials)
    if "environment" in sources:
        environ["GARNET_API_TOKEN"] = PLANTED
    return environ


def _cli_output(agent: Agent, environ: dict[str, str], *args: str) -> str:
    settings_args = [
        "--config",
        str(agent.config),
        "--env-file",
        str(agent.env_file),
        "--agent-token-path",
        str(agent.token_path),
    ]
    result = subprocess.run(
        [sys.executable, "-m", "jibrild", *args, *settings_args],
        cwd=REPO,
        env=clean_environ(GARNET_API_URL=agent.api.url, **environ),
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    return result.stdout + result.stderr


def _written_files(folder: Path, skip: set[Path]) -> dict[Path, str]:
    return {
        path: path.read_bytes().decode(errors="replace")
        for path in folder.rglob("*")
        if path.is_file() and path not in skip
    }


@pytest.mark.fault(
    case=19,
    behaviour="The project token planted in the environment, the env file, a "
    "token file, a credential and the YAML file (together and one at a time), "
    "with the agent tokens, at "
    "debug level through registration, heartbeats, a 500 that echoes the "
    "token, revocation and reload: zero hits, clear or base64, in output, "
    "STATUS=, CLI output and files written.",
)
@pytest.mark.parametrize(
    "sources",
    [ALL_COMPATIBLE, *((source,) for source in SOURCES)],
    ids=["all", *SOURCES],
)
def test_planted_token_never_leaks(
    agent: Agent, api: LocalGarnet, sources: tuple[str, ...]
) -> None:
    """No form of a token shows up anywhere jibrild writes."""
    environ = _plant(agent, sources)
    echo = base64.b64encode(PLANTED.encode()).decode()
    api.add_fault(
        path="/api/v1/agents",
        status=500,
        body=f'{{"error": "bad token {PLANTED} ({echo})"}}',
        times=1,
    )

    daemon = agent.start(project_token=None, **environ)
    daemon.wait_for_line("token stored at:", timeout=20)
    first_agent_token = agent.token_path.read_text().strip()
    wait_for(lambda: api.agents()[0]["heartbeats"] >= 1, daemon)
    api.revoke(api.agents()[0]["id"])
    wait_for(lambda: len(registrations(api)) == 3, daemon)
    wait_for(lambda: api.agents()[-1]["heartbeats"] >= 1, daemon)
    daemon.signal(signal.SIGHUP)
    daemon.wait_for_line("settings reloaded")
    code = daemon.stop()
    second_agent_token = agent.token_path.read_text().strip()

    cli = {
        args: _cli_output(agent, environ, *args)
        for args in (("config",), ("config", "--show-origin"), ("status",))
    }
    agent_tokens = [first_agent_token, second_agent_token]
    secrets = [PLANTED, *agent_tokens]
    state_files = _written_files(agent.token_path.parent, skip={agent.token_path})

    assert "DEBUG: heartbeat sent" in daemon.output()
    assert first_agent_token != second_agent_token
    assert [] == leaks(daemon.output(), secrets)
    assert [] == leaks("\n".join(daemon.messages), secrets)
    for args, output in cli.items():
        assert [] == leaks(output, secrets), args
    assert "token: '**********'" in cli[("config",)]
    for path, text in state_files.items():
        assert [] == leaks(text, secrets), path
    assert [] == leaks(agent.token_path.read_text(), [PLANTED, first_agent_token])
    assert 0 == code


def test_encodings_find_embedded_base64() -> None:
    """The base64 forms are found inside a longer base64 text at any
    alignment, in both alphabets."""
    for prefix in (b"", b"a", b"ab", b"abc"):
        text = base64.b64encode(prefix + PLANTED.encode() + b"tail").decode()
        url_text = base64.urlsafe_b64encode(prefix + PLANTED.encode()).decode()

        assert leaks(text, [PLANTED]), prefix
        assert leaks(url_text, [PLANTED]), prefix
