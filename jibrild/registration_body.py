"""The JSON body of the registration request, POST /api/v1/agents."""

from collections.abc import Mapping

from jibrild.environment import AGENT_KINDS, RuntimeEnvironment
from jibrild.hostfacts import HostFacts


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
    included. The settings have already checked the labels.
    """
    if runtime.agent_kind not in AGENT_KINDS:
        raise ValueError(f"unknown agent kind {runtime.agent_kind!r}")

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
