"""The Dockerfile runner reads instructions as Docker does and rejects,
before any build step, every instruction or form it would not carry out."""

import tomllib
from pathlib import Path

import pytest

from tests.packaging.dockerfile import (
    DockerfileError,
    Instruction,
    _Builder,
    _copy_sources,
    build_variables,
    check_supported,
    parse,
)

CHECKOUT = Path(__file__).resolve().parents[2]
DOCKERFILE = CHECKOUT / "packaging/docker/Dockerfile"
PYPROJECT = CHECKOUT / "pyproject.toml"
BASE = "FROM debian:bookworm-20250630-slim\n"


def test_parse_joins_continuations() -> None:
    """Continuation lines join into one instruction at its first line, and
    comment lines inside it are dropped."""
    text = (
        "# heading\nFROM debian:bookworm-slim\n\n"
        'RUN a \\\n# note\n    && b\nCMD ["x"]\n'
    )

    instructions = parse(text)

    assert [
        Instruction(2, "FROM", "debian:bookworm-slim"),
        Instruction(4, "RUN", "a      && b"),
        Instruction(7, "CMD", '["x"]'),
    ] == instructions


def test_parse_rejects_directive() -> None:
    """A parser directive, which changes how the file is read, is rejected."""
    with pytest.raises(DockerfileError, match="parser directive 'escape'"):
        parse("# escape=`\nFROM debian:bookworm-slim\n")


def test_parse_rejects_open_continuation() -> None:
    """A file that ends inside a continuation is rejected."""
    with pytest.raises(DockerfileError, match="ends inside a continuation"):
        parse("FROM debian:bookworm-slim\nRUN a \\\n")


@pytest.mark.parametrize(
    "line",
    [
        "ADD https://example.invalid/x /x",
        "EXPOSE 80",
        "HEALTHCHECK CMD true",
        'SHELL ["/bin/bash", "-c"]',
        "ONBUILD RUN true",
        "MAINTAINER someone",
    ],
)
def test_unknown_instruction_rejected(line: str) -> None:
    """An instruction the runner does not carry out fails the build."""
    keyword = line.split(maxsplit=1)[0]

    with pytest.raises(DockerfileError, match=f"line 2 \\({keyword}\\): not supported"):
        check_supported(parse(BASE + line + "\n"))


@pytest.mark.parametrize(
    "line",
    [
        "RUN --mount=type=cache,target=/root/.cache true",
        "COPY --chown=1:1 a /a",
        "COPY --from=build /a /a",
    ],
)
def test_instruction_flag_rejected(line: str) -> None:
    """A flag the runner does not carry out fails the build."""
    with pytest.raises(DockerfileError, match="flag --"):
        check_supported(parse(BASE + line + "\n"))


def test_second_from_rejected() -> None:
    """A multi-stage Dockerfile fails the build."""
    with pytest.raises(DockerfileError, match="exactly one FROM"):
        check_supported(parse(BASE + BASE))


@pytest.mark.parametrize("preamble", ["RUN true\n", "ARG SUITE=bookworm\nRUN true\n"])
def test_instruction_before_from_rejected(preamble: str) -> None:
    """Only ARG may come before FROM, even after an ARG."""
    with pytest.raises(DockerfileError, match="starts with FROM"):
        check_supported(parse(preamble + BASE))


def test_arg_before_from_accepted() -> None:
    """An ARG before FROM is accepted, as Docker accepts it."""
    check_supported(parse("ARG SUITE=bookworm\n" + BASE))


def test_project_dockerfile_is_supported() -> None:
    """Every instruction of packaging/docker/Dockerfile is one the runner
    carries out."""
    check_supported(parse(DOCKERFILE.read_text()))


@pytest.mark.parametrize("destination", ["/etc/app/", "/etc/app"])
def test_copy_folder_copies_contents(tmp_path: Path, destination: str) -> None:
    """COPY of a folder copies what the folder contains, not the folder
    itself, as Docker does, with or without a trailing / on the target."""
    context = tmp_path / "context"
    (context / "conf" / "sub").mkdir(parents=True)
    (context / "conf" / "a.txt").write_text("a\n")
    (context / "conf" / "sub" / "b.txt").write_text("b\n")
    rootfs = tmp_path / "rootfs"
    rootfs.mkdir()
    [instruction] = parse(f"COPY conf {destination}\n")
    builder = _Builder([instruction], context, tmp_path, rootfs, tmp_path / "log")

    builder.run()

    assert "a\n" == (rootfs / "etc/app/a.txt").read_text()
    assert "b\n" == (rootfs / "etc/app/sub/b.txt").read_text()
    assert not (rootfs / "etc/app/conf").exists()


def test_copy_takes_own_version_package(tmp_path: Path) -> None:
    """The Dockerfile's COPY picks the packages of jibrild's version, even
    when the build context also contains a newer one, which apt would
    install in its place."""
    version = tomllib.loads(PYPROJECT.read_text())["project"]["version"]
    instructions = parse(DOCKERFILE.read_text())
    [copy] = [
        instruction for instruction in instructions if instruction.keyword == "COPY"
    ]
    for release in (f"{version}-1", f"{version}-2", "99.0.0-1"):
        (tmp_path / f"jibril_{release}_amd64.deb").write_bytes(b"")

    sources = _copy_sources(copy, tmp_path, build_variables(instructions))

    assert [f"jibril_{version}-1_amd64.deb", f"jibril_{version}-2_amd64.deb"] == [
        source.name for source in sources
    ]
