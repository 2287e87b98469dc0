"""Exceptions of jibrild and the exit codes they end the process with."""

from enum import IntEnum
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from jibrild.sources.variables import UnknownVariable


class ExitCode(IntEnum):
    """Process exit codes; the ones from sysexits.h keep their meaning there."""

    OK = 0
    INTERNAL = 1
    USAGE = 2
    REGISTRATION_REJECTED = 65
    UNAVAILABLE = 69
    STATE = 73
    LOCKED = 75
    PROJECT_TOKEN_REJECTED = 77
    SETTINGS = 78


class JibrildError(Exception):
    """Base of every expected failure; the message is shown to the operator."""

    exit_code = ExitCode.INTERNAL


class SettingsError(JibrildError):
    """Invalid settings: the message names the source (file and line,
    environment variable or option) and what is expected."""

    exit_code = ExitCode.SETTINGS
    # Set by load_settings. A misspelt variable may be the cause of the
    # error, so the caller logs these before it.
    unknown_variables: tuple["UnknownVariable", ...] = ()


class UsageError(JibrildError):
    """A command cannot run as given, such as a confirmation that cannot be
    asked for without a terminal."""

    exit_code = ExitCode.USAGE


class TokenStoreError(JibrildError):
    """The agent token file or its folder cannot be used safely."""

    exit_code = ExitCode.STATE


class AlreadyRunningError(JibrildError):
    """Another daemon has the lock on the state folder. ``holder`` is the
    PID written in the lock file, or 'unknown'."""

    exit_code = ExitCode.LOCKED

    def __init__(self, message: str, holder: str) -> None:
        super().__init__(message)
        self.holder = holder


class ApiUnavailableError(JibrildError):
    """Registration kept failing for transient reasons until the command
    gave up."""

    exit_code = ExitCode.UNAVAILABLE


class RegistrationRejectedError(JibrildError):
    """The API responded 400: the registration body is wrong and a retry
    cannot fix it."""

    exit_code = ExitCode.REGISTRATION_REJECTED


class ProjectTokenRejectedError(JibrildError):
    """The API responded 401 or 403 to the project token."""

    exit_code = ExitCode.PROJECT_TOKEN_REJECTED
