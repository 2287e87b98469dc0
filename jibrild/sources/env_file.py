"""Settings from an env file read the way systemd's EnvironmentFile= reads it.

The rules follow systemd.exec(5). Lines starting with `#` or `;` are
comments. An unquoted value keeps interior whitespace and drops surrounding
whitespace. In it, a backslash escapes the next character, or continues the
line when it ends one. Single quotes keep everything verbatim. Double quotes
recognise only \\", \\\\, \\`, \\$ and backslash-newline.

Unlike systemd, which skips a line without `=`, this parser raises on it,
and also on an invalid name, text after a closing quote and an unterminated
quote. It also accepts an optional `export ` prefix.
"""

import re
from dataclasses import dataclass
from pathlib import Path

from pydantic_settings import BaseSettings

from jibrild.errors import SettingsError
from jibrild.sources.environ import layer_from_variables
from jibrild.sources.files import (
    FileContent,
    line_of_offset,
    read_settings_file,
    token_mode_warning,
)
from jibrild.sources.layer import Layer, LayerSource, Origin

DEFAULT_ENV_FILE_PATH = Path("/etc/default/jibril")

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_EXPORT = re.compile(r"export[ \t]+")
_BLANK = " \t\r"
_DOUBLE_QUOTE_ESCAPES = '"\\`$'


@dataclass(frozen=True)
class Assignment:
    """One NAME=VALUE of an env file; line is where the assignment starts."""

    name: str
    value: str
    line: int


class EnvFileSyntaxError(Exception):
    """A malformed env file line; the message never contains the value."""

    def __init__(self, line: int, problem: str) -> None:
        super().__init__(f"line {line}: {problem}")
        self.line = line
        self.problem = problem


def parse_env_text(text: str) -> list[Assignment]:
    """Parse env file text with LF line ends into its assignments, in order."""
    assignments: list[Assignment] = []
    position = 0
    line = 1
    while position < len(text):
        end = _line_end(text, position)
        content = text[position:end].lstrip(_BLANK)
        if not content or content[0] in "#;":
            position = end + 1
            line += 1
            continue

        name, value_start = _parse_name(text, end - len(content), end, line)
        value, position, next_line = _parse_value(text, value_start, line)
        assignments.append(Assignment(name, value, line))
        line = next_line

    return assignments


def _line_end(text: str, position: int) -> int:
    end = text.find("\n", position)
    return len(text) if end == -1 else end


def _parse_name(text: str, start: int, end: int, line: int) -> tuple[str, int]:
    """Return the variable name and the offset just after its `=`."""
    export = _EXPORT.match(text, start, end)
    if export is not None:
        start = export.end()

    equals = text.find("=", start, end)
    if equals == -1:
        raise EnvFileSyntaxError(line, "expected NAME=VALUE")

    name = text[start:equals].rstrip(_BLANK)
    if _NAME.fullmatch(name) is None:
        problem = (
            "invalid variable name; use letters, digits and '_', "
            "not starting with a digit"
        )
        raise EnvFileSyntaxError(line, problem)

    return name, equals + 1


def _parse_value(text: str, position: int, line: int) -> tuple[str, int, int]:
    """Return the value, the offset of the next line and its line number."""
    while position < len(text) and text[position] in " \t":
        position += 1

    opening = text[position] if position < len(text) else ""
    if opening == "'":
        value, position, end_line = _read_single_quoted(text, position + 1, line)
    elif opening == '"':
        value, position, end_line = _read_double_quoted(text, position + 1, line)
    else:
        value, position, end_line = _read_unquoted(text, position, line)
        return value, position + 1, end_line + 1

    position = _skip_to_next_line(text, position, end_line)
    return value, position, end_line + 1


def _read_unquoted(text: str, position: int, line: int) -> tuple[str, int, int]:
    """Read up to the end of the line, stopping on the newline character."""
    characters: list[str] = []
    kept_length = 0  # up to the last character that is not a trailing blank
    while position < len(text) and text[position] != "\n":
        character = text[position]
        if character == "\\" and position + 1 < len(text):
            following = text[position + 1]
            if following == "\n":
                line += 1
            else:
                characters.append(following)
                kept_length = len(characters)
            position += 2
            continue

        position += 1
        if character == "\\":
            continue

        characters.append(character)
        if character not in _BLANK:
            kept_length = len(characters)

    return "".join(characters[:kept_length]), position, line


