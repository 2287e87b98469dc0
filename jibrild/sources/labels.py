"""Kubernetes name syntax for label keys and cluster names, and KEY=VALUE parsing."""

import re
from collections.abc import Iterable

from jibrild.errors import SettingsError

_DNS_LABEL = r"[a-z0-9]([-a-z0-9]*[a-z0-9])?"
_DNS_SUBDOMAIN = re.compile(rf"{_DNS_LABEL}(\.{_DNS_LABEL})*")
_LABEL_NAME = re.compile(r"[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?")

# Limits from the Kubernetes object-name rules (RFC 1123 subdomains) and the
# label-key rules: prefix up to 253 characters, name up to 63.
DNS_SUBDOMAIN_MAX_LENGTH = 253
LABEL_NAME_MAX_LENGTH = 63


def is_dns_subdomain(text: str) -> bool:
    """Tell whether text is a DNS-1123 subdomain such as `prod.example.com`."""
    if len(text) > DNS_SUBDOMAIN_MAX_LENGTH:
        return False

    return _DNS_SUBDOMAIN.fullmatch(text) is not None


def label_key_problem(key: str) -> str | None:
    """Describe why key is not a Kubernetes label key, or return None if it is."""
    prefix, slash, name = key.rpartition("/")
    if slash and not is_dns_subdomain(prefix):
        return (
            f"invalid label key {key!r}: the prefix before '/' must be a "
            "DNS-1123 subdomain such as 'example.com'"
        )

    if len(name) > LABEL_NAME_MAX_LENGTH:
        return (
            f"invalid label key {key!r}: the name after any prefix is longer "
            f"than {LABEL_NAME_MAX_LENGTH} characters"
        )

    if _LABEL_NAME.fullmatch(name) is None:
        return (
            f"invalid label key {key!r}: use letters, digits, '-', '_' and '.', "
            "starting and ending with a letter or digit"
        )

    return None


def parse_label_assignments(
    assignments: Iterable[str], where: str
) -> tuple[tuple[str, str], ...]:
    """Split KEY=VALUE strings into pairs; `where` names the source in errors."""
    pairs: list[tuple[str, str]] = []
    seen: set[str] = set()
    for assignment in assignments:
        key, equals, value = assignment.partition("=")
        key = key.strip()
        if not equals or not key:
            message = f"{where}: expected a label as KEY=VALUE, got {assignment!r}"
            raise SettingsError(message)

        if key in seen:
            raise SettingsError(f"{where}: label {key!r} is given more than once")

        seen.add(key)
        pairs.append((key, value.strip()))

    return tuple(pairs)


def parse_label_list(text: str, where: str) -> tuple[tuple[str, str], ...]:
    """Parse `k=v,k2=v2`, skipping empty items such as after a trailing comma."""
    items = [item for item in text.split(",") if item.strip()]
    return parse_label_assignments(items, where)
