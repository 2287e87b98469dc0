"""Loading the settings again on SIGHUP, as the operator edited them."""

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from jibrild.logs import get_logger
from jibrild.settings import LoadedSettings, Settings, load_settings
from jibrild.sources.env_file import read_env_file
from jibrild.sources.keys import KEYS_BY_FIELD
from jibrild.sources.variables import UnknownVariable

# Settings the running daemon cannot change in place: they decide which API
# and which token it holds, so a restart applies them.
RESTART_FIELDS = frozenset(
    {
        "api_url",
        "agent_token_path",
        "ca_file",
        "request_timeout",
        "allow_insecure_http",
        "runtime_environment",
        "cluster_name",
        "job",
    }
)


@dataclass
class SettingsReloader:
    """The inputs of the first settings load, kept to load them again."""

    options: Mapping[str, object]
    environ: Mapping[str, str]
    config_path: Path | None
    env_file_path: Path | None
    _from_env_file: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        # Under systemd, EnvironmentFile= copied /etc/default/jibril into the
        # process environment at start. Those copies would outrank the edited
        # file on reload, so variables still equal to the file's values at
        # start are taken as the file's own and left to the file.
        self._from_env_file = _env_file_values(self.env_file_path)

    def load(self) -> LoadedSettings:
        """Load the settings from every source again."""
        environ = {
            name: value
            for name, value in self.environ.items()
            if self._from_env_file.get(name) != value
        }
        return load_settings(
            self.options, environ, self.config_path, self.env_file_path
        )

    @staticmethod
    def changed(old: Settings, new: Settings) -> list[str]:
        """Return the names of the settings that differ."""
        return [
            name
            for name in type(old).model_fields
            if getattr(old, name) != getattr(new, name)
        ]


def _env_file_values(path: Path | None) -> dict[str, str]:
    try:
        return read_env_file(path)
    except Exception:
        return {}


def setting_key(field_name: str) -> str:
    """Return the YAML key operators know a settings field by."""
    return f"run-time.{KEYS_BY_FIELD[field_name].yaml_key}"


def log_settings_warnings(loaded: LoadedSettings) -> None:
    """Log each warning of a settings load once."""
    log = get_logger()
    for warning in loaded.warnings:
        log.warning(warning)
    log_unknown_variables(loaded.unknown_variables)


def log_unknown_variables(unknown: Iterable[UnknownVariable]) -> None:
    """Log a warning for each GARNET_* or JIBRIL_* variable that sets nothing."""
    log = get_logger()
    for variable in unknown:
        log.warning("unknown variable ignored", **variable.log_fields())
