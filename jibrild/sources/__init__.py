"""Settings sources: CLI options, environment, env file, secret files, YAML file."""

from jibrild.sources.env_file import EnvFileSettingsSource
from jibrild.sources.environ import EnvironSettingsSource
from jibrild.sources.layer import DEFAULT_ORIGIN, Layer, LayerSource, Origin
from jibrild.sources.options import OptionsSettingsSource
from jibrild.sources.secret_files import SecretFilesSettingsSource
from jibrild.sources.yaml_file import YamlFileSettingsSource

__all__ = [
    "DEFAULT_ORIGIN",
    "EnvFileSettingsSource",
    "EnvironSettingsSource",
    "Layer",
    "LayerSource",
    "OptionsSettingsSource",
    "Origin",
    "SecretFilesSettingsSource",
    "YamlFileSettingsSource",
]
