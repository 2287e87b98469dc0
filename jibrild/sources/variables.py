"""The GARNET_* and JIBRIL_* variables jibrild reads, and warnings about the rest.

A misspelt variable sets nothing, so each variable with one of these
prefixes that jibrild does not read gets a warning, never an error, because
other software may own such a variable. A warning names the variable and where it
was found, never its value, because the value may be a token.
"""

import difflib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from jibrild.sources.keys import (
    SETTING_KEYS,
    SETTINGS_COPIES_ENV_VAR,
    TOKEN_FILE_ENV_VAR,
)
from jibrild.sources.layer import Origin

# Every variable with one of OWN_PREFIXES that the code reads. A test scans
# jibrild/ and fails when the code names such a variable that is missing here.
KNOWN_VARIABLES: frozenset[str] = frozenset(
    {
        *(key.env_var for key in SETTING_KEYS),
        TOKEN_FILE_ENV_VAR,
        SETTINGS_COPIES_ENV_VAR,
    }
)

# A name is checked whatever its case, so a lower-case garnet_api_url is
# reported too. Both prefixes have the same length.
OWN_PREFIXES = ("GARNET_", "JIBRIL_")
_PREFIX_LENGTH = len(OWN_PREFIXES[0])

ENVIRONMENT_ORIGIN = "environment"


@dataclass(frozen=True)
class UnknownVariable:
    """A variable with one of OWN_PREFIXES that jibrild does not read."""

    name: str
    origin: str  # "environment", or the env file and line, e.g. /etc/default/jibril:3
    suggestion: str | None  # the closest known variable, when one is close

    def log_fields(self) -> dict[str, str]:
        """Return the key=value fields of the warning about this variable."""
        fields = {"variable": self.name, "origin": self.origin}
        if self.suggestion is not None:
            fields["did_you_mean"] = self.suggestion
        return fields


def find_unknown_variables(
    environ_names: Iterable[str],
    env_file_variables: Mapping[str, tuple[str, Origin]],
) -> tuple[UnknownVariable, ...]:
    """List the unknown variables of the env file, then those of the environment.

    A name found in both is listed once, as the env file's, because
    jibril.service copies the env file into the environment
    (EnvironmentFile=) and the file is where the operator fixes it.
    """
    unknown = [
        _unknown_variable(name, origin.place)
        for name, (_, origin) in env_file_variables.items()
        if _is_unknown(name)
    ]
    unknown.extend(
        _unknown_variable(name, ENVIRONMENT_ORIGIN)
        for name in sorted(environ_names)
        if _is_unknown(name) and name not in env_file_variables
    )
    return tuple(unknown)


def _is_unknown(name: str) -> bool:
    return name.upper().startswith(OWN_PREFIXES) and name not in KNOWN_VARIABLES


def _unknown_variable(name: str, origin: str) -> UnknownVariable:
    return UnknownVariable(name, origin, _closest_known_variable(name))


def _closest_known_variable(name: str) -> str | None:
    """Return the known variable whose name after the prefix is closest.

    Comparing without the prefix keeps the shared GARNET_ or JIBRIL_ from
    making unrelated names look close, and lets GARNET_HEARTBEAT_INTERVAL
    suggest JIBRIL_HEARTBEAT_INTERVAL.
    """
    by_suffix = {known[_PREFIX_LENGTH:]: known for known in KNOWN_VARIABLES}
    suffix = name[_PREFIX_LENGTH:].upper()
    matches = difflib.get_close_matches(suffix, sorted(by_suffix), n=1)
    return by_suffix[matches[0]] if matches else None
