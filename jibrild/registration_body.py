"""The JSON body of the registration request, POST /api/v1/agents."""

from collections.abc import Mapping

from jibrild.environment import AGENT_KINDS, RuntimeEnvironment
from jibrild.errors import SettingsError
from jibrild.hostfacts import HostFacts

# Maximum UTF-8 size of label keys and values taken together.
# NOTE: the API states "256 kB". Reading it as 256 KiB, like Kubernetes'
# annotation limit, is a guess, and the server may count 256000 bytes.
MAX_LABELS_BYTES = 256 * 1024


def build_registration_body(
    facts: HostFacts,
    runtime: RuntimeEnvironment,
    *,
    version: str,
    machine_id: str,
    labels: Mapping[str, str],
) -> dict[str, object]:
    """Build the registration body in the field order of the API contract.

    `labels` is omitted when empty, and only the context of the agent kind is
    included. Raises SettingsError when the labels exceed the API's size limit.
    """
    if runtime.agent_kind not in AGENT_KINDS:
        raise ValueError(f"unknown agent kind {runtime.agent_kind!r}")
    _check_labels_size(labels)

    body: dict[str, object] = {
        "os": facts.os,
        "arch": facts.arch,
        "hostname": facts.hostname,
        "version": version,
        "ip": facts.ip,
        "machine_id": machine_id,
    }
    if labels:
        body["labels"] = dict(labels)

    body["kind"] = runtime.agent_kind
    body[f"{runtime.agent_kind}_context"] = dict(runtime.context)
    return body


def _check_labels_size(labels: Mapping[str, str]) -> None:
    size = sum(len(key.encode()) + len(value.encode()) for key, value in labels.items())
    if size > MAX_LABELS_BYTES:
        raise SettingsError(
            f"Labels take {size} bytes, over the API's limit of {MAX_LABELS_BYTES} "
            "bytes for keys and values together. Remove or shorten labels in "
            "run-time.labels, JIBRIL_LABELS or --label."
        )
