"""Tests of the settings options, the rendered settings and token hygiene."""

import argparse
from pathlib import Path

import pytest
import yaml
from pydantic import SecretStr

from jibrild.errors import SettingsError
from jibrild.settings import (
    LoadedSettings,
    Settings,
    add_settings_options,
    load_settings,
    options_from_args,
    render_settings,
)

PLANTED = "pl4nted-T0KEN-value"


def parse(argv: list[str]) -> argparse.Namespace:
    """Parse argv with a parser that has only the settings options."""
    parser = argparse.ArgumentParser(prog="jibrild")
    add_settings_options(parser)
    return parser.parse_args(argv)


def empty_files(folder: Path) -> tuple[Path, Path]:
    """Create an empty config file and env file and return their paths."""
    config = folder / "config.yaml"
    env_file = folder / "jibril"
    config.write_text("")
    env_file.write_text("")
    return config, env_file


def test_options_only_given_ones() -> None:
    """options_from_args returns only the options on the command line."""
    args = parse(
        ["--api-url", "https://x.example/", "--label", "a=1", "--label", "b=2"]
    )

    options = options_from_args(args)

    assert options == {"api_url": "https://x.example/", "labels": ["a=1", "b=2"]}


def test_options_none_given() -> None:
    """No option on the command line gives an empty mapping."""
    assert options_from_args(parse([])) == {}


def test_options_every_setting() -> None:
    """Every option reaches its field."""
    argv = [
        "--api-url=https://x/",
        "--agent-token-path=/a",
        "--request-timeout=3",
        "--ca-file=/c.pem",
        "--allow-insecure-http",
        "--heartbeat-interval=5",
        "--label=a=1",
        "--job=j",
        "--cluster-name=c",
        "--runtime-environment=vanilla",
        "--log-level=debug",
    ]

    options = options_from_args(parse(argv))

    assert options == {
        "api_url": "https://x/",
        "agent_token_path": "/a",
        "request_timeout": "3",
        "ca_file": "/c.pem",
        "allow_insecure_http": True,
        "heartbeat_interval": "5",
        "labels": ["a=1"],
        "job": "j",
        "cluster_name": "c",
        "runtime_environment": "vanilla",
        "log_level": "debug",
    }


@pytest.mark.fault(
    case=18,
    behaviour="--token, --api-token and --project-token are rejected with the safe "
    "ways to pass the token.",
)
@pytest.mark.parametrize(
    "argv",
    [
        ["--token", PLANTED],
        ["--api-token", PLANTED],
        [f"--project-token={PLANTED}"],
        ["--token"],
    ],
)
def test_token_option_rejected(argv: list[str]) -> None:
    """A token option fails with the safe ways to pass the token."""
    args = parse(argv)

    with pytest.raises(SettingsError) as caught:
        options_from_args(args)

    expected = (
        "the project token is not accepted on the command line, because every "
        "local user can read it in /proc/PID/cmdline; set GARNET_API_TOKEN in "
        "/etc/default/jibril (mode 600), point GARNET_API_TOKEN_FILE at a file "
        "that contains it, or pass it with systemd's "
        "LoadCredential=garnet-api-token"
    )
    assert str(caught.value) == expected


def test_token_options_hidden_from_help() -> None:
    """The rejected token options are not offered in the help."""
    parser = argparse.ArgumentParser(prog="jibrild")
    add_settings_options(parser)

    help_text = parser.format_help()

    assert "--token" not in help_text
    assert "--api-url" in help_text


def test_label_option_without_equals(tmp_path: Path) -> None:
    """A --label without '=' names the option."""
    config, env_file = empty_files(tmp_path)

    with pytest.raises(SettingsError) as caught:
        load_settings({"labels": ["team"]}, {}, config, env_file)

    assert (
        str(caught.value) == "option --label: expected a label as KEY=VALUE, got 'team'"
    )


def test_render_defaults_with_origins() -> None:
    """Rendered settings show each key under run-time with its origin."""
    loaded_settings = Settings()
    origins = {name: "default" for name in Settings.model_fields}
    origins["job"] = "option --job"

    text = render_settings(
        LoadedSettings(loaded_settings.model_copy(update={"job": "j"}), origins, ()),
        show_origin=True,
    )

    assert text == (
        "run-time:\n"
        "  api:\n"
        "    url: https://api.garnet.ai/  # default\n"
        "    token: null  # default\n"
        "    agent-token-path: /var/lib/jibril/agent.token  # default\n"
        "    request-timeout: 10.0  # default\n"
        "    ca-file: null  # default\n"
        "    allow-insecure-http: false  # default\n"
        "  heartbeat-interval: 60.0  # default\n"
        "  labels: {}  # default\n"
        "  job: j  # option --job\n"
        "  cluster-name: null  # default\n"
        "  runtime-environment: auto  # default\n"
        "  log-level: info  # default\n"
    )


