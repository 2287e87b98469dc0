"""The Dockerfile runner reads instructions as Docker does and rejects,
before any build step, every instruction or form it would not carry out."""

from pathlib import Path

import pytest

from tests.packaging.dockerfile import (
    DockerfileError,
    Instruction,
    check_supported,
    parse,
)

DOCKERFILE = Path(__file__).resolve().parents[2] / "packaging/docker/Dockerfile"
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


def test_instruction_before_from_rejected() -> None:
    """Only ARG may come before FROM."""
    with pytest.raises(DockerfileError, match="starts with FROM"):
        check_supported(parse("RUN true\n" + BASE))


def test_dockerfile_supported() -> None:
    """Every instruction of packaging/docker/Dockerfile is one the runner
    carries out."""
    check_supported(parse(DOCKERFILE.read_text()))
