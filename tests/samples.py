"""Sample requests shared by the tests."""

# A valid registration body for a plain host, as the contract defines it.
REGISTRATION_BODY: dict[str, object] = {
    "os": "linux",
    "arch": "amd64",
    "hostname": "web-1",
    "version": "0.1.0",
    "ip": "192.0.2.10",
    "machine_id": "0123456789abcdef0123456789abcdef",
    "kind": "vanilla",
    "vanilla_context": {"job": "web-1", "runner_os": "Linux"},
}
