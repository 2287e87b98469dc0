"""The settings model and the loading of it from every source, in precedence order."""

import unicodedata
from collections.abc import Mapping
from contextvars import ContextVar
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Self
from urllib.parse import urlsplit

from pydantic import (
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

from jibrild.errors import SettingsError
from jibrild.sources import (
    DEFAULT_ORIGIN,
    EnvFileSettingsSource,
    EnvironSettingsSource,
    LayerSource,
    OptionsSettingsSource,
    Origin,
    SecretFilesSettingsSource,
    YamlFileSettingsSource,
)
from jibrild.sources.checks import (
    check_pem_file,
    hide_userinfo,
    is_loopback_host,
    is_visible_ascii,
    url_problem,
)
from jibrild.sources.env_file import DEFAULT_ENV_FILE_PATH
from jibrild.sources.keys import KEYS_BY_FIELD, SETTING_KEYS, SettingKey
from jibrild.sources.labels import is_dns_subdomain, label_key_problem
from jibrild.sources.log_levels import jibrild_log_level
from jibrild.sources.messages import describe_validation_error
from jibrild.sources.options import add_settings_options, options_from_args
from jibrild.sources.render import render_settings
from jibrild.sources.variables import UnknownVariable, find_unknown_variables
from jibrild.sources.yaml_file import DEFAULT_CONFIG_PATH

__all__ = [
    "DEFAULT_CONFIG_PATH",
    "DEFAULT_ENV_FILE_PATH",
    "SETTING_KEYS",
    "LoadedSettings",
    "SettingKey",
    "Settings",
    "add_settings_options",
    "load_settings",
    "options_from_args",
    "render_settings",
]


# The API contract limits label keys and values together to 256 kB.
MAX_LABELS_SIZE = 256 * 1024
_TRUE_WORDS = {"true", "1", "yes"}
_FALSE_WORDS = {"false", "0", "no"}

# load_settings hands its sources to settings_customise_sources through this
# variable, because that hook is a classmethod without arguments of our own.
_ACTIVE_SOURCES: ContextVar[tuple[LayerSource, ...]] = ContextVar(
    "_ACTIVE_SOURCES", default=()
)


class _FieldProblem(ValueError):
    """A check across fields, raised against the field the operator must fix."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


class Settings(BaseSettings):
    """The merged settings of jibrild; built directly, it reads no environment."""

    model_config = SettingsConfigDict(
        frozen=True, extra="forbid", hide_input_in_errors=True
    )

    api_url: str = "https://api.garnet.ai/"
    project_token: SecretStr | None = None
    agent_token_path: Path = Path("/var/lib/jibril/agent.token")
    request_timeout: float = Field(default=10.0, ge=1, le=300, allow_inf_nan=False)
    ca_file: Path | None = None
    allow_insecure_http: bool = False
    # At least 1 second, so that a typo cannot flood the API with heartbeats.
    heartbeat_interval: float = Field(default=60.0, ge=1, le=86400, allow_inf_nan=False)
    labels: dict[str, str] = Field(default_factory=dict)
    job: str | None = None
    cluster_name: str | None = None
    runtime_environment: Literal[
        "auto", "vanilla", "container", "kubernetes", "github"
    ] = "auto"
    log_level: Literal["debug", "info", "warning", "error"] = "info"

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings, *_ACTIVE_SOURCES.get())

    @field_validator(
        "api_url",
        "job",
        "cluster_name",
        "runtime_environment",
        "log_level",
        mode="before",
    )
    @classmethod
    def _strip_text(cls, value: object) -> object:
        return value.strip() if isinstance(value, str) else value

    @field_validator("runtime_environment", mode="before")
    @classmethod
    def _lower_case(cls, value: object) -> object:
        return value.lower() if isinstance(value, str) else value

    @field_validator("log_level", mode="before")
    @classmethod
    def _map_log_level(cls, value: object) -> object:
        # Jibril's level names, such as warn or fatal, are accepted from
        # every source, not only from the YAML file that Jibril shares.
        if not isinstance(value, str):
            return value
        return jibrild_log_level(value) or value.strip().lower()

    @field_validator("api_url")
    @classmethod
    def _check_api_url(cls, value: str) -> str:
        problem = url_problem(value)
        if problem is not None:
            raise ValueError(f"{problem}, got {hide_userinfo(value)!r}")
        return value

    @field_validator("project_token", mode="before")
    @classmethod
    def _check_project_token(cls, value: object) -> object:
        # The messages never contain the value, since it is a secret.
        if value is None:
            return None
        if isinstance(value, SecretStr):
            value = value.get_secret_value()
        if not isinstance(value, str):
            raise ValueError(f"expected {KEYS_BY_FIELD['project_token'].expected}")

        token = value.strip()
        if not token:
            return None
        if not is_visible_ascii(token):
            raise ValueError(
                "the project token must be visible ASCII characters without "
                "spaces, because it is sent in an HTTP header"
            )
        return token

    @field_validator("agent_token_path")
    @classmethod
    def _check_absolute(cls, value: Path) -> Path:
        if not value.is_absolute():
            raise ValueError(f"expected an absolute path, got {str(value)!r}")
        return value

    @field_validator("ca_file")
    @classmethod
    def _check_ca_file(cls, value: Path | None) -> Path | None:
        # A relative path would depend on the working folder, which is /
        # under systemd and somewhere else in a shell.
        if value is not None and not value.is_absolute():
            raise ValueError(f"expected an absolute path, got {str(value)!r}")
        if value is not None:
            check_pem_file(value)
        return value

    @field_validator("allow_insecure_http", mode="before")
    @classmethod
    def _parse_flag(cls, value: object) -> object:
        word = str(value).strip().lower()
        if isinstance(value, bool) or word not in _TRUE_WORDS | _FALSE_WORDS:
            return value
        return word in _TRUE_WORDS

    @field_validator("labels", mode="before")
    @classmethod
    def _labels_from_pairs(cls, value: object) -> object:
        # Sources give pairs, not a dict, so that pydantic-settings replaces
        # the labels of a lower source instead of merging the two mappings.
        if isinstance(value, tuple | list):
            return dict(value)
        return value

    @field_validator("labels")
    @classmethod
    def _check_labels(cls, value: dict[str, str]) -> dict[str, str]:
        for key in value:
            problem = label_key_problem(key)
            if problem is not None:
                raise ValueError(problem)

        size = sum(len(k.encode()) + len(v.encode()) for k, v in value.items())
        if size > MAX_LABELS_SIZE:
            raise ValueError(f"labels take {size} bytes, more than the 256 kB limit")
        return value

    @field_validator("job")
    @classmethod
    def _check_job(cls, value: str | None) -> str | None:
        if value is None:
            return None
        if not value or any(unicodedata.category(c) == "Cc" for c in value):
            raise ValueError(f"expected {KEYS_BY_FIELD['job'].expected}, got {value!r}")
        return value

    @field_validator("cluster_name")
    @classmethod
    def _check_cluster_name(cls, value: str | None) -> str | None:
        if value is not None and not is_dns_subdomain(value):
            expected = KEYS_BY_FIELD["cluster_name"].expected
            raise ValueError(f"expected {expected}, got {value!r}")
        return value

    @model_validator(mode="after")
    def _check_plain_http(self) -> Self:
        url = urlsplit(self.api_url)
        if url.scheme.lower() != "http" or self.allow_insecure_http:
            return self
        if is_loopback_host(url.hostname or ""):
            return self

        message = (
            f"plain http:// to {url.hostname} would send tokens unencrypted, "
            f"got {self.api_url!r}; use https://, or set "
            "GARNET_API_ALLOW_INSECURE_HTTP=true (run-time.api.allow-insecure-http)"
        )
        raise _FieldProblem("api_url", message)


@dataclass(frozen=True)
class LoadedSettings:
    """Settings together with where each value came from and any warnings."""

    settings: Settings
    origins: Mapping[str, str]  # field name -> origin, e.g. "option --api-url"
    warnings: tuple[str, ...]  # for the caller to log, e.g. file-mode warnings
    # GARNET_* and JIBRIL_* variables that set nothing, for the caller to log.
    unknown_variables: tuple[UnknownVariable, ...] = ()


def load_settings(
    options: Mapping[str, object],
    environ: Mapping[str, str],
    config_path: Path | None = None,
    env_file_path: Path | None = None,
) -> LoadedSettings:
    """Read every source and merge them, the highest precedence first.

    A None path means the default file, which may be missing; a given path
    must exist. Raises SettingsError naming the origin of the bad value. A
    validation error carries the unknown variables found before it.
    """
    sources = _read_sources(options, environ, config_path, env_file_path)
    origins = _winning_origins(sources)
    env_file = next(s for s in sources if isinstance(s, EnvFileSettingsSource))
    unknown = find_unknown_variables(environ, env_file.variables)

    try:
        settings = _validate(sources, origins)
    except SettingsError as error:
        error.unknown_variables = unknown
        raise

    texts = {field: origin.text for field, origin in origins.items()}
    warnings = tuple(warning for s in sources for warning in s.layer.warnings)
    return LoadedSettings(settings, texts, warnings, unknown)


def _read_sources(
    options: Mapping[str, object],
    environ: Mapping[str, str],
    config_path: Path | None,
    env_file_path: Path | None,
) -> tuple[LayerSource, ...]:
    env_file = EnvFileSettingsSource(
        Settings,
        DEFAULT_ENV_FILE_PATH if env_file_path is None else env_file_path,
        required=env_file_path is not None,
    )
    yaml_file = YamlFileSettingsSource(
        Settings,
        DEFAULT_CONFIG_PATH if config_path is None else config_path,
        required=config_path is not None,
    )
    return (
        OptionsSettingsSource(Settings, options),
        EnvironSettingsSource(Settings, environ),
        env_file,
        SecretFilesSettingsSource(Settings, environ, env_file.variables),
        yaml_file,
    )


def _winning_origins(sources: tuple[LayerSource, ...]) -> dict[str, Origin]:
    origins: dict[str, Origin] = {}
    for field in Settings.model_fields:
        layers = (s.layer for s in sources if field in s.layer.values)
        layer = next(layers, None)
        origins[field] = DEFAULT_ORIGIN if layer is None else layer.origins[field]
    return origins


def _validate(
    sources: tuple[LayerSource, ...], origins: Mapping[str, Origin]
) -> Settings:
    reset_token = _ACTIVE_SOURCES.set(sources)
    try:
        return Settings()
    except ValidationError as error:
        raise SettingsError(describe_validation_error(error, origins)) from None
    finally:
        _ACTIVE_SOURCES.reset(reset_token)
