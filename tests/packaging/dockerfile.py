"""A Dockerfile runner for machines without a container engine.

It reads a Dockerfile and carries out each instruction on a rootfs folder.
It stops on any instruction, flag or form it does not carry out, so an
image it builds never lacks a step. `debootstrap --variant=minbase`
replaces the base image: it builds the Debian suite that a
`debian:SUITE-slim` image is made from.
"""

import hashlib
import json
import re
import shlex
import shutil
import subprocess
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from tests.packaging.container import (
    ContainerSpec,
    Mount,
    new_hostname,
    resolve_user,
)
from tests.packaging.container import run_to_end as run_container

# PATH in the config of Docker's official debian images.
BASE_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

# The official debian images' tags: SUITE-slim or SUITE-YYYYMMDD-slim.
_DEBIAN_SLIM = re.compile(
    r"(?:docker\.io/)?(?:library/)?debian:([a-z]+)(?:-\d{8})?-slim"
)
_DIRECTIVE = re.compile(r"#\s*([A-Za-z][A-Za-z0-9]*)\s*=")
_VARIABLE = re.compile(r"\$(?:\{([^}]*)\}|([A-Za-z_][A-Za-z0-9_]*))")
_RUNNER_FILES = ("dockerfile.py", "container.py", "container_init.py")


class DockerfileError(Exception):
    """An instruction the runner cannot carry out, or one that failed."""


@dataclass(frozen=True)
class Instruction:
    """One Dockerfile instruction with its continuation lines joined."""

    line: int
    keyword: str
    arguments: str

    def where(self) -> str:
        """Name the instruction for a message."""
        return f"line {self.line} ({self.keyword})"


@dataclass
class ImageConfig:
    """The runtime settings of an image, as `docker inspect` shows them."""

    base: str = ""
    env: dict[str, str] = field(default_factory=dict)
    user: str = ""
    workdir: str = "/"
    entrypoint: list[str] = field(default_factory=list)
    cmd: list[str] = field(default_factory=list)
    volumes: list[str] = field(default_factory=list)
    stop_signal: str = "SIGTERM"
    labels: dict[str, str] = field(default_factory=dict)
    # ARG values, which the build uses and the image does not keep.
    args: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Image:
    """A built image: its rootfs folder and its config."""

    rootfs: Path
    config: ImageConfig


def parse(text: str) -> list[Instruction]:
    """Split a Dockerfile into instructions.

    Comment and empty lines are dropped, inside continuations too, as
    Docker drops them. Parser directives (`# syntax=`, `# escape=`) are
    rejected, since they change how the rest of the file is read.
    """
    instructions: list[Instruction] = []
    pending: list[str] = []
    start = 0
    leading = True
    for number, raw in enumerate(text.splitlines(), start=1):
        stripped = raw.strip()
        directive = _DIRECTIVE.match(stripped) if leading else None
        if directive is not None:
            name = directive.group(1)
            raise DockerfileError(
                f"line {number}: parser directive {name!r} is not supported"
            )
        # Docker skips an empty line inside a continuation too, with a warning.
        if stripped.startswith("#") or not stripped:
            leading = leading and stripped.startswith("#")
            continue

        leading = False
        if not pending:
            start = number
        continued = raw.rstrip().endswith("\\")
        pending.append(raw.rstrip()[:-1] if continued else raw)
        if not continued:
            instructions.append(_instruction(start, " ".join(pending)))
            pending = []

    if pending:
        raise DockerfileError(f"line {start}: the file ends inside a continuation")
    return instructions


def _instruction(line: int, text: str) -> Instruction:
    keyword, _, arguments = text.strip().partition(" ")
    return Instruction(line, keyword.upper(), arguments.strip())


def build(dockerfile: Path, context: Path, cache: Path) -> Image:
    """Build the image of ``dockerfile`` with ``context`` as the build
    context, or reuse the one built from the same Dockerfile, context
    files and runner.

    The image is kept in CACHE/image-KEY (rootfs/ and config.json), and
    the base tarball in CACHE/SUITE-KEY.tar.
    """
    instructions = parse(dockerfile.read_text())
    check_supported(instructions)
    key = _image_key(dockerfile, context, instructions)
    folder = cache / f"image-{key}"
    config_path = folder / "config.json"
    if config_path.is_file():
        return Image(
            folder / "rootfs", ImageConfig(**json.loads(config_path.read_text()))
        )

    building = cache / f"image-{key}.tmp"
    shutil.rmtree(building, ignore_errors=True)
    building.mkdir(parents=True)
    rootfs = building / "rootfs"
    config = _Builder(
        instructions, context, cache, rootfs, building / "build.log"
    ).run()
    (building / "config.json").write_text(json.dumps(asdict(config), indent=2))

    for old in cache.glob("image-*"):
        if old != building:
            shutil.rmtree(old)
    building.rename(folder)
    return Image(folder / "rootfs", config)


