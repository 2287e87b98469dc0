"""The container image of packaging/docker/Dockerfile, run as `docker run`
would run it.

The image is built by carrying out the Dockerfile's instructions on a
debootstrap rootfs. Each container runs jibrild as PID 1 of new
namespaces, chrooted, as the image's user, with a volume at
/var/lib/jibril. It shares the host's network and reaches the local
Garnet API on 127.0.0.1."""

import os
import re
import stat
import threading
import tomllib
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

import pytest

from garnet_local.testing import LocalGarnet
from tests.agent import PROJECT_TOKEN
from tests.packaging.container import Container, Mount, resolve_user
from tests.packaging.docker_run import docker_run, new_named_volume
from tests.packaging.dockerfile import DockerfileError, Image, build

CHECKOUT = Path(__file__).resolve().parents[2]
DOCKERFILE = CHECKOUT / "packaging/docker/Dockerfile"
STATE = "/var/lib/jibril"
IMAGE_UID = 10001
REGISTRATION_PATH = "/api/v1/agents"
FIRST_START_LINES = [
    "INFO: detected runtime environment: container engine=docker",
    "INFO: agent registration complete",
    "INFO: agent kind: vanilla",
    "INFO: token stored at: /var/lib/jibril/agent.token",
]
# sysexits.h EX_CONFIG, jibrild's exit code for invalid or missing settings.
EXIT_SETTINGS = 78
# The exit code of `jibrild status` when no agent token is on disk.
EXIT_NOT_REGISTERED = 3
# A bound on Container.close, which kills and reaps the container. It is an
# estimate set far above the time a close takes.
CLOSE_TIMEOUT_SECONDS = 60


@pytest.fixture(scope="session")
def image() -> Image:
    """The image, built once and cached by the hashes of the Dockerfile,
    the package and the runner."""
    if os.geteuid() != 0:
        pytest.fail(
            "the container tests need root for namespaces, mounts and chroot. "
            "Run `make test-packages` as root"
        )
    context = Path(os.environ.get("JIBRIL_DEB_DIR", CHECKOUT / "dist"))
    if not list(context.glob("jibril_*.deb")):
        pytest.fail(f"no jibril_*.deb in {context}. Run `make deb` first")

    cache = Path(os.environ.get("JIBRIL_DOCKER_CACHE", CHECKOUT / ".cache/docker"))
    cache.mkdir(parents=True, exist_ok=True)
    try:
        return build(DOCKERFILE, context, cache)
    except DockerfileError as error:
        pytest.fail(f"building the image from {DOCKERFILE} failed: {error}")


class Engine:
    """A container launcher for one test. Its close kills every container
    that still runs."""

    def __init__(self, image: Image, tmp_path: Path, api: LocalGarnet) -> None:
        self.image = image
        self.tmp_path = tmp_path
        self.api = api
        self.containers: list[Container] = []

    def volume(self, name: str = "state") -> Path:
        """Return a fresh named volume for /var/lib/jibril."""
        return new_named_volume(self.image, STATE, self.tmp_path / f"volume-{name}")

    def run(
        self,
        variables: Mapping[str, str] | None = None,
        *,
        command: Sequence[str] | None = None,
        volume: Path | None = None,
        mounts: Sequence[Mount] = (),
        user: str | None = None,
        locked_down: bool = False,
    ) -> Container:
        """Start a container. ``variables`` default to the project token
        and the local API's URL."""
        if variables is None:
            variables = {
                "GARNET_API_TOKEN": PROJECT_TOKEN,
                "GARNET_API_URL": self.api.url,
            }
        layer = self.tmp_path / f"container-{len(self.containers)}"
        layer.mkdir()
        container = docker_run(
            self.image,
            layer,
            variables,
            command=command,
            volumes={STATE: volume} if volume is not None else None,
            mounts=mounts,
            user=user,
            locked_down=locked_down,
        )
        self.containers.append(container)
        return container

    def close(self) -> None:
        """Kill every container still running."""
        for container in self.containers:
            container.close()


@pytest.fixture
def engine(image: Image, tmp_path: Path, api: LocalGarnet) -> Iterator[Engine]:
    """An Engine whose containers are killed when the test ends."""
    engine = Engine(image, tmp_path, api)
    yield engine
    engine.close()


