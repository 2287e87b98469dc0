"""Validation of registration and event bodies, with the Garnet API's rules.

The checks follow what a Go service decoding into typed structs does: unknown
fields are ignored, null is the same as a missing field, and an empty string
does not satisfy a required field. Each check raises InvalidRequestError
naming the first invalid field, in a fixed order.

NOTE: keys match exactly, whereas Go's encoding/json also matches a key that
differs only in letter case (`OS` for `os`).
"""

import ipaddress
import re
import uuid
from collections.abc import Mapping
from typing import Any

from garnet_local.errors import InvalidRequestError

AGENT_KINDS = ("vanilla", "kubernetes", "github")
EVENT_KINDS = ("flows", "detections", "infos", "netpolicy")

_REQUIRED_STRINGS = ("os", "arch", "hostname", "version", "ip", "machine_id", "kind")
_CONTEXT_FIELDS = {kind: f"{kind}_context" for kind in AGENT_KINDS}

_GITHUB_REQUIRED = ("job", "run_id", "workflow", "repository", "repository_id")
_GITHUB_OPTIONAL = (
    "action",
    "actor",
    "actor_id",
    "event_name",
    "ref",
    "ref_name",
    "ref_type",
    "repository_owner",
    "repository_owner_id",
    "run_attempt",
    "run_number",
    "runner_arch",
    "runner_os",
    "server_url",
    "sha",
    "triggering_actor",
    "workflow_ref",
    "workflow_sha",
    "workspace",
)

# Kubernetes' own limits and patterns, from k8s.io/apimachinery:
# pkg/util/validation/validation.go and pkg/api/validation/objectmeta.go.
_DNS1123_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")
_DNS1123_SUBDOMAIN = re.compile(
    r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*"
)
_QUALIFIED_NAME = re.compile(r"([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]")
_DNS1123_LABEL_MAX = 63
_DNS1123_SUBDOMAIN_MAX = 253
_QUALIFIED_NAME_MAX = 63
LABELS_MAX_BYTES = 256 * 1024

# Go's int is 64 bits on amd64 and arm64, the assumed platforms of the service.
_INT64_MIN = -(2**63)
_INT64_MAX = 2**63 - 1


def validate_registration(body: object) -> dict[str, Any]:
    """Raise InvalidRequestError unless body is a valid registration request."""
    fields = _require_object(body)
    for name in _REQUIRED_STRINGS:
        _require_string(fields, name, name)

    _check_ip(fields["ip"])
    kind = fields["kind"]
    if kind not in AGENT_KINDS:
        reason = f"{_quote(kind)} is not an agent kind, expected one of vanilla, "
        raise InvalidRequestError.for_field("kind", reason + "kubernetes, github")

    _check_labels(fields.get("labels"))
    _check_context(fields, kind)

    return fields


def validate_event(body: object) -> dict[str, Any]:
    """Raise InvalidRequestError unless body is a valid `events_v2` event."""
    fields = _require_object(body)
    event_id = _require_string(fields, "id", "id")
    try:
        uuid.UUID(event_id)
    except ValueError:
        raise InvalidRequestError.for_field(
            "id", f"{_quote(event_id)} is not a UUID"
        ) from None

    kind = _require_string(fields, "kind", "kind")
    if kind not in EVENT_KINDS:
        reason = f"{_quote(kind)} is not an event kind, expected one of "
        raise InvalidRequestError.for_field("kind", reason + ", ".join(EVENT_KINDS))

    data = fields.get("data")
    if data is None:
        raise InvalidRequestError.for_field("data", "is required")
    if not isinstance(data, dict):
        raise _wrong_type("data", "an object", data)

    return fields


def _require_object(body: object) -> dict[str, Any]:
    if not isinstance(body, dict):
        kind = _json_type(body)
        raise InvalidRequestError(
            f"invalid request body: expected a JSON object, got {kind}"
        )

    return body


def _require_string(fields: Mapping[str, Any], key: str, field: str) -> str:
    value = fields.get(key)
    if value is None or value == "":
        raise InvalidRequestError.for_field(field, "is required")
    if not isinstance(value, str):
        raise _wrong_type(field, "a string", value)

    return value


def _check_optional_string(fields: Mapping[str, Any], key: str, field: str) -> None:
    value = fields.get(key)
    if value is not None and not isinstance(value, str):
        raise _wrong_type(field, "a string", value)


def _check_ip(value: str) -> None:
    try:
        ipaddress.ip_address(value)
    except ValueError:
        raise InvalidRequestError.for_field(
            "ip", f"{_quote(value)} is not an IP address"
        ) from None


def _check_labels(labels: object) -> None:
    if labels is None:
        return
    if not isinstance(labels, dict):
        raise _wrong_type("labels", "an object", labels)

    total_bytes = 0
    for key, value in labels.items():
        _check_label_key(key)
        if not isinstance(value, str):
            reason = f"value of key {_quote(key)} must be a string, got "
            raise InvalidRequestError.for_field("labels", reason + _json_type(value))
        total_bytes += len(key.encode()) + len(value.encode())

    if total_bytes > LABELS_MAX_BYTES:
        reason = f"keys and values total {total_bytes} bytes, the maximum is "
        raise InvalidRequestError.for_field("labels", f"{reason}{LABELS_MAX_BYTES}")


