"""The project token from a file: GARNET_API_TOKEN_FILE or a systemd credential."""

from collections.abc import Mapping
from pathlib import Path

from pydantic_settings import BaseSettings

from jibrild.errors import SettingsError
from jibrild.sources.environ import environment_origin
from jibrild.sources.keys import (
    CREDENTIAL_NAME,
    CREDENTIALS_DIRECTORY_ENV_VAR,
    KEYS_BY_FIELD,
    TOKEN_FILE_ENV_VAR,
)
from jibrild.sources.layer import Layer, LayerSource, Origin

_TOKEN_ENV_VAR = KEYS_BY_FIELD["project_token"].env_var

# A project token is a short string; a larger file is not a token file.
MAX_TOKEN_FILE_SIZE = 64 * 1024


class SecretFilesSettingsSource(LayerSource):
    """The project token read from GARNET_API_TOKEN_FILE, else from
    $CREDENTIALS_DIRECTORY/garnet-api-token (systemd LoadCredential=).

    GARNET_API_TOKEN_FILE may come from the process environment or the env
    file; `env_file_variables` is the env file's name -> (value, origin).
    """

    def __init__(
        self,
        settings_cls: type[BaseSettings],
        environ: Mapping[str, str],
        env_file_variables: Mapping[str, tuple[str, Origin]],
    ) -> None:
        token_file = _find_variable(TOKEN_FILE_ENV_VAR, environ, env_file_variables)
        token = _find_variable(_TOKEN_ENV_VAR, environ, env_file_variables)
        if token_file is not None and token is not None:
            message = (
                f"{_TOKEN_ENV_VAR} ({token[1].text}) and {TOKEN_FILE_ENV_VAR} "
                f"({token_file[1].text}) are both set; keep only one of them"
            )
            raise SettingsError(message)

        if token_file is not None:
            layer = _read_token_file(*token_file)
        else:
            layer = _read_credential(environ.get(CREDENTIALS_DIRECTORY_ENV_VAR, ""))
        super().__init__(settings_cls, layer)


def _find_variable(
    name: str,
    environ: Mapping[str, str],
    env_file_variables: Mapping[str, tuple[str, Origin]],
) -> tuple[str, Origin] | None:
    """Return a non-blank variable's value and origin, the environment first."""
    value = environ.get(name, "")
    if value.strip():
        return value, environment_origin(name)

    value, origin = env_file_variables.get(name, ("", Origin.named(name)))
    if value.strip():
        return value, origin

    return None


def _read_token_file(path_text: str, variable_origin: Origin) -> Layer:
    path = Path(path_text.strip())
    where = f"{variable_origin.error_prefix}: project token file {path}"
    origin = Origin.named(f"secret file ${TOKEN_FILE_ENV_VAR} ({path})")
    token = _read_token(path, where, missing_is_error=True)
    return _token_layer(token, origin)


def _read_credential(directory: str) -> Layer:
    if not directory.strip():
        return Layer()

    path = Path(directory) / CREDENTIAL_NAME
    origin = Origin.named(f"credential {CREDENTIAL_NAME}")
    token = _read_token(path, f"{origin.text} ({path})", missing_is_error=False)
    return _token_layer(token, origin)


def _token_layer(token: str | None, origin: Origin) -> Layer:
    # A blank file counts as unset, like an empty variable, so that a lower
    # source may still give the project token.
    if token is None or not token.strip():
        return Layer()

    return Layer({"project_token": token}, {"project_token": origin})


def _read_token(path: Path, where: str, *, missing_is_error: bool) -> str | None:
    """Read a token file; `where` starts every error message."""
    try:
        with path.open("rb") as stream:
            data = stream.read(MAX_TOKEN_FILE_SIZE + 1)
    except FileNotFoundError:
        if missing_is_error:
            raise SettingsError(f"{where} not found; check the path") from None
        return None
    except PermissionError:
        message = f"{where}: permission denied; check its permissions"
        raise SettingsError(message) from None
    except IsADirectoryError:
        raise SettingsError(f"{where} is a directory; expected a file") from None
    except OSError as error:
        raise SettingsError(f"{where}: {error.strerror}") from None

    if len(data) > MAX_TOKEN_FILE_SIZE:
        message = f"{where} is larger than 64 KiB; it must contain only the token"
        raise SettingsError(message)

    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise SettingsError(f"{where} is not valid UTF-8") from None