def _image_key(dockerfile: Path, context: Path, instructions: list[Instruction]) -> str:
    digest = hashlib.sha256(dockerfile.read_bytes())
    variables = build_variables(instructions)
    for instruction in instructions:
        if instruction.keyword == "COPY":
            for source in _copy_sources(instruction, context, variables):
                digest.update(source.name.encode())
                digest.update(hashlib.sha256(source.read_bytes()).digest())
    runner_folder = Path(__file__).resolve().parent
    for name in _RUNNER_FILES:
        digest.update((runner_folder / name).read_bytes())
    return digest.hexdigest()[:16]


def build_variables(instructions: list[Instruction]) -> dict[str, str]:
    """Return the ARG defaults and ENV values of a Dockerfile, which COPY
    sources and LABEL values can name, without building anything."""
    builder = _Builder(instructions, Path(), Path(), Path(), Path())
    for instruction in instructions:
        if instruction.keyword in ("ARG", "ENV"):
            builder.handlers()[instruction.keyword](instruction)
    return builder._variables()


def base_tarball(suite: str, cache: Path) -> Path:
    """Return the debootstrap tarball of ``suite``, building it on first
    use. Its name carries a hash of the debootstrap options, so a change
    to them builds a new one."""
    options = ["--variant=minbase", suite]
    key = hashlib.sha256(" ".join(options).encode()).hexdigest()[:12]
    tarball = cache / f"{suite}-{key}.tar"
    if tarball.is_file():
        return tarball

    if shutil.which("debootstrap") is None:
        raise DockerfileError(
            "debootstrap not found. Run `make test-packages`, which installs "
            "it, or apt-get install debootstrap"
        )
    target = cache / f"{suite}-{key}.tmp"
    shutil.rmtree(target, ignore_errors=True)
    log = cache / "debootstrap.log"
    with log.open("w") as output:
        done = subprocess.run(
            ["debootstrap", *options, str(target)],
            stdout=output,
            stderr=subprocess.STDOUT,
            check=False,
        )
    if done.returncode != 0:
        tail = "\n".join(log.read_text().splitlines()[-15:])
        raise DockerfileError(f"debootstrap {suite} failed. {log} ends with:\n{tail}")

    subprocess.run(["chroot", str(target), "apt-get", "clean"], check=True)
    subprocess.run(
        ["tar", "-C", str(target), "-cpf", f"{tarball}.tmp", "."], check=True
    )
    Path(f"{tarball}.tmp").rename(tarball)
    shutil.rmtree(target)
    return tarball