def _check_label_key(key: str) -> None:
    problem = label_key_problem(key)
    if problem is not None:
        reason = f"key {_quote(key)} is not a valid label key: {problem}"
        raise InvalidRequestError.for_field("labels", reason)


def label_key_problem(key: str) -> str | None:
    """Return why key is not a Kubernetes label key, or None when it is one."""
    if key.count("/") > 1:
        return "it must contain at most one '/'"

    prefix, slash, name = key.rpartition("/")
    if slash and not prefix:
        return "the prefix before '/' must not be empty"
    if prefix:
        problem = dns1123_subdomain_problem(prefix)
        if problem is not None:
            return f"the prefix {problem}"

    return _qualified_name_problem(name)


def _qualified_name_problem(name: str) -> str | None:
    if not name:
        return "the name must not be empty"
    if len(name) > _QUALIFIED_NAME_MAX:
        return f"the name must be at most {_QUALIFIED_NAME_MAX} characters"
    if not _QUALIFIED_NAME.fullmatch(name):
        return (
            "the name must consist of alphanumerics, '-', '_' or '.', "
            "and start and end with an alphanumeric"
        )

    return None


def dns1123_subdomain_problem(value: str) -> str | None:
    """Return why value is not a DNS-1123 subdomain, or None when it is one."""
    if len(value) > _DNS1123_SUBDOMAIN_MAX:
        return f"must be at most {_DNS1123_SUBDOMAIN_MAX} characters"
    if not _DNS1123_SUBDOMAIN.fullmatch(value):
        return (
            "must be a DNS-1123 subdomain: lower-case alphanumerics, '-' and '.', "
            "starting and ending with an alphanumeric"
        )

    return None


def _dns1123_label_problem(value: str) -> str | None:
    if len(value) > _DNS1123_LABEL_MAX:
        return f"must be at most {_DNS1123_LABEL_MAX} characters"
    if not _DNS1123_LABEL.fullmatch(value):
        return (
            "must be a DNS-1123 label: lower-case alphanumerics and '-', "
            "starting and ending with an alphanumeric"
        )

    return None


def _check_context(fields: Mapping[str, Any], kind: str) -> None:
    for other_kind, key in _CONTEXT_FIELDS.items():
        if other_kind != kind and fields.get(key) is not None:
            reason = f"must not be set when kind is {_quote(kind)}"
            raise InvalidRequestError.for_field(key, reason)

    key = _CONTEXT_FIELDS[kind]
    context = fields.get(key)
    if context is None:
        reason = f"is required when kind is {_quote(kind)}"
        raise InvalidRequestError.for_field(key, reason)
    if not isinstance(context, dict):
        raise _wrong_type(key, "an object", context)

    if kind == "vanilla":
        _check_vanilla_context(context)
    elif kind == "kubernetes":
        _check_kubernetes_context(context)
    else:
        _check_github_context(context)


def _check_vanilla_context(context: Mapping[str, Any]) -> None:
    for key in ("job", "runner_os"):
        _require_string(context, key, f"vanilla_context.{key}")


def _check_kubernetes_context(context: Mapping[str, Any]) -> None:
    cluster = _require_string(context, "cluster", "kubernetes_context.cluster")
    problem = dns1123_subdomain_problem(cluster)
    if problem is not None:
        field = "kubernetes_context.cluster"
        raise InvalidRequestError.for_field(field, f"{_quote(cluster)} {problem}")

    _require_string(context, "node", "kubernetes_context.node")

    field = "kubernetes_context.namespace"
    _check_optional_string(context, "namespace", field)
    namespace = context.get("namespace")
    if namespace:
        problem = _dns1123_label_problem(namespace)
        if problem is not None:
            raise InvalidRequestError.for_field(field, f"{_quote(namespace)} {problem}")


def _check_github_context(context: Mapping[str, Any]) -> None:
    for key in _GITHUB_REQUIRED:
        _require_string(context, key, f"github_context.{key}")
    for key in _GITHUB_OPTIONAL:
        _check_optional_string(context, key, f"github_context.{key}")

    ref_protected = context.get("ref_protected")
    if ref_protected is not None and not isinstance(ref_protected, bool):
        raise _wrong_type("github_context.ref_protected", "a boolean", ref_protected)

    job_index = context.get("job_index")
    if job_index is not None:
        _check_int64("github_context.job_index", job_index)


def _check_int64(field: str, value: object) -> None:
    # bool is a subclass of int in Python, but JSON true is no integer to Go.
    if isinstance(value, bool) or not isinstance(value, int):
        raise _wrong_type(field, "an integer", value)
    if not _INT64_MIN <= value <= _INT64_MAX:
        raise InvalidRequestError.for_field(field, f"{value} overflows a 64-bit int")


def _wrong_type(field: str, expected: str, value: object) -> InvalidRequestError:
    reason = f"expected {expected}, got {_json_type(value)}"
    return InvalidRequestError.for_field(field, reason)


def _json_type(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"

    return "an object"


def _quote(value: str, limit: int = 80) -> str:
    """Quote a client-supplied value for a message, cut to limit characters."""
    if len(value) > limit:
        value = value[:limit] + "..."

    return repr(value)
