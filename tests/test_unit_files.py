"""Tests that the shipped systemd files match the daemon."""

import re
from pathlib import Path

from jibrild.cli import EXIT_CODES
from jibrild.errors import ExitCode
from jibrild.settings import SETTING_KEYS
from jibrild.sources.env_file import parse_env_text

SYSTEMD = Path(__file__).resolve().parent.parent / "systemd"


def test_default_template_names_every_variable() -> None:
    """The /etc/default/jibril template lists exactly the daemon's variables."""
    text = (SYSTEMD / "jibril.default").read_text()

    named = set(re.findall(r"^#([A-Z_]+)=", text, re.MULTILINE))

    expected = {key.env_var for key in SETTING_KEYS if key.env_var}
    expected.add("GARNET_API_TOKEN_FILE")
    assert expected == named


def test_default_template_parses_uncommented() -> None:
    """Every commented example is a valid line once uncommented."""
    text = (SYSTEMD / "jibril.default").read_text()
    examples = re.findall(r"^#([A-Z_]+=.*)$", text, re.MULTILINE)

    assignments = parse_env_text("\n".join(examples) + "\n")

    assert len(examples) == len(assignments)


def test_restart_prevented_for_permanent_failures() -> None:
    """The unit does not restart on exit codes a restart cannot fix."""
    unit = (SYSTEMD / "jibril.service").read_text()

    [line] = re.findall(r"^RestartPreventExitStatus=(.*)$", unit, re.MULTILINE)

    permanent = {
        ExitCode.REGISTRATION_REJECTED,
        ExitCode.STATE,
        ExitCode.LOCKED,
        ExitCode.PROJECT_TOKEN_REJECTED,
        ExitCode.SETTINGS,
    }
    assert {int(code) for code in permanent} == {int(code) for code in line.split()}


def test_help_lists_every_exit_code() -> None:
    """--help documents every exit code the daemon uses."""
    listed = {int(code) for code in re.findall(r"^  (\d+) ", EXIT_CODES, re.MULTILINE)}

    assert {int(code) for code in ExitCode} <= listed