class _Builder:
    """Carry out the instructions of one Dockerfile on a rootfs."""

    def __init__(
        self,
        instructions: list[Instruction],
        context: Path,
        cache: Path,
        rootfs: Path,
        log: Path,
    ) -> None:
        self.instructions = instructions
        self.context = context
        self.cache = cache
        self.rootfs = rootfs
        self.log = log
        self.config = ImageConfig()

    def run(self) -> ImageConfig:
        """Carry out every instruction and return the image's config."""
        handlers = self.handlers()
        for instruction in self.instructions:
            handlers[instruction.keyword](instruction)
        return self.config

    def handlers(self) -> dict[str, Callable[[Instruction], None]]:
        """Return the method that carries out each supported instruction."""
        return {
            "FROM": self._from,
            "ARG": self._arg,
            "ENV": self._env,
            "LABEL": self._label,
            "RUN": self._run,
            "COPY": self._copy,
            "USER": self._user,
            "WORKDIR": self._workdir,
            "VOLUME": self._volume,
            "STOPSIGNAL": self._stop_signal,
            "ENTRYPOINT": self._entrypoint,
            "CMD": self._cmd,
        }

    def _variables(self) -> dict[str, str]:
        return {**self.config.args, **self.config.env}

    def _expand(self, instruction: Instruction, text: str) -> str:
        variables = self._variables()

        def value(match: re.Match[str]) -> str:
            name = match.group(1) or match.group(2)
            if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
                raise DockerfileError(
                    f"{instruction.where()}: ${{{name}}} is not supported"
                )
            return variables.get(name, "")

        return _VARIABLE.sub(value, text)

    def _from(self, instruction: Instruction) -> None:
        image = self._expand(instruction, instruction.arguments)
        match = _DEBIAN_SLIM.fullmatch(image)
        if match is None:
            raise DockerfileError(
                f"{instruction.where()}: base {image!r} is not supported. The "
                "runner replaces debian:SUITE-slim images only"
            )
        tarball = base_tarball(match.group(1), self.cache)
        self.rootfs.mkdir()
        subprocess.run(
            ["tar", "-C", str(self.rootfs), "-xpf", str(tarball)], check=True
        )
        self.config.base = image
        self.config.env = {"PATH": BASE_PATH}
        self.config.cmd = ["bash"]

    def _arg(self, instruction: Instruction) -> None:
        name, has_default, default = instruction.arguments.partition("=")
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
            raise DockerfileError(
                f"{instruction.where()}: expected one ARG NAME[=default] per line"
            )
        value = _unquote(instruction, default) if has_default else ""
        self.config.args[name] = self._expand(instruction, value)

    def _env(self, instruction: Instruction) -> None:
        self.config.env.update(self._pairs(instruction))

    def _label(self, instruction: Instruction) -> None:
        self.config.labels.update(self._pairs(instruction))

    def _pairs(self, instruction: Instruction) -> dict[str, str]:
        """Read KEY=VALUE pairs. The old `ENV KEY VALUE` form is rejected."""
        pairs = {}
        for word in shlex.split(instruction.arguments):
            key, has_value, value = word.partition("=")
            if not has_value or not key:
                raise DockerfileError(
                    f"{instruction.where()}: expected KEY=VALUE, got {word!r}"
                )
            pairs[key] = self._expand(instruction, value)
        return pairs

    def _run(self, instruction: Instruction) -> None:
        argv = _command(instruction, instruction.arguments)
        user = resolve_user(self.rootfs, self.config.user)
        # ARG values reach RUN as environment variables, below ENV's.
        environ = {**self.config.args, **self.config.env}
        environ.setdefault("HOME", user.home)
        spec = ContainerSpec(
            root=str(self.rootfs),
            argv=argv,
            environ=environ,
            uid=user.uid,
            gid=user.gid,
            groups=user.groups,
            workdir=self.config.workdir,
            hostname=new_hostname(),
            # Docker gives a build step the host's resolver settings.
            mounts=[Mount("/etc/resolv.conf", "/etc/resolv.conf", read_only=True)],
        )
        with self.log.open("a") as output:
            output.write(f"==> {instruction.where()}: {argv}\n")
        code = run_container(spec, self.log)
        if code != 0:
            tail = "\n".join(self.log.read_text().splitlines()[-20:])
            raise DockerfileError(
                f"{instruction.where()} exited with {code}. "
                f"{self.log} ends with:\n{tail}"
            )

    def _copy(self, instruction: Instruction) -> None:
        words = _words(instruction)
        destination = self._expand(instruction, words[-1])
        sources = _copy_sources(instruction, self.context, self._variables())
        if not destination.startswith("/"):
            destination = f"{self.config.workdir.rstrip('/')}/{destination}"
        into_folder = destination.endswith("/") or len(sources) > 1
        if len(sources) > 1 and not destination.endswith("/"):
            raise DockerfileError(
                f"{instruction.where()}: several sources need a folder ending in /"
            )

        target = self.rootfs / destination.lstrip("/")
        for source in sources:
            # Docker copies what a folder contains, never the folder itself.
            copied = target / source.name if into_folder else target
            if source.is_dir():
                copied = target
            copied.parent.mkdir(parents=True, exist_ok=True)
            if source.is_dir():
                shutil.copytree(source, copied, symlinks=True, dirs_exist_ok=True)
            else:
                shutil.copy2(source, copied)
            # COPY without --chown makes the files root's.
            subprocess.run(["chown", "-R", "0:0", str(copied)], check=True)

    def _user(self, instruction: Instruction) -> None:
        self.config.user = self._expand(instruction, instruction.arguments)

    def _workdir(self, instruction: Instruction) -> None:
        path = self._expand(instruction, instruction.arguments)
        if not path.startswith("/"):
            path = f"{self.config.workdir.rstrip('/')}/{path}"
        (self.rootfs / path.lstrip("/")).mkdir(parents=True, exist_ok=True)
        self.config.workdir = path

    def _volume(self, instruction: Instruction) -> None:
        text = self._expand(instruction, instruction.arguments)
        paths = _json_list(instruction, text) if text.startswith("[") else text.split()
        for path in paths:
            (self.rootfs / path.lstrip("/")).mkdir(parents=True, exist_ok=True)
            self.config.volumes.append(path)

    def _stop_signal(self, instruction: Instruction) -> None:
        value = self._expand(instruction, instruction.arguments)
        name = value if value.startswith("SIG") else f"SIG{value}"
        if not re.fullmatch(r"SIG[A-Z0-9]+", name):
            raise DockerfileError(f"{instruction.where()}: signal {value!r} is invalid")
        self.config.stop_signal = name

    def _entrypoint(self, instruction: Instruction) -> None:
        self.config.entrypoint = _command(instruction, instruction.arguments)
        # Docker drops the base image's CMD once ENTRYPOINT is set.
        self.config.cmd = []

    def _cmd(self, instruction: Instruction) -> None:
        self.config.cmd = _command(instruction, instruction.arguments)