def test_render_reads_back(tmp_path: Path) -> None:
    """Rendered settings load back as a config file to the same settings."""
    config, env_file = empty_files(tmp_path)
    options: dict[str, object] = {"labels": ["a=1", "example.com/yes=no"], "job": "*j"}
    loaded = load_settings(options, {"GARNET_API_TOKEN": PLANTED}, config, env_file)

    config.write_text(render_settings(loaded, show_origin=True))
    config.chmod(0o600)
    reloaded = load_settings({}, {}, config, env_file)

    assert reloaded.settings.labels == {"a": "1", "example.com/yes": "no"}
    assert reloaded.settings.job == "*j"
    assert reloaded.settings.model_copy(update={"project_token": None}) == (
        loaded.settings.model_copy(update={"project_token": None})
    )


def test_render_masks_token(tmp_path: Path) -> None:
    """The project token is shown as '**********' and never in clear."""
    config, env_file = empty_files(tmp_path)
    loaded = load_settings({}, {"GARNET_API_TOKEN": PLANTED}, config, env_file)

    text = render_settings(loaded, show_origin=True)

    assert PLANTED not in text
    assert yaml.safe_load(text)["run-time"]["api"]["token"] == "**********"


def test_repr_hides_token() -> None:
    """repr and str of the settings never show the token."""
    settings = Settings(project_token=SecretStr(PLANTED))

    assert PLANTED not in repr(settings)
    assert PLANTED not in str(settings)
    assert PLANTED not in repr(settings.model_dump())


def _plant_invalid_token_env(folder: Path) -> dict[str, str]:
    return {"GARNET_API_TOKEN": f"{PLANTED} with spaces"}


def _plant_token_in_bad_env_file(folder: Path) -> dict[str, str]:
    (folder / "jibril").write_text(f"GARNET_API_TOKEN='{PLANTED}\n")
    return {}


def _plant_token_file_with_control(folder: Path) -> dict[str, str]:
    (folder / "token").write_text(f"{PLANTED}\x1b[0m")
    return {"GARNET_API_TOKEN_FILE": str(folder / "token")}


def _plant_yaml_token_mapping(folder: Path) -> dict[str, str]:
    (folder / "config.yaml").write_text(f"run-time:\n  api:\n    token: [{PLANTED}]\n")
    return {}


def _plant_yaml_token_unicode(folder: Path) -> dict[str, str]:
    (folder / "config.yaml").write_text(f"run-time:\n  api:\n    token: é{PLANTED}\n")
    return {}


def _plant_yaml_bad_indent(folder: Path) -> dict[str, str]:
    (folder / "config.yaml").write_text(f"run-time:\n  api:\n\ttoken: {PLANTED}\n")
    return {}


def _plant_token_beside_other_error(folder: Path) -> dict[str, str]:
    return {"GARNET_API_TOKEN": PLANTED, "JIBRIL_LOG_LEVEL": "loud"}


def _plant_token_and_token_file(folder: Path) -> dict[str, str]:
    return {"GARNET_API_TOKEN": PLANTED, "GARNET_API_TOKEN_FILE": PLANTED}


@pytest.mark.fault(
    case=19,
    behaviour="No settings error shows a planted token, whatever the source.",
)
@pytest.mark.parametrize(
    "plant",
    [
        _plant_invalid_token_env,
        _plant_token_in_bad_env_file,
        _plant_token_file_with_control,
        _plant_yaml_token_mapping,
        _plant_yaml_token_unicode,
        _plant_yaml_bad_indent,
        _plant_token_beside_other_error,
        _plant_token_and_token_file,
    ],
)
def test_errors_never_show_token(tmp_path: Path, plant: object) -> None:
    """A planted token never appears in a SettingsError message."""
    config, env_file = empty_files(tmp_path)
    environ = plant(tmp_path)  # type: ignore[operator]

    with pytest.raises(SettingsError) as caught:
        load_settings({}, environ, config, env_file)

    assert PLANTED not in str(caught.value)
    assert PLANTED not in repr(caught.value)
    assert caught.value.__cause__ is None
