"""Settings from the process environment, and the variable rules the env file shares."""

from collections.abc import Mapping

from pydantic_settings import BaseSettings

from jibrild.sources.keys import KEYS_BY_ENV_VAR
from jibrild.sources.labels import parse_label_list
from jibrild.sources.layer import Layer, LayerSource, Origin


def layer_from_variables(variables: Mapping[str, tuple[str, Origin]]) -> Layer:
    """Build a layer from variable name -> (value, origin), ignoring unknown names.

    An empty or blank value counts as unset, as with a bare `NAME=` line that
    a packaged /etc/default file often carries.
    """
    values: dict[str, object] = {}
    origins: dict[str, Origin] = {}
    for name, (value, origin) in variables.items():
        key = KEYS_BY_ENV_VAR.get(name)
        if key is None or not value.strip():
            continue

        if key.kind == "labels":
            values[key.field] = parse_label_list(value, origin.error_prefix)
        else:
            values[key.field] = value
        origins[key.field] = origin

    return Layer(values, origins)


def environment_origin(name: str) -> Origin:
    """Return the origin of a variable of the process environment."""
    return Origin.named(f"environment variable {name}", "environment variable")


def read_environment(environ: Mapping[str, str]) -> Layer:
    """Build the layer of the process environment."""
    variables = {
        name: (value, environment_origin(name))
        for name, value in environ.items()
        if name in KEYS_BY_ENV_VAR
    }
    return layer_from_variables(variables)


class EnvironSettingsSource(LayerSource):
    """The process environment, restricted to the variables jibrild defines."""

    def __init__(
        self, settings_cls: type[BaseSettings], environ: Mapping[str, str]
    ) -> None:
        super().__init__(settings_cls, read_environment(environ))
