"""A daemon under test with its own settings files, against the local API.
The ``agent`` and ``api`` fixtures of conftest.py build it."""

from collections.abc import Callable
from pathlib import Path

from garnet_local.testing import LocalGarnet
from tests.daemon_process import DaemonProcess, clean_environ

PROJECT_TOKEN = "test-project-token"


class Agent:
    """Paths and settings files of one daemon under test."""

    def __init__(self, tmp_path: Path, api: LocalGarnet) -> None:
        self.tmp_path = tmp_path
        self.api = api
        self.token_path = tmp_path / "state" / "agent.token"
        self.config = tmp_path / "config.yaml"
        self.env_file = tmp_path / "jibril.env"
        self.config.write_text("run-time:\n  heartbeat-interval: 30\n")
        self.env_file.write_text("")
        self.processes: list[DaemonProcess] = []

    def leaked_secrets(self) -> list[str]:
        """Return the names of the secrets that any daemon's output or
        notify messages contain: its project token or a stored agent token."""
        secrets = {}
        if self.token_path.is_file():
            secrets["agent token"] = self.token_path.read_text().strip()
        leaks = []
        for process in self.processes:
            project_token = process.environ.get("GARNET_API_TOKEN", "")
            named = {**secrets, "project token": project_token}
            text = process.output() + "\n".join(process.messages)
            leaks += [
                name for name, secret in named.items() if secret and secret in text
            ]
        return leaks

    def register_and_stop(self) -> None:
        """Run the daemon until it has stored an agent token, then stop it."""
        daemon = self.start()
        daemon.wait_for_line("token stored at:")
        daemon.stop()

    def run_args(self) -> list[str]:
        """Return the command line that runs the daemon on these files."""
        return [
            "run",
            "--config",
            str(self.config),
            "--env-file",
            str(self.env_file),
            "--agent-token-path",
            str(self.token_path),
        ]

    def start(
        self,
        project_token: str | None = PROJECT_TOKEN,
        command_prefix: tuple[str, ...] = (),
        **extra: str,
    ) -> DaemonProcess:
        """Start the daemon with the API URL and, if given, a project token;
        ``extra`` adds or overrides environment variables."""
        # Debug level, so that the token search after each test covers the
        # most verbose output.
        environ = clean_environ(GARNET_API_URL=self.api.url, JIBRIL_LOG_LEVEL="debug")
        environ.update(extra)
        if project_token is not None:
            environ["GARNET_API_TOKEN"] = project_token
        process = DaemonProcess(self.tmp_path, self.run_args(), environ, command_prefix)
        self.processes.append(process)
        return process


def registrations(api: LocalGarnet) -> list[dict[str, object]]:
    return [
        request
        for request in api.requests()
        if request["path"] == "/api/v1/agents" and request["method"] == "POST"
    ]


def wait_for(condition: Callable[[], bool], daemon: DaemonProcess) -> None:
    """Wait up to about ten seconds for ``condition``, collecting output."""
    for _ in range(100):
        if condition():
            return
        daemon.pause(0.1)
    raise AssertionError(daemon.output())