def registrations(api: LocalGarnet) -> list[dict[str, object]]:
    """Return the registration requests in the local API's request log."""
    return [
        request
        for request in api.requests()
        if request["method"] == "POST" and request["path"] == REGISTRATION_PATH
    ]


def status_fields(lines: list[str]) -> dict[str, str]:
    """Return the ``key: value`` lines of `jibrild status` as a dict."""
    pairs = (line.split(":", 1) for line in lines)
    return {key: value.strip() for key, value in pairs}


def host_pid_status(pid: int) -> dict[str, str]:
    """Return the fields of /proc/PID/status."""
    lines = Path(f"/proc/{pid}/status").read_text().splitlines()
    return dict(line.split(":\t", 1) for line in lines if ":\t" in line)


def test_resolve_user_like_docker(tmp_path: Path) -> None:
    """A uid without a passwd entry gets gid 0 and home /, a named user
    gets its entry's gid and home and the groups that list it, and an
    explicit group replaces the gid and drops those groups."""
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc/passwd").write_text(
        "root:x:0:0:root:/root:/bin/sh\n"
        "1000:x:2000:2000::/home/digits:/bin/sh\n"
        "app:x:1000:1000::/home/app:/bin/sh\n"
    )
    (tmp_path / "etc/group").write_text(
        "root:x:0:\napp:x:1000:\nadm:x:4:app,root\ntty:x:5:other\n"
    )

    numeric = resolve_user(tmp_path, "1234")
    named = resolve_user(tmp_path, "app")
    by_uid = resolve_user(tmp_path, "1000")
    with_group = resolve_user(tmp_path, "app:adm")
    with_gid = resolve_user(tmp_path, "app:4321")

    assert 1234 == numeric.uid
    assert 0 == numeric.gid
    assert [] == numeric.groups
    assert "/" == numeric.home
    assert 1000 == named.uid
    assert 1000 == named.gid
    assert [4] == named.groups
    assert "/home/app" == named.home
    assert "/home/app" == by_uid.home
    assert 4 == with_group.gid
    assert [] == with_group.groups
    assert 4321 == with_gid.gid
    assert [] == with_gid.groups


def test_image_config_matches_dockerfile(image: Image) -> None:
    """The image runs jibrild in exec form as uid 10001, with its state in
    a volume and SIGTERM as the stop signal."""
    config = image.config
    project = tomllib.loads((CHECKOUT / "pyproject.toml").read_text())["project"]

    assert ["/usr/bin/jibrild"] == config.entrypoint
    assert ["run"] == config.cmd
    assert "10001:10001" == config.user
    assert [STATE] == config.volumes
    assert "SIGTERM" == config.stop_signal
    assert project["version"] == config.labels["org.opencontainers.image.version"]
    # The package's wheels are for bookworm's python3 (3.11).
    assert re.fullmatch(r"debian:bookworm(-\d{8})?-slim", config.base)
    # Nothing but PATH from the base: no secret or setting baked in.
    assert ["PATH"] == list(config.env)


def test_image_files_after_build(image: Image) -> None:
    """The state folder is the image user's, the root-only settings files
    are gone, the package is installed and apt's lists are removed."""
    state = (image.rootfs / STATE.lstrip("/")).stat()
    dpkg_status = (image.rootfs / "var/lib/dpkg/status").read_text()

    assert IMAGE_UID == state.st_uid
    assert IMAGE_UID == state.st_gid
    assert 0o700 == stat.S_IMODE(state.st_mode)
    assert not (image.rootfs / "etc/default/jibril").exists()
    assert not (image.rootfs / "etc/jibril/config.yaml").exists()
    assert "Package: jibril\nStatus: install ok installed" in dpkg_status
    assert [] == list((image.rootfs / "var/lib/apt/lists").iterdir())
    assert not (image.rootfs / "tmp/jibril").exists()


def test_first_start_registers_once(engine: Engine) -> None:
    """A first start logs the four first-start lines as plain stderr lines,
    with the container runtime environment and no token, and stores the
    agent token in the volume. SIGTERM to PID 1 stops it with exit code 0."""
    volume = engine.volume()
    container = engine.run(volume=volume)
    container.wait_for_line("token stored at:")
    code = container.stop()
    logged = [line for line in container.stderr if line in FIRST_START_LINES]
    token = (volume / "agent.token").stat()
    output = "\n".join([*container.stderr, *container.stdout])

    assert 0 == code
    assert FIRST_START_LINES == logged
    for line in container.stderr:
        assert re.match(r"(DEBUG|INFO|WARNING|ERROR): ", line), line
    assert [] == container.stdout
    assert IMAGE_UID == token.st_uid
    assert IMAGE_UID == token.st_gid
    assert 0o600 == stat.S_IMODE(token.st_mode)
    assert ["vanilla"] == [agent["kind"] for agent in engine.api.agents()]
    assert 1 == len(registrations(engine.api))
    assert PROJECT_TOKEN not in output
    assert (volume / "agent.token").read_text().strip() not in output


