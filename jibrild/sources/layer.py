"""Raw values, their origins and warnings: the output of every settings source."""

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource


@dataclass(frozen=True)
class Origin:
    """The source of a raw value, as shown to the operator."""

    text: str  # e.g. "/etc/jibril/config.yaml:4 (run-time.api.url)"
    error_prefix: str  # e.g. "/etc/jibril/config.yaml:4: run-time.api.url"
    place: str  # without the key, e.g. "/etc/default/jibril:3"

    @classmethod
    def at_line(cls, path: Path, line: int, key: str) -> "Origin":
        """Build the origin of a key on a 1-based line of a file."""
        place = f"{path}:{line}"
        return cls(f"{place} ({key})", f"{place}: {key}", place)

    @classmethod
    def named(cls, text: str, place: str | None = None) -> "Origin":
        """Build an origin whose error prefix is its text.

        The place defaults to the text as well.
        """
        return cls(text, text, text if place is None else place)


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
