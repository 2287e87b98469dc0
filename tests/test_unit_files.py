"""Tests that the shipped systemd files match the daemon."""

import os
import re
import subprocess
import sys
from pathlib import Path

import yaml

from jibrild.cli import COMMANDS, EXIT_CODES
from jibrild.errors import ExitCode
from jibrild.settings import SETTING_KEYS
from jibrild.sources.env_file import parse_env_text
from tests.tls import make_private_ca

SYSTEMD = Path(__file__).resolve().parent.parent / "systemd"
PACKAGING = SYSTEMD.parent / "packaging"


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


def _uncommented_config(tmp_path: Path) -> Path:
    """Write the packaged config.yaml with every example uncommented and the
    CA file pointing at a file that exists."""
    text = (PACKAGING / "deb" / "config.yaml").read_text()
    lines = re.findall(r"^#((?:run-time:|  ).*)$", text, re.MULTILINE)
    examples = [line for line in lines if not line.lstrip().startswith("#")]
    ca_file = make_private_ca(tmp_path / "ca").ca_file
    config = tmp_path / "config.yaml"
    config.write_text(
        "\n".join(examples).replace("/etc/jibril/garnet-ca.pem", str(ca_file))
    )
    return config


def test_packaged_config_names_every_yaml_key(tmp_path: Path) -> None:
    """The commented /etc/jibril/config.yaml names every YAML key."""
    config = _uncommented_config(tmp_path)

    layer = yaml.safe_load(config.read_text())["run-time"]

    named = {f"api.{key}" for key in layer.pop("api")} | set(layer)
    assert {key.yaml_key for key in SETTING_KEYS} == named


def test_packaged_config_loads_uncommented(tmp_path: Path) -> None:
    """Every commented example is a valid setting once uncommented, and the
    file as shipped, all comments, is valid too."""
    config = _uncommented_config(tmp_path)

    for path in (config, PACKAGING / "deb" / "config.yaml"):
        result = subprocess.run(
            [sys.executable, "-m", "jibrild", "config", "--config", str(path)],
            capture_output=True,
            text=True,
            env={"PATH": os.environ["PATH"]},
            check=False,
        )
        assert 0 == result.returncode, result.stderr


def _config_output(tmp_path: Path, env_text: str) -> str:
    env_file = tmp_path / "jibril.env"
    env_file.write_text(env_text)
    env_file.chmod(0o600)
    config = tmp_path / "config.yaml"
    config.write_text("")
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "jibrild",
            "config",
            "--env-file",
            str(env_file),
            "--config",
            str(config),
        ],
        capture_output=True,
        text=True,
        env={"PATH": os.environ["PATH"]},
        check=True,
    )
    return result.stdout


def test_postinst_reads_a_missing_project_token(tmp_path: Path) -> None:
    """The package's postinst starts the unit only when `jibrild config`
    prints a project token, so the line it looks for must match exactly
    when none is set and never when one is."""
    postinst = (PACKAGING / "deb" / "postinst").read_text()
    [pattern] = re.findall(r"grep -q '(.*)'", postinst)

    without = _config_output(tmp_path, "#GARNET_API_TOKEN=\n")
    with_token = _config_output(tmp_path, "GARNET_API_TOKEN=pt-unit-files\n")

    assert re.search(pattern, without, re.MULTILINE)
    assert not re.search(pattern, with_token, re.MULTILINE)


def test_man_page_lists_every_command() -> None:
    """The package's man page describes exactly the commands jibrild has."""
    page = (PACKAGING / "deb" / "jibrild.8").read_text()
    section = page.split(".SH COMMANDS\n", 1)[1].split("\n.SH ", 1)[0]

    # Each command is a .TP paragraph whose tag line is ".B name ...".
    listed = re.findall(r"^\.TP\n\.B (\S+)", section, re.MULTILINE)

    assert sorted(COMMANDS) == sorted(name.replace("\\-", "-") for name in listed)