def test_pid1_is_jibrild_as_image_user(engine: Engine) -> None:
    """jibrild is PID 1 of its PID namespace, runs as uid and gid 10001
    without supplementary groups, and gets the image's environment and
    the -e variables, so no NOTIFY_SOCKET or JOURNAL_STREAM."""
    container = engine.run(volume=engine.volume())
    container.wait_for_line("token stored at:")
    pid = container.pid1()
    status = host_pid_status(pid)
    environ = Path(f"/proc/{pid}/environ").read_bytes().decode().split("\0")
    names = sorted(entry.split("=", 1)[0] for entry in environ if entry)
    command = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")

    assert "1" == status["NSpid"].split()[-1]
    assert ["10001"] * 4 == status["Uid"].split()
    assert ["10001"] * 4 == status["Gid"].split()
    assert "" == status["Groups"].strip()
    assert ["GARNET_API_TOKEN", "GARNET_API_URL", "HOME", "HOSTNAME", "PATH"] == names
    assert [b"/usr/bin/python3", b"-I", b"/usr/bin/jibrild", b"run"] == command[:4]
    assert 0 == container.stop()


def test_second_container_keeps_identity(engine: Engine) -> None:
    """A second container on the same volume uses the stored agent token
    and does not register again."""
    volume = engine.volume()
    first = engine.run(volume=volume)
    first.wait_for_line("token stored at:")
    assert 0 == first.stop()
    [agent] = engine.api.agents()
    engine.api.clear_requests()

    second = engine.run(volume=volume)
    line = second.wait_for_line("using stored agent token")
    code = second.stop()

    assert 0 == code
    assert f"agent_id={agent['id']}" in line
    assert [] == registrations(engine.api)
    assert 1 == len(engine.api.agents())
    assert not any("registration complete" in line for line in second.stderr)


def test_missing_project_token(engine: Engine) -> None:
    """Without GARNET_API_TOKEN a first start ends with the settings error
    and exit code 78, and nothing is registered."""
    container = engine.run({"GARNET_API_URL": engine.api.url}, volume=engine.volume())
    code = container.wait()

    assert EXIT_SETTINGS == code
    assert (
        "ERROR: no stored agent token at /var/lib/jibril/agent.token and no "
        "project token is set; set GARNET_API_TOKEN, GARNET_API_TOKEN_FILE or "
        "run-time.api.token exit_code=78"
    ) in container.stderr
    assert [] == registrations(engine.api)


def test_status_command_override(engine: Engine) -> None:
    """`docker run IMAGE status` runs `jibrild status`: exit code 3 on a
    fresh volume, 0 with the agent identity once registered, while the
    daemon's container runs on the same volume."""
    volume = engine.volume()
    fresh = engine.run(command=["status"], volume=volume)
    fresh_code = fresh.wait()
    daemon = engine.run(volume=volume)
    daemon.wait_for_line("token stored at:")
    [agent] = engine.api.agents()

    registered = engine.run(command=["status"], volume=volume)
    registered_code = registered.wait()
    assert 0 == daemon.stop()

    fresh_fields = status_fields(fresh.stdout)
    registered_fields = status_fields(registered.stdout)

    assert EXIT_NOT_REGISTERED == fresh_code
    assert "not registered (no agent token on disk)" == fresh_fields["state"]
    assert 0 == registered_code
    assert "registered" == registered_fields["state"]
    assert agent["id"] == registered_fields["agent id"]
    assert "vanilla" == registered_fields["agent kind"]
    assert "0600" == registered_fields["token file mode"]


