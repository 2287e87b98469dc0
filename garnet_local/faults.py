"""Injected faults: delays and canned error responses for chosen API requests."""

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

from garnet_local.errors import InvalidRequestError

_DEFAULT_BODY = '{"error": "fault injected by the local Garnet API"}'


@dataclass
class Fault:
    """A rule that delays requests to one API path, and optionally responds to them.

    path is the API path without the server's prefix (`/api/v1/agents`).
    times counts the requests still to be affected, and None means every
    request until the faults are cleared.
    """

    path: str
    method: str | None = None
    status: int | None = None
    delay: float = 0.0
    retry_after: str | None = None
    body: str | None = None
    content_type: str | None = None
    location: str | None = None
    times: int | None = None

    def matches(self, method: str, path: str) -> bool:
        """Return whether this fault applies to a request."""
        return self.path == path and self.method in (None, method)

    def response_body(self) -> tuple[str, str]:
        """Return the body and content type of the fault's response."""
        body = _DEFAULT_BODY if self.body is None else self.body

        return body, self.content_type or "application/json"

    def to_json(self) -> dict[str, Any]:
        """Return the fault as `POST /_local/faults` accepts it."""
        return asdict(self)


class FaultList:
    """Faults in the order they were added, of which the first match applies."""

    def __init__(self) -> None:
        self._faults: list[Fault] = []

    def add(self, fault: Fault) -> None:
        """Append a fault after the ones already set."""
        self._faults.append(fault)

    def clear(self) -> None:
        """Remove every fault."""
        self._faults.clear()

    def take(self, method: str, path: str) -> Fault | None:
        """Return the first fault matching a request, using up one of its times."""
        for fault in self._faults:
            if fault.matches(method, path):
                _use_once(self._faults, fault)
                return fault

        return None


def _use_once(faults: list[Fault], fault: Fault) -> None:
    if fault.times is None:
        return

    fault.times -= 1
    if fault.times == 0:
        faults.remove(fault)


def parse_fault(body: object) -> Fault:
    """Build a Fault from a `POST /_local/faults` body, or raise naming the field."""
    if not isinstance(body, Mapping):
        raise InvalidRequestError("invalid request body: expected a JSON object")

    path = body.get("path")
    if not isinstance(path, str) or not path.startswith("/"):
        raise InvalidRequestError.for_field("path", "expected a path starting with /")

    return Fault(
        path=path,
        method=_parse_method(body.get("method")),
        status=_parse_status(body.get("status")),
        delay=_parse_delay(body.get("delay")),
        retry_after=_parse_retry_after(body.get("retry_after")),
        body=_parse_body(body.get("body")),
        content_type=_parse_content_type(body.get("content_type")),
        location=_parse_location(body.get("location")),
        times=_parse_times(body.get("times")),
    )


def _parse_method(value: object) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not value.isalpha():
        raise InvalidRequestError.for_field("method", "expected an HTTP method name")

    return value.upper()


def _parse_status(value: object) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidRequestError.for_field("status", "expected an integer")
    if not 200 <= value <= 599:
        raise InvalidRequestError.for_field("status", "expected 200 to 599")

    return value


def _parse_delay(value: object) -> float:
    if value is None:
        return 0.0
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidRequestError.for_field("delay", "expected seconds as a number")
    if not math.isfinite(value) or value < 0:
        raise InvalidRequestError.for_field("delay", "expected 0 or more seconds")

    return float(value)


def _parse_retry_after(value: object) -> str | None:
    # Retry-After is either delay-seconds or an HTTP date (RFC 9110, 10.2.3),
    # so a number is accepted and sent as its decimal text.
    if value is None:
        return None
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    if not isinstance(value, str) or not value.isprintable():
        reason = "expected seconds or an HTTP date as printable text"
        raise InvalidRequestError.for_field("retry_after", reason)

    return value


def _parse_content_type(value: object) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not value.isprintable():
        reason = "expected a media type as printable text"
        raise InvalidRequestError.for_field("content_type", reason)

    return value


def _parse_location(value: object) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not value.isprintable():
        raise InvalidRequestError.for_field("location", "expected a URL as text")

    return value


def _parse_body(value: object) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise InvalidRequestError.for_field("body", "expected a string")

    return value


def _parse_times(value: object) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise InvalidRequestError.for_field("times", "expected an integer of 1 or more")

    return value
