"""Raw values, their origins and warnings: the output of every settings source."""

import os
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource

from jibrild.errors import SettingsError


@dataclass(frozen=True)
class Origin:
    """The source of a raw value, as shown to the operator."""

    text: str  # e.g. "/etc/jibril/config.yaml:4 (run-time.api.url)"
    error_prefix: str  # e.g. "/etc/jibril/config.yaml:4: run-time.api.url"

    @classmethod
    def at_line(cls, path: Path, line: int, key: str) -> "Origin":
        """Build the origin of a key on a 1-based line of a file."""
        return cls(f"{path}:{line} ({key})", f"{path}:{line}: {key}")

    @classmethod
    def named(cls, text: str) -> "Origin":
        """Build an origin whose error prefix is its text."""
        return cls(text, text)


DEFAULT_ORIGIN = Origin.named("default")


@dataclass(frozen=True)
class Layer:
    """Raw values of one source by field name, before the model validates them."""

    values: dict[str, object] = field(default_factory=dict)
    origins: dict[str, Origin] = field(default_factory=dict)
    warnings: tuple[str, ...] = ()


class LayerSource(PydanticBaseSettingsSource):
    """A pydantic-settings source whose values were read when it was built.

    Reading happens up front, so a broken file raises SettingsError before
    the model runs and the origins stay available afterwards.
    """

    def __init__(self, settings_cls: type[BaseSettings], layer: Layer) -> None:
        super().__init__(settings_cls)
        self.layer = layer

    def get_field_value(
        self, field: FieldInfo, field_name: str
    ) -> tuple[Any, str, bool]:
        return self.layer.values.get(field_name), field_name, False

    def __call__(self) -> dict[str, Any]:
        return dict(self.layer.values)


@dataclass(frozen=True)
class FileContent:
    """The bytes of a settings file and its permission bits."""

    data: bytes
    mode: int


def read_settings_file(
    path: Path, *, required: bool, description: str, option: str
) -> FileContent | None:
    """Read a whole settings file, or return None when an optional one is missing.

    The error names the file and what to do; `option` is the command-line
    option that chooses the path.
    """
    try:
        with path.open("rb") as stream:
            mode = os.fstat(stream.fileno()).st_mode
            if stat.S_ISDIR(mode):
                raise IsADirectoryError
            return FileContent(stream.read(), stat.S_IMODE(mode))
    except FileNotFoundError:
        if required:
            message = (
                f"{description} {path} not found; check the path given with {option}"
            )
            raise SettingsError(message) from None
        return None
    except PermissionError:
        message = (
            f"cannot read {description} {path}: permission denied; "
            "check its permissions"
        )
        raise SettingsError(message) from None
    except IsADirectoryError:
        message = f"{description} {path} is a directory; expected a file"
        raise SettingsError(message) from None
    except OSError as error:
        message = f"cannot read {description} {path}: {error.strerror}"
        raise SettingsError(message) from None


def token_mode_warning(path: Path, mode: int) -> str | None:
    """Return a warning when a file with the project token is readable by others."""
    if mode & (stat.S_IRGRP | stat.S_IROTH) == 0:
        return None

    return (
        f"{path} contains the project token and is readable by group or others "
        f"(mode {mode:04o}); run 'chmod 600 {path}'"
    )


def line_of_offset(data: bytes, offset: int) -> int:
    """Return the 1-based line that a byte offset of a file falls on."""
    return data.count(b"\n", 0, offset) + 1
