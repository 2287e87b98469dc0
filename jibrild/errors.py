"""Exceptions of jibrild and the exit codes they end the process with."""

from enum import IntEnum


class ExitCode(IntEnum):
    """Process exit codes; the ones from sysexits.h keep their meaning there."""

    OK = 0
    INTERNAL = 1
    USAGE = 2
    REGISTRATION_REJECTED = 65
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


class TokenStoreError(JibrildError):
    """The agent token file or its folder cannot be used safely."""

    exit_code = ExitCode.STATE


class AlreadyRunningError(JibrildError):
    """Another daemon holds the lock on the state folder."""

    exit_code = ExitCode.LOCKED


class RegistrationRejectedError(JibrildError):
    """The API responded 400: the registration body is wrong and a retry
    cannot fix it."""

    exit_code = ExitCode.REGISTRATION_REJECTED


class ProjectTokenRejectedError(JibrildError):
    """The API responded 401 or 403 to the project token."""

    exit_code = ExitCode.PROJECT_TOKEN_REJECTED