SUPPORTED = (
    "FROM",
    "ARG",
    "ENV",
    "LABEL",
    "RUN",
    "COPY",
    "USER",
    "WORKDIR",
    "VOLUME",
    "STOPSIGNAL",
    "ENTRYPOINT",
    "CMD",
)


def check_supported(instructions: list[Instruction]) -> None:
    """Raise DockerfileError on the first instruction or flag the runner
    does not carry out, before any step of the build runs."""
    seen_from = False
    for instruction in instructions:
        if instruction.keyword not in SUPPORTED:
            raise DockerfileError(
                f"{instruction.where()}: not supported by this runner"
            )
        # Docker allows only ARG before FROM.
        if not seen_from and instruction.keyword not in ("FROM", "ARG"):
            raise DockerfileError(
                f"{instruction.where()}: a Dockerfile starts with FROM"
            )
        seen_from = seen_from or instruction.keyword == "FROM"
        _reject_flags(instruction)
    if sum(instruction.keyword == "FROM" for instruction in instructions) != 1:
        raise DockerfileError(
            "expected exactly one FROM, since the runner does not build multi-stage "
            "Dockerfiles"
        )


def _reject_flags(instruction: Instruction) -> None:
    if instruction.arguments.startswith("--"):
        flag = instruction.arguments.split()[0]
        raise DockerfileError(f"{instruction.where()}: flag {flag} is not supported")


def _command(instruction: Instruction, text: str) -> list[str]:
    """Return the argv of an exec form, or of a shell form run by /bin/sh -c."""
    if text.startswith("["):
        return _json_list(instruction, text)
    return ["/bin/sh", "-c", text]


def _json_list(instruction: Instruction, text: str) -> list[str]:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as error:
        raise DockerfileError(
            f"{instruction.where()}: invalid JSON form: {error}"
        ) from None
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise DockerfileError(f"{instruction.where()}: expected a JSON list of strings")
    return value


def _words(instruction: Instruction) -> list[str]:
    words = instruction.arguments.split()
    if len(words) < 2:
        raise DockerfileError(f"{instruction.where()}: expected SOURCE... DESTINATION")
    return words


def _copy_sources(
    instruction: Instruction, context: Path, variables: dict[str, str]
) -> list[Path]:
    """Return the context files a COPY names. A pattern that matches
    nothing fails, as it fails a docker build."""
    sources = []
    for word in _words(instruction)[:-1]:
        pattern = _VARIABLE.sub(
            lambda match: variables.get(match.group(1) or match.group(2), ""), word
        )
        if pattern.startswith("/") or ".." in Path(pattern).parts:
            raise DockerfileError(
                f"{instruction.where()}: {pattern} is outside the context"
            )
        matches = sorted(context.glob(pattern))
        if not matches:
            raise DockerfileError(
                f"{instruction.where()}: {pattern} matches nothing in the "
                f"context {context}"
            )
        sources.extend(matches)
    return sources


def _unquote(instruction: Instruction, value: str) -> str:
    words = shlex.split(value)
    if len(words) != 1:
        raise DockerfileError(
            f"{instruction.where()}: expected one value, got {value!r}"
        )
    return words[0]
