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
from yaml.nodes import MappingNode, Node, ScalarNode

from jibrild.errors import SettingsError
from jibrild.sources.files import (
    FileContent,
    line_of_offset,
    read_settings_file,
    token_mode_warning,
)
from jibrild.sources.keys import KEYS_BY_FIELD, KEYS_BY_YAML_KEY, SettingKey
from jibrild.sources.labels import label_key_problem
from jibrild.sources.layer import Layer, LayerSource, Origin
from jibrild.sources.log_levels import jibrild_log_level
from jibrild.sources.messages import shorten
from jibrild.sources.yaml_nodes import (
    TAG_PREFIX,
    describe_shape,
    is_null,
    read_as,
    string_fix,
    yaml_type,
)

DEFAULT_CONFIG_PATH = Path("/etc/jibril/config.yaml")
RUN_TIME_SECTION = "run-time"
TOP_LEVEL_LOG_LEVEL = "log-level"
_GROUPS = {key.rpartition(".")[0] for key in KEYS_BY_YAML_KEY if "." in key}
_VALID_KEYS = sorted([*KEYS_BY_YAML_KEY, *_GROUPS])
_OWN_TOP_LEVEL_KEYS = {RUN_TIME_SECTION, TOP_LEVEL_LOG_LEVEL}


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
        if root is not None and not is_null(root):
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
            raise self._error(root, f"expected a mapping, got {describe_shape(root)}")

        sections = {
            name: (key_node, value_node)
            for name, key_node, value_node in self._entries(root, None)
            if name in (RUN_TIME_SECTION, TOP_LEVEL_LOG_LEVEL)
        }
        # The top-level log-level is read first so that run-time's overrides it.
        if TOP_LEVEL_LOG_LEVEL in sections:
            key_node, value_node = sections[TOP_LEVEL_LOG_LEVEL]
            level_node = _top_level_log_level(value_node)
            if level_node is not None:
                log_level = KEYS_BY_FIELD["log_level"]
                self._read_setting(log_level, TOP_LEVEL_LOG_LEVEL, key_node, level_node)

        if RUN_TIME_SECTION in sections:
            self._read_group(RUN_TIME_SECTION, sections[RUN_TIME_SECTION][1], "")

    def _read_group(self, name: str, node: Node, prefix: str) -> None:
        """Read a mapping of settings; prefix is its dotted key under run-time."""
        if is_null(node):
            return

        if not isinstance(node, MappingNode):
            expected = f"expected a mapping of settings, got {describe_shape(node)}"
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
        """List key text, key node and value node, and reject duplicate keys.

        name is the dotted key of the mapping, or None at the top level. There
        only jibrild's own keys are checked, because the rest of the file
        belongs to other parts of Jibril.
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
            checked = name is not None or key_text in _OWN_TOP_LEVEL_KEYS
            if checked and key_text in first_lines:
                first = first_lines[key_text]
                dotted = key_text if name is None else f"{name}.{key_text}"
                message = f"{dotted}: duplicate key (first on line {first})"
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
        if is_null(node):
            return None

        if not isinstance(node, ScalarNode):
            got = describe_shape(node)
            raise self._error(node, f"{display}: expected {key.expected}, got {got}")

        tag = node.tag.removeprefix(TAG_PREFIX)
        if key.kind == "secret":
            return self._read_token(display, node, tag)

        if tag == "str":
            return node.value
        if (key.kind, tag) in {("number", "int"), ("number", "float")}:
            return self._construct(key, display, node)
        if (key.kind, tag) in {("flag", "bool"), ("flag", "int")}:
            return self._construct(key, display, node)

        message = f"{display}: expected {key.expected}, got {read_as(node)}"
        if key.kind == "text":
            message += f"; {string_fix(node)} to make it a string"
        raise self._error(node, message)

    def _read_token(self, display: str, node: ScalarNode, tag: str) -> object:
        # The value is never echoed, even when it is not a valid token.
        if tag != "str":
            message = (
                f"{display}: the project token was read as "
                f"{yaml_type(node.tag)}; {string_fix(node)}"
            )
            raise self._error(node, message)

        return node.value if node.value.strip() else None

    def _read_labels(self, display: str, node: Node) -> object:
        if is_null(node):
            return None

        if not isinstance(node, MappingNode):
            message = f"{display}: expected a mapping of label keys to strings"
            raise self._error(node, f"{message}, got {describe_shape(node)}")

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
            message = f"{where}: expected a string, got {describe_shape(node)}"
            raise self._error(node, message)

        tag = node.tag.removeprefix(TAG_PREFIX)
        if tag == "str":
            return str(node.value)
        if tag == "null":
            message = f"{where}: the label has no value; write '' for an empty one"
            raise self._error(node, message)

        message = f"{where}: expected a string, got {read_as(node)}; {string_fix(node)}"
        raise self._error(node, message)

    def _construct(self, key: SettingKey, display: str, node: ScalarNode) -> object:
        try:
            return SafeConstructor().construct_object(node, deep=True)
        except (yaml.YAMLError, ValueError):
            got = repr(shorten(str(node.value)))
            message = f"{display}: expected {key.expected}, got {got}"
            raise self._error(node, message) from None

    def _error(self, node: Node, message: str) -> SettingsError:
        return SettingsError(f"{self.path}:{node.start_mark.line + 1}: {message}")


def _unknown_key(dotted: str) -> str:
    """Describe an unknown key and suggest the closest valid one."""
    matches = difflib.get_close_matches(dotted, _VALID_KEYS, n=1)
    if matches:
        return f"unknown key; did you mean '{RUN_TIME_SECTION}.{matches[0]}'?"

    valid_keys = ", ".join(f"{RUN_TIME_SECTION}.{key}" for key in _VALID_KEYS)
    return f"unknown key; valid keys are {valid_keys}"


def _top_level_log_level(node: Node) -> ScalarNode | None:
    """Return the top-level log-level as a level of jibrild, or None.

    The key belongs to the rest of Jibril, so a value that jibrild does not
    know is left to Jibril to judge instead of failing here.
    """
    if not isinstance(node, ScalarNode):
        return None

    level = jibrild_log_level(str(node.value))
    if level is None:
        return None
    return ScalarNode(f"{TAG_PREFIX}str", level, node.start_mark, node.end_mark)
