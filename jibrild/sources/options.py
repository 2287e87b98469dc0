"""Settings from command-line options, and the options themselves."""

import argparse
from collections.abc import Mapping

from pydantic_settings import BaseSettings

from jibrild.errors import SettingsError
from jibrild.sources.keys import KEYS_BY_FIELD, SETTING_KEYS, TOKEN_FILE_ENV_VAR
from jibrild.sources.labels import parse_label_assignments
from jibrild.sources.layer import Layer, LayerSource, Origin

REJECTED_TOKEN_OPTIONS = ("--api-token", "--token", "--project-token")
_REJECTED_TOKEN_DEST = "rejected_project_token_option"  # noqa: S105 -- a name

TOKEN_ON_COMMAND_LINE_MESSAGE = (
    "the project token is not accepted on the command line, because every "
    "local user can read it in /proc/PID/cmdline; set GARNET_API_TOKEN in "
    f"/etc/default/jibril (mode 600), point {TOKEN_FILE_ENV_VAR} at a file "
    "that contains it, or pass it with systemd's LoadCredential=garnet-api-token"
)


def add_settings_options(parser: argparse.ArgumentParser) -> None:
    """Add --api-url, --agent-token-path, ... and the rejected token options.

    Options the user leaves out are absent from the namespace, so that
    options_from_args can tell them from options given with a default value.
    """
    group = parser.add_argument_group("settings")
    for key in SETTING_KEYS:
        if key.option is None:
            continue

        if key.kind == "flag":
            group.add_argument(
                key.option,
                dest=key.field,
                action="store_true",
                default=argparse.SUPPRESS,
                help=key.help,
            )
        elif key.kind == "labels":
            group.add_argument(
                key.option,
                dest=key.field,
                action="append",
                metavar="KEY=VALUE",
                default=argparse.SUPPRESS,
                help=key.help,
            )
        else:
            metavar = key.option.removeprefix("--").replace("-", "_").upper()
            group.add_argument(
                key.option,
                dest=key.field,
                metavar=metavar,
                default=argparse.SUPPRESS,
                help=key.help,
            )

    # The value is optional so that `--token` alone gets the same explanation.
    group.add_argument(
        *REJECTED_TOKEN_OPTIONS,
        dest=_REJECTED_TOKEN_DEST,
        nargs="?",
        default=argparse.SUPPRESS,
        help=argparse.SUPPRESS,
    )


def options_from_args(args: argparse.Namespace) -> dict[str, object]:
    """Return field name -> raw value, only for options the user gave.

    Raises SettingsError for a project token given on the command line.
    """
    given_options = vars(args)
    if _REJECTED_TOKEN_DEST in given_options:
        raise SettingsError(TOKEN_ON_COMMAND_LINE_MESSAGE)

    return {
        key.field: given_options[key.field]
        for key in SETTING_KEYS
        if key.option is not None and key.field in given_options
    }


def read_options(options: Mapping[str, object]) -> Layer:
    """Build the layer of the options; labels come as a list of KEY=VALUE."""
    values: dict[str, object] = {}
    origins: dict[str, Origin] = {}
    for field, value in options.items():
        key = KEYS_BY_FIELD.get(field)
        if key is None or key.option is None:
            raise ValueError(f"no command-line option sets the field {field!r}")

        origin = Origin.named(f"option {key.option}")
        if key.kind == "labels" and isinstance(value, list | tuple):
            assignments = map(str, value)
            values[field] = parse_label_assignments(assignments, origin.error_prefix)
        else:
            values[field] = value
        origins[field] = origin

    return Layer(values, origins)


class OptionsSettingsSource(LayerSource):
    """Command-line options, already parsed by argparse."""

    def __init__(
        self, settings_cls: type[BaseSettings], options: Mapping[str, object]
    ) -> None:
        super().__init__(settings_cls, read_options(options))