def test_mounted_config_file(engine: Engine, tmp_path: Path) -> None:
    """A config.yaml mounted at /etc/jibril/config.yaml, owned by the
    image's user with mode 0600, sets the project token and the API URL."""
    config = tmp_path / "config.yaml"
    config.write_text(
        f"run-time:\n  api:\n    url: {engine.api.url}\n    token: {PROJECT_TOKEN}\n"
    )
    os.chown(config, IMAGE_UID, IMAGE_UID)
    config.chmod(0o600)
    mount = Mount(str(config), "/etc/jibril/config.yaml", read_only=True)

    container = engine.run({}, volume=engine.volume(), mounts=[mount])
    container.wait_for_line("token stored at:")
    code = container.stop()

    assert 0 == code
    assert 1 == len(registrations(engine.api))
    assert not any(line.startswith("WARNING") for line in container.stderr)


def test_root_only_config_file(engine: Engine, tmp_path: Path) -> None:
    """A config.yaml left 0600 root, as the package installs it, stops the
    daemon with exit code 78, which is why the image removes the package's
    copy."""
    config = tmp_path / "config.yaml"
    config.write_text("run-time:\n  log-level: info\n")
    config.chmod(0o600)
    mount = Mount(str(config), "/etc/jibril/config.yaml", read_only=True)

    container = engine.run(volume=engine.volume(), mounts=[mount])
    code = container.wait()

    assert EXIT_SETTINGS == code
    assert (
        "ERROR: cannot read config file /etc/jibril/config.yaml: permission "
        "denied; run jibrild as root or as a user that can read it, or give "
        "another path with --config exit_code=78"
    ) in container.stderr


def test_root_without_capabilities(engine: Engine, tmp_path: Path) -> None:
    """As uid 0 with no capabilities, no new privileges and a read-only
    root file system, on a root-owned host folder (a Kubernetes hostPath
    volume), the container registers and stores the agent token there."""
    volume = tmp_path / "host-state"
    volume.mkdir(mode=0o700)

    container = engine.run(volume=volume, user="0:0", locked_down=True)
    container.wait_for_line("token stored at:")
    status = host_pid_status(container.pid1())
    mounts = Path(f"/proc/{container.pid1()}/mountinfo").read_text().splitlines()
    root_options = [line.split()[5] for line in mounts if line.split()[4] == "/"]
    code = container.stop()
    token = (volume / "agent.token").stat()

    assert 0 == code
    assert ["0"] * 4 == status["Uid"].split()
    assert 0 == int(status["CapEff"], 16)
    assert 0 == int(status["CapPrm"], 16)
    assert 0 == int(status["CapBnd"], 16)
    assert "1" == status["NoNewPrivs"]
    assert ["ro"] == [options.split(",")[0] for options in root_options]
    assert 0 == token.st_uid
    assert 0 == token.st_gid
    assert 0o600 == stat.S_IMODE(token.st_mode)
    assert not any(line.startswith("WARNING") for line in container.stderr)


def test_close_kills_container(engine: Engine) -> None:
    """Closing a container that runs as the image's user ends its PID 1 and
    returns, so a test that fails while its container runs leaves nothing
    running and does not block."""
    container = engine.run(volume=engine.volume())
    container.wait_for_line("token stored at:")
    pid = container.pid1()

    closing = threading.Thread(target=container.close, daemon=True)
    closing.start()
    closing.join(CLOSE_TIMEOUT_SECONDS)

    assert not closing.is_alive()
    assert not Path(f"/proc/{pid}").exists()


def test_project_token_file(engine: Engine, tmp_path: Path) -> None:
    """GARNET_API_TOKEN_FILE names a mounted file that the image's user owns
    with mode 0400: the container registers with the project token in it,
    and the token stays out of the container's environment."""
    token_file = tmp_path / "garnet-api-token"
    token_file.write_text(f"{PROJECT_TOKEN}\n")
    os.chown(token_file, IMAGE_UID, IMAGE_UID)
    token_file.chmod(0o400)
    mount = Mount(str(token_file), "/run/secrets/garnet-api-token", read_only=True)
    variables = {
        "GARNET_API_TOKEN_FILE": "/run/secrets/garnet-api-token",
        "GARNET_API_URL": engine.api.url,
    }

    container = engine.run(variables, volume=engine.volume(), mounts=[mount])
    container.wait_for_line("token stored at:")
    environ = Path(f"/proc/{container.pid1()}/environ").read_bytes().decode()
    code = container.stop()

    assert 0 == code
    assert 1 == len(registrations(engine.api))
    assert PROJECT_TOKEN not in environ
    assert not any(line.startswith("WARNING") for line in container.stderr)
