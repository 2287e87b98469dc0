"""Operator-facing messages for pydantic validation errors, one per origin."""

from collections.abc import Mapping
from typing import Any

from pydantic import ValidationError
from pydantic_core import ErrorDetails

from jibrild.sources.keys import KEYS_BY_FIELD
from jibrild.sources.layer import DEFAULT_ORIGIN, Origin

# Maximum length of a rejected value in a message, so it stays one short line.
MAX_SHOWN_VALUE_LENGTH = 80


def describe_validation_error(
    error: ValidationError, origins: Mapping[str, Origin]
) -> str:
    """Build one line naming the origin and the problem of each failed field.

    The text is ours, not pydantic's, because pydantic's messages contain
    input values and the project token must never appear.
    """
    problems = [_describe(detail, origins) for detail in error.errors()]
    return "; ".join(problems)


def _describe(detail: ErrorDetails, origins: Mapping[str, Origin]) -> str:
    """Build '<origin>: <problem>' from one pydantic error, without its text."""
    cause: Any = detail.get("ctx", {}).get("error")
    location = detail["loc"]
    field = str(location[0]) if location else getattr(cause, "field", "")
    prefix = origins.get(field, DEFAULT_ORIGIN).error_prefix

    if detail["type"] == "value_error" and isinstance(cause, ValueError):
        return f"{prefix}: {cause}"

    key = KEYS_BY_FIELD.get(field)
    if key is None:
        return f"{prefix}: {field!r} is not a setting"
    if key.kind == "secret":
        return f"{prefix}: expected {key.expected}"
    return f"{prefix}: expected {key.expected}, got {_show(detail['input'])}"


def _show(value: object) -> str:
    text = repr(value) if isinstance(value, str) else str(value)
    return shorten(text)


def shorten(text: str) -> str:
    """Cut text to MAX_SHOWN_VALUE_LENGTH characters, ending a cut one in '...'."""
    if len(text) <= MAX_SHOWN_VALUE_LENGTH:
        return text
    return f"{text[: MAX_SHOWN_VALUE_LENGTH - 3]}..."
