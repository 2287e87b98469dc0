"""The names each setting goes by in the YAML file, the environment and the CLI."""

from dataclasses import dataclass
from typing import Literal

# Kind of a raw value. It decides which YAML node types a key accepts, and
# that labels from environment variables and options are parsed as pairs.
ValueKind = Literal["text", "number", "flag", "labels", "secret"]


@dataclass(frozen=True)
class SettingKey:
    """One setting: its field on Settings and its name in every source."""

    field: str
    yaml_key: str  # dotted, under the `run-time:` section
    env_var: str
    option: str | None  # None where the CLI must not take the value
    kind: ValueKind
    expected: str  # what a valid value looks like, shown after "expected"
    help: str


SETTING_KEYS: tuple[SettingKey, ...] = (
    SettingKey(
        "api_url",
        "api.url",
        "GARNET_API_URL",
        "--api-url",
        "text",
        "an http:// or https:// URL",
        "base URL of the Garnet API",
    ),
    SettingKey(
        "project_token",
        "api.token",
        "GARNET_API_TOKEN",
        None,
        "secret",
        "the project token as visible ASCII characters without spaces",
        "project token used for registration",
    ),
    SettingKey(
        "agent_token_path",
        "api.agent-token-path",
        "GARNET_AGENT_TOKEN_PATH",
        "--agent-token-path",
        "text",
        "an absolute path",
        "file that stores the agent token",
    ),
    SettingKey(
        "request_timeout",
        "api.request-timeout",
        "GARNET_API_TIMEOUT",
        "--request-timeout",
        "number",
        "a number of seconds from 1 to 300",
        "timeout of one API request, in seconds",
    ),
    SettingKey(
        "ca_file",
        "api.ca-file",
        "GARNET_API_CA_FILE",
        "--ca-file",
        "text",
        "the path of a readable PEM file of CA certificates",
        "PEM file of CA certificates to trust besides the system ones",
    ),
    SettingKey(
        "allow_insecure_http",
        "api.allow-insecure-http",
        "GARNET_API_ALLOW_INSECURE_HTTP",
        "--allow-insecure-http",
        "flag",
        "true or false (or 1/0, yes/no)",
        "allow a plain http:// API URL to a host other than loopback",
    ),
    SettingKey(
        "heartbeat_interval",
        "heartbeat-interval",
        "JIBRIL_HEARTBEAT_INTERVAL",
        "--heartbeat-interval",
        "number",
        "a number of seconds from 1 to 86400",
        "time between two heartbeats, in seconds",
    ),
    SettingKey(
        "labels",
        "labels",
        "JIBRIL_LABELS",
        "--label",
        "labels",
        "labels as KEY=VALUE pairs with Kubernetes label keys",
        "label sent at registration, as KEY=VALUE (repeatable)",
    ),
    SettingKey(
        "job",
        "job",
        "JIBRIL_JOB",
        "--job",
        "text",
        "a non-empty string without control characters",
        "job name sent at registration (default: the hostname)",
    ),
    SettingKey(
        "cluster_name",
        "cluster-name",
        "JIBRIL_CLUSTER_NAME",
        "--cluster-name",
        "text",
        "a DNS-1123 subdomain (lower-case letters, digits, '-' and '.')",
        "Kubernetes cluster name, needed for the kubernetes agent kind",
    ),
    SettingKey(
        "runtime_environment",
        "runtime-environment",
        "JIBRIL_RUNTIME_ENVIRONMENT",
        "--runtime-environment",
        "text",
        "one of auto, vanilla, container, kubernetes, github",
        "runtime environment to assume instead of detecting it",
    ),
    SettingKey(
        "log_level",
        "log-level",
        "JIBRIL_LOG_LEVEL",
        "--log-level",
        "text",
        "one of debug, info, warning, error",
        "lowest level of log lines to write",
    ),
)

KEYS_BY_FIELD: dict[str, SettingKey] = {key.field: key for key in SETTING_KEYS}
KEYS_BY_YAML_KEY: dict[str, SettingKey] = {key.yaml_key: key for key in SETTING_KEYS}
KEYS_BY_ENV_VAR: dict[str, SettingKey] = {key.env_var: key for key in SETTING_KEYS}

TOKEN_FILE_ENV_VAR = "GARNET_API_TOKEN_FILE"  # noqa: S105 -- a variable name
CREDENTIALS_DIRECTORY_ENV_VAR = "CREDENTIALS_DIRECTORY"
# Set by jibril.service to its runtime folder, which contains the copies of
# the root-only settings files.
SETTINGS_COPIES_ENV_VAR = "JIBRIL_SETTINGS_COPIES"
CREDENTIAL_NAME = "garnet-api-token"