def _read_single_quoted(text: str, position: int, line: int) -> tuple[str, int, int]:
    closing = text.find("'", position)
    if closing == -1:
        problem = "unterminated single-quoted value; add the closing '"
        raise EnvFileSyntaxError(line, problem)

    value = text[position:closing]
    return value, closing + 1, line + value.count("\n")


def _read_double_quoted(text: str, position: int, line: int) -> tuple[str, int, int]:
    start_line = line
    characters: list[str] = []
    while position < len(text):
        character = text[position]
        if character == '"':
            return "".join(characters), position + 1, line

        if character == "\\" and position + 1 < len(text):
            following = text[position + 1]
            if following == "\n":
                line += 1
            elif following in _DOUBLE_QUOTE_ESCAPES:
                characters.append(following)
            else:
                characters.extend((character, following))
            position += 2
            continue

        if character == "\n":
            line += 1
        characters.append(character)
        position += 1

    problem = 'unterminated double-quoted value; add the closing "'
    raise EnvFileSyntaxError(start_line, problem)


def _skip_to_next_line(text: str, position: int, line: int) -> int:
    """Check that only blanks follow a closing quote; return the next line's offset."""
    end = _line_end(text, position)
    if text[position:end].strip(_BLANK):
        problem = "unexpected text after the closing quote; quote the whole value"
        raise EnvFileSyntaxError(line, problem)

    return end + 1


def decode_env_file(path: Path, data: bytes) -> str:
    """Decode UTF-8 with an optional BOM and turn CRLF line ends into LF."""
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        line = line_of_offset(data, error.start)
        message = f"{path}:{line}: invalid UTF-8; save the file as UTF-8"
        raise SettingsError(message) from None

    nul = text.find("\0")
    if nul != -1:
        line = text.count("\n", 0, nul) + 1
        raise SettingsError(f"{path}:{line}: NUL character; remove it")

    return text.replace("\r\n", "\n")


class EnvFileSettingsSource(LayerSource):
    """An env file such as /etc/default/jibril.

    `variables` keeps every assignment by name, the last one winning, because
    the secret-file source also reads GARNET_API_TOKEN_FILE from it.
    """

    def __init__(
        self, settings_cls: type[BaseSettings], path: Path, *, required: bool
    ) -> None:
        content = read_settings_file(
            path, required=required, description="env file", option="--env-file"
        )
        self.variables = {} if content is None else _read_variables(path, content)
        layer = layer_from_variables(self.variables)

        warnings: tuple[str, ...] = ()
        if content is not None and "project_token" in layer.values:
            warning = token_mode_warning(path, content.mode)
            warnings = () if warning is None else (warning,)

        super().__init__(settings_cls, Layer(layer.values, layer.origins, warnings))


def _read_variables(path: Path, content: FileContent) -> dict[str, tuple[str, Origin]]:
    text = decode_env_file(path, content.data)
    try:
        assignments = parse_env_text(text)
    except EnvFileSyntaxError as error:
        raise SettingsError(f"{path}:{error.line}: {error.problem}") from None

    return {
        assignment.name: (
            assignment.value,
            Origin.at_line(path, assignment.line, assignment.name),
        )
        for assignment in assignments
    }


def read_env_file(path: Path | None) -> dict[str, str]:
    """Return every variable an env file assigns, by name, the last one winning.

    None means /etc/default/jibril, which may be missing; a given path must
    exist. Raises SettingsError as loading the settings does.
    """
    required = path is not None
    path = DEFAULT_ENV_FILE_PATH if path is None else path
    content = read_settings_file(
        path, required=required, description="env file", option="--env-file"
    )
    if content is None:
        return {}

    variables = _read_variables(path, content)
    return {name: value for name, (value, _) in variables.items()}
