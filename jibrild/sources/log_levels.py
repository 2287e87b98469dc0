"""Log level names that Jibril accepts, mapped to the four levels of jibrild."""

# Jibril accepts more level names than jibrild, so each maps to the closest
# of the four.
LOG_LEVEL_ALIASES = {
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


def jibrild_log_level(name: str) -> str | None:
    """Return the level of jibrild for a level name in any case, or None."""
    return LOG_LEVEL_ALIASES.get(name.strip().lower())
