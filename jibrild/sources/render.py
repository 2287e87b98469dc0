"""The effective settings written back as YAML under `run-time:`."""

from pathlib import Path
from typing import TYPE_CHECKING

import yaml
from pydantic import SecretStr

from jibrild.sources.keys import SETTING_KEYS

if TYPE_CHECKING:
    from jibrild.settings import LoadedSettings

MASKED_TOKEN = "**********"  # noqa: S105 -- shown in place of the token


def render_settings(loaded: "LoadedSettings", show_origin: bool) -> str:
    """Render the settings as YAML the config file accepts, token masked.

    With show_origin, each key carries a `# origin` comment naming the source
    of its value.
    """
    lines = ["run-time:"]
    current_group = ""
    for key in SETTING_KEYS:
        group, _, name = key.yaml_key.rpartition(".")
        if group and group != current_group:
            lines.append(f"  {group}:")
        current_group = group

        indent = "    " if group else "  "
        value = getattr(loaded.settings, key.field)
        comment = ""
        if show_origin:
            comment = f"  # {loaded.origins.get(key.field, 'default')}"
        lines.extend(_render_entry(indent, name, value, comment))

    return "\n".join(lines) + "\n"


def _render_entry(indent: str, name: str, value: object, comment: str) -> list[str]:
    if isinstance(value, dict) and value:
        entries = [
            f"{indent}  {_scalar(label)}: {_scalar(text)}"
            for label, text in value.items()
        ]
        return [f"{indent}{name}:{comment}", *entries]

    return [f"{indent}{name}: {_scalar(value)}{comment}"]


def _scalar(value: object) -> str:
    """Render one value as a YAML flow scalar that reads back the same."""
    if isinstance(value, SecretStr):
        value = MASKED_TOKEN
    elif isinstance(value, Path):
        value = str(value)

    text = yaml.safe_dump(value, default_flow_style=True, width=1_000_000)
    return text.removesuffix("\n...\n").removesuffix("\n")
