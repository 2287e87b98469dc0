"""The project token from a file: GARNET_API_TOKEN_FILE or a systemd credential."""

from collections.abc import Mapping
from pathlib import Path

from pydantic_settings import BaseSettings

from jibrild.errors import SettingsError
from jibrild.sources.environ import environment_origin
from jibrild.sources.files import (
    FileContent,
    FileTooLargeError,
    SpecialFileError,
    read_regular_file,
    token_mode_warning,
)
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
    Only the file of GARNET_API_TOKEN_FILE gets a file-mode warning, because
    systemd makes a credential readable by the service alone.
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
                f"{_TOKEN_ENV_VAR} ({token[1].place}) and {TOKEN_FILE_ENV_VAR} "
                f"({token_file[1].place}) are both set; keep only one of them"
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
    if not path.is_absolute():
        raise SettingsError(f"{where} is not an absolute path; give the full path")
    origin = Origin.named(f"secret file ${TOKEN_FILE_ENV_VAR} ({path})")
    content = _read_token(path, where, missing_is_error=True)
    if content is None:
        return Layer()

    warning = token_mode_warning(path, content.mode)
    warnings = () if warning is None else (warning,)
    return _token_layer(_decode_token(content, where), origin, warnings, where)


def _read_credential(directory: str) -> Layer:
    if not directory.strip():
        return Layer()

    path = Path(directory) / CREDENTIAL_NAME
    origin = Origin.named(f"credential {CREDENTIAL_NAME}")
    where = f"{origin.text} ({path})"
    content = _read_token(path, where, missing_is_error=False)
    if content is None:
        return Layer()

    return _token_layer(_decode_token(content, where), origin, (), where)


def _token_layer(
    token: str, origin: Origin, warnings: tuple[str, ...], where: str
) -> Layer:
    # A blank file counts as unset, like an empty variable, so that a lower
    # source may still give the project token; the warning explains why none came.
    if not token.strip():
        return Layer(
            warnings=(*warnings, f"{where} is empty; it sets no project token")
        )

    return Layer({"project_token": token}, {"project_token": origin}, warnings)


def _read_token(
    path: Path, where: str, *, missing_is_error: bool
) -> FileContent | None:
    """Read a token file; `where` starts every error message."""
    try:
        return read_regular_file(path, MAX_TOKEN_FILE_SIZE)
    except FileNotFoundError:
        if missing_is_error:
            raise SettingsError(f"{where} not found; check the path") from None
        return None
    except PermissionError:
        message = f"{where}: permission denied; check its permissions"
        raise SettingsError(message) from None
    except SpecialFileError as error:
        message = f"{where} is {error.kind}, not a regular file; check the path"
        raise SettingsError(message) from None
    except FileTooLargeError:
        message = f"{where} is larger than 64 KiB; it must contain only the token"
        raise SettingsError(message) from None
    except OSError as error:
        raise SettingsError(f"{where}: {error.strerror}") from None


def _decode_token(content: FileContent, where: str) -> str:
    try:
        # An editor may start the file with a byte-order mark.
        return content.data.decode("utf-8").removeprefix("\ufeff")
    except UnicodeDecodeError:
        raise SettingsError(f"{where} is not valid UTF-8") from None
