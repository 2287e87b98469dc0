"""Names of YAML nodes in messages: their shape, their type and the fix."""

from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from jibrild.sources.messages import shorten

TAG_PREFIX = "tag:yaml.org,2002:"

# Types that YAML gives an unquoted scalar, by tag, as messages name them.
# Quotes make any of these a string. Other tags come only from an explicit tag.
_IMPLICIT_TYPES = {
    "int": "a number",
    "float": "a number",
    "bool": "a boolean",
    "null": "null",
    "timestamp": "a date",
    "merge": "the merge key '<<'",
    "value": "the value key '='",
}


def is_null(node: Node) -> bool:
    """Tell whether node is a YAML null, such as a key without a value."""
    return isinstance(node, ScalarNode) and node.tag == f"{TAG_PREFIX}null"


def describe_shape(node: Node) -> str:
    """Name the shape of a node, for a message about a wrong type."""
    if isinstance(node, MappingNode):
        return "a mapping"
    if isinstance(node, SequenceNode):
        return "a list"
    return "a single value"


def yaml_type(tag: str) -> str:
    """Name what YAML read a scalar as, with its article, e.g. 'a number'."""
    implicit_type = _IMPLICIT_TYPES.get(tag.removeprefix(TAG_PREFIX))
    if implicit_type is not None:
        return implicit_type

    return f"a value tagged {_shown_tag(tag)}"


def read_as(node: ScalarNode) -> str:
    """Show a scalar that is not a string and what YAML read it as."""
    return f"{shorten(str(node.value))}, which YAML reads as {yaml_type(node.tag)}"


def string_fix(node: ScalarNode) -> str:
    """Tell how to make a scalar a string: quotes, or no explicit tag."""
    if node.tag.removeprefix(TAG_PREFIX) in _IMPLICIT_TYPES:
        return "put it in quotes"

    return f"remove the {_shown_tag(node.tag)} tag"


def _shown_tag(tag: str) -> str:
    """Write a tag as in the file: `!!binary` for YAML's own tags."""
    if tag.startswith(TAG_PREFIX):
        return f"!!{tag.removeprefix(TAG_PREFIX)}"
    return tag
