"""Exceptions of the local Garnet API."""

from jibrild.errors import ExitCode, JibrildError


class LocalApiError(JibrildError):
    """Invalid options or project token file, which stop the server starting."""

    exit_code = ExitCode.USAGE


class StateFolderError(LocalApiError):
    """A file in the state folder is missing, unreadable or malformed."""

    exit_code = ExitCode.STATE


class HttpError(LocalApiError):
    """An error response to one request, with the message for its JSON body."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class InvalidRequestError(HttpError):
    """A request body that the API rejects with 400, naming the invalid field."""

    def __init__(self, message: str) -> None:
        super().__init__(400, message)

    @classmethod
    def for_field(cls, field: str, reason: str) -> "InvalidRequestError":
        """Build the error for one field, in the form the API sends."""
        return cls(f"invalid field '{field}': {reason}")
