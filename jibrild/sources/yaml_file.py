"""Settings from the `run-time:` section of Jibril's YAML configuration file.

The file is composed into nodes rather than loaded into Python objects, so
each error can name the line, and a project token that YAML would read as a
number or a boolean is caught before it is converted.
"""

import difflib
from pathlib import Path

import yaml
from pydantic_settings import BaseSettings
from yaml.constructor import SafeConstructor
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from jibrild.errors import SettingsError
from jibrild.sources.keys import KEYS_BY_FIELD, KEYS_BY_YAML_KEY, SettingKey
from jibrild.sources.labels import label_key_problem
from jibrild.sources.layer import (
    FileContent,
    Layer,
    LayerSource,
    Origin,
    line_of_offset,
    read_settings_file,
    token_mode_warning,
)

DEFAULT_CONFIG_PATH = Path("/etc/jibril/config.yaml")
RUN_TIME_SECTION = "run-time"
TOP_LEVEL_LOG_LEVEL = "log-level"
_GROUPS = {key.rpartition(".")[0] for key in KEYS_BY_YAML_KEY if "." in key}
_VALID_KEYS = sorted([*KEYS_BY_YAML_KEY, *_GROUPS])
_TAG_PREFIX = "tag:yaml.org,2002:"
_TAG_DESCRIPTIONS = {
    "int": "the number",
    "float": "the number",
    "bool": "the boolean",
    "null": "null",
    "timestamp": "the date",
}


class YamlFileSettingsSource(LayerSource):
    """A YAML configuration file such as /etc/jibril/config.yaml."""

    def __init__(
        self, settings_cls: type[BaseSettings], path: Path, *, required: bool
    ) -> None:
        content = read_settings_file(
            path, required=required, description="config file", option="--config"
        )
        layer = Layer() if content is None else _ConfigReader(path).read(content)
        super().__init__(settings_cls, layer)


