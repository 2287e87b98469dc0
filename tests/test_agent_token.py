"""Tests of how the stored identity's API URL is compared."""

import pytest

from jibrild.agent_token import same_api_url


@pytest.mark.parametrize(
    ("stored", "current"),
    [
        ("https://api.garnet.ai/", "https://api.garnet.ai"),
        ("https://API.Garnet.ai/", "https://api.garnet.ai/"),
        ("HTTPS://api.garnet.ai/", "https://api.garnet.ai:443/"),
        ("http://127.0.0.1:80/x/", "http://127.0.0.1/x"),
    ],
)
def test_same_api_spelled_differently(stored: str, current: str) -> None:
    """Case, a default port or a trailing slash name the same API."""
    assert same_api_url(stored, current)


@pytest.mark.parametrize(
    ("stored", "current"),
    [
        ("https://api.garnet.ai/", "https://eu.garnet.ai/"),
        ("https://api.garnet.ai/", "http://api.garnet.ai/"),
        ("https://api.garnet.ai/", "https://api.garnet.ai:8443/"),
        ("https://x.example/garnet/", "https://x.example/other/"),
    ],
)
def test_other_api_differs(stored: str, current: str) -> None:
    """Another host, scheme, port or path is another API."""
    assert not same_api_url(stored, current)