class _ConfigReader:
    """Walker over the nodes of one file, collecting raw values and origins."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.values: dict[str, object] = {}
        self.origins: dict[str, Origin] = {}

    def read(self, content: FileContent) -> Layer:
        root = self._compose(content.data)
        if root is not None and not _is_null(root):
            self._read_root(root)

        warnings: tuple[str, ...] = ()
        if "project_token" in self.values:
            warning = token_mode_warning(self.path, content.mode)
            warnings = () if warning is None else (warning,)
        return Layer(self.values, self.origins, warnings)

    def _compose(self, data: bytes) -> Node | None:
        try:
            text = data.decode("utf-8-sig")
        except UnicodeDecodeError as error:
            line = line_of_offset(data, error.start)
            raise SettingsError(f"{self.path}:{line}: invalid UTF-8") from None

        try:
            return yaml.compose(text, Loader=yaml.SafeLoader)
        except yaml.MarkedYAMLError as error:
            raise self._syntax_error(text, error) from None
        except yaml.reader.ReaderError as error:
            line = text.count("\n", 0, error.position) + 1
            message = f"{self.path}:{line}: invalid YAML: unacceptable character"
            raise SettingsError(message) from None
        except RecursionError:
            raise SettingsError(f"{self.path}: YAML nested too deeply") from None

    def _syntax_error(self, text: str, error: yaml.MarkedYAMLError) -> SettingsError:
        # Only the problem and its line are shown, never the snippet that
        # str(error) adds, because that line may contain a token.
        mark = error.problem_mark or error.context_mark
        if mark is None:
            return SettingsError(f"{self.path}: invalid YAML: {error.problem}")

        lines = text.splitlines()
        line_text = lines[mark.line] if mark.line < len(lines) else ""
        indent = line_text[: len(line_text) - len(line_text.lstrip(" \t"))]
        if "\t" in indent:
            problem = "tab character in the indentation; indent with spaces"
        else:
            problem = f"invalid YAML: {error.problem}"
        return SettingsError(f"{self.path}:{mark.line + 1}: {problem}")

    def _read_root(self, root: Node) -> None:
        if not isinstance(root, MappingNode):
            raise self._error(root, f"expected a mapping, got {_describe(root)}")

        sections = {
            name: (key_node, value_node)
            for name, key_node, value_node in self._entries(root, None)
            if name in (RUN_TIME_SECTION, TOP_LEVEL_LOG_LEVEL)
        }
        # The top-level log-level is read first so that run-time's overrides it.
        if TOP_LEVEL_LOG_LEVEL in sections:
            key_node, value_node = sections[TOP_LEVEL_LOG_LEVEL]
            level_node = _jibril_log_level(value_node)
            if level_node is not None:
                log_level = KEYS_BY_FIELD["log_level"]
                self._read_setting(log_level, TOP_LEVEL_LOG_LEVEL, key_node, level_node)

        if RUN_TIME_SECTION in sections:
            self._read_group(RUN_TIME_SECTION, sections[RUN_TIME_SECTION][1], "")

    def _read_group(self, name: str, node: Node, prefix: str) -> None:
        """Read a mapping of settings; prefix is its dotted key under run-time."""
        if _is_null(node):
            return

        if not isinstance(node, MappingNode):
            expected = f"expected a mapping of settings, got {_describe(node)}"
            raise self._error(node, f"{name}: {expected}")

        for key_text, key_node, value_node in self._entries(node, name):
            dotted = f"{prefix}{key_text}"
            display = f"{RUN_TIME_SECTION}.{dotted}"
            if dotted in _GROUPS:
                self._read_group(display, value_node, f"{dotted}.")
                continue

            key = KEYS_BY_YAML_KEY.get(dotted)
            if key is None:
                raise self._error(key_node, f"{display}: {_unknown_key(dotted)}")
            self._read_setting(key, display, key_node, value_node)

    def _entries(
        self, node: MappingNode, name: str | None
    ) -> list[tuple[str, Node, Node]]:
        """List key text, key node and value node; name set: reject duplicates.

        Duplicates are checked only inside our own sections, because the rest
        of the file belongs to other parts of Jibril.
        """
        entries: list[tuple[str, Node, Node]] = []
        first_lines: dict[str, int] = {}
        for key_node, value_node in node.value:
            if not isinstance(key_node, ScalarNode):
                if name is None:
                    continue
                raise self._error(key_node, f"{name}: keys must be plain strings")

            key_text = str(key_node.value)
            line = key_node.start_mark.line + 1
            if name is not None and key_text in first_lines:
                first = first_lines[key_text]
                message = f"{name}.{key_text}: duplicate key (first on line {first})"
                raise self._error(key_node, message)

            first_lines.setdefault(key_text, line)
            entries.append((key_text, key_node, value_node))
        return entries

    def _read_setting(
        self, key: SettingKey, display: str, key_node: Node, value_node: Node
    ) -> None:
        if key.kind == "labels":
            value: object = self._read_labels(display, value_node)
        else:
            value = self._read_scalar(key, display, value_node)

        if value is None:
            return
        self.values[key.field] = value
        line = key_node.start_mark.line + 1
        self.origins[key.field] = Origin.at_line(self.path, line, display)

    def _read_scalar(self, key: SettingKey, display: str, node: Node) -> object:
        """Return the raw value, or None when the key is null or blank."""
        if _is_null(node):
            return None

        if not isinstance(node, ScalarNode):
            got = _describe(node)
            raise self._error(node, f"{display}: expected {key.expected}, got {got}")

        tag = node.tag.removeprefix(_TAG_PREFIX)
        if key.kind == "secret":
            return self._read_token(display, node, tag)

        if tag == "str":
            return node.value
        if (key.kind, tag) in {("number", "int"), ("number", "float")}:
            return self._construct(node)
        if (key.kind, tag) in {("flag", "bool"), ("flag", "int")}:
            return self._construct(node)

        got = f"{_TAG_DESCRIPTIONS.get(tag, 'a value tagged ' + tag)} {node.value}"
        message = f"{display}: expected {key.expected}, got {got}"
        if key.kind == "text":
            message += "; put it in quotes to make it a string"
        raise self._error(node, message)

    def _read_token(self, display: str, node: ScalarNode, tag: str) -> object:
        # The value is never echoed, even when it is not a valid token.
        if tag != "str":
            kind = _TAG_DESCRIPTIONS.get(tag, "a tagged value").removeprefix("the ")
            message = (
                f"{display}: the project token was read as {_article(kind)}; "
                "put it in quotes"
            )
            raise self._error(node, message)

        return node.value if node.value.strip() else None

    def _read_labels(self, display: str, node: Node) -> object:
        if _is_null(node):
            return None

        if not isinstance(node, MappingNode):
            message = f"{display}: expected a mapping of label keys to strings"
            raise self._error(node, f"{message}, got {_describe(node)}")

        pairs: list[tuple[str, str]] = []
        for key_text, key_node, value_node in self._entries(node, display):
            problem = label_key_problem(key_text)
            if problem is not None:
                raise self._error(key_node, f"{display}: {problem}")
            pairs.append((key_text, self._label_value(display, key_text, value_node)))
        return tuple(pairs)

    def _label_value(self, display: str, key_text: str, node: Node) -> str:
        where = f"{display}.{key_text}"
        if not isinstance(node, ScalarNode):
            message = f"{where}: expected a string, got {_describe(node)}"
            raise self._error(node, message)

        tag = node.tag.removeprefix(_TAG_PREFIX)
        if tag == "str":
            return str(node.value)
        if tag == "null":
            message = f"{where}: the label has no value; write '' for an empty one"
            raise self._error(node, message)

        got = f"{_TAG_DESCRIPTIONS.get(tag, 'a value tagged ' + tag)} {node.value}"
        message = f"{where}: expected a string, got {got}; put it in quotes"
        raise self._error(node, message)

    def _construct(self, node: ScalarNode) -> object:
        try:
            return SafeConstructor().construct_object(node, deep=True)
        except (yaml.YAMLError, ValueError):
            raise self._error(node, f"invalid value {node.value!r}") from None

    def _error(self, node: Node, message: str) -> SettingsError:
        return SettingsError(f"{self.path}:{node.start_mark.line + 1}: {message}")


def _is_null(node: Node) -> bool:
    return isinstance(node, ScalarNode) and node.tag == f"{_TAG_PREFIX}null"


def _describe(node: Node) -> str:
    if isinstance(node, MappingNode):
        return "a mapping"
    if isinstance(node, SequenceNode):
        return "a list"
    return "a single value"


def _article(noun: str) -> str:
    return f"an {noun}" if noun[:1] in "aeiou" else f"a {noun}"


def _unknown_key(dotted: str) -> str:
    """Describe an unknown key and suggest the closest valid one."""
    matches = difflib.get_close_matches(dotted, _VALID_KEYS, n=1)
    if matches:
        return f"unknown key; did you mean '{matches[0]}'?"

    return f"unknown key; valid keys are {', '.join(_VALID_KEYS)}"


# The top-level log-level belongs to the rest of Jibril, which knows more
# level names than jibrild: map those, and leave a value neither knows to
# the rest of Jibril to judge rather than fail on it here.
_JIBRIL_LOG_LEVELS = {
    "trace": "debug",
    "debug": "debug",
    "info": "info",
    "warn": "warning",
    "warning": "warning",
    "error": "error",
    "critical": "error",
    "fatal": "error",
    "panic": "error",
}


def _jibril_log_level(node: Node) -> ScalarNode | None:
    """Return the top-level log-level as one of jibrild's, or None."""
    if not isinstance(node, ScalarNode):
        return None
    level = _JIBRIL_LOG_LEVELS.get(str(node.value).strip().lower())
    if level is None:
        return None
    return ScalarNode("tag:yaml.org,2002:str", level, node.start_mark, node.end_mark)
