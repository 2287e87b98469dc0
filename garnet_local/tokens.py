"""Agent tokens: JWTs signed with HS256 over a secret kept in the state folder."""

import base64
import binascii
import hashlib
import hmac
import json
import os
import secrets
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from garnet_local.errors import StateFolderError

SECRET_FILE_NAME = "token-secret"
_SECRET_BYTES = 32
_LIFETIME_SECONDS = 100 * 365 * 24 * 3600
_HEADER: dict[str, object] = {"alg": "HS256", "typ": "JWT"}


@dataclass(frozen=True)
class AgentClaims:
    """The claims of a verified agent token."""

    agent_id: str
    token_id: str
    expires_at: int


class InvalidTokenError(Exception):
    """The agent token is malformed, wrongly signed or expired."""


def load_or_create_secret(state_dir: Path) -> bytes:
    """Read the signing secret, creating it with mode 0600 on first use."""
    path = state_dir / SECRET_FILE_NAME
    try:
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return _read_secret(path)

    secret = secrets.token_bytes(_SECRET_BYTES)
    with os.fdopen(descriptor, "wb") as file:
        file.write(secret)
        file.flush()
        os.fsync(file.fileno())

    return secret


def _read_secret(path: Path) -> bytes:
    try:
        secret = path.read_bytes()
    except OSError as error:
        raise StateFolderError(
            f"cannot read the token secret {path}: {error.strerror}. "
            "Check its permissions."
        ) from None

    if len(secret) != _SECRET_BYTES:
        raise StateFolderError(
            f"invalid token secret {path}: expected {_SECRET_BYTES} bytes, "
            f"found {len(secret)}. Delete it to create a new one, which "
            "invalidates every agent token issued so far."
        )

    return secret


def issue_agent_token(secret: bytes, agent_id: str) -> tuple[str, str]:
    """Sign a new agent token for agent_id and return the token and its jti."""
    issued_at = int(time.time())
    token_id = uuid.uuid4().hex
    claims: dict[str, object] = {
        "sub": agent_id,
        "iat": issued_at,
        "exp": issued_at + _LIFETIME_SECONDS,
        "jti": token_id,
    }

    signing_input = f"{_encode_part(_HEADER)}.{_encode_part(claims)}"
    signature = _sign(secret, signing_input)

    return f"{signing_input}.{signature}", token_id


def verify_agent_token(secret: bytes, token: str) -> AgentClaims:
    """Check the signature and expiry of token and return its claims."""
    parts = token.split(".")
    if not token.isascii() or len(parts) != 3:
        raise InvalidTokenError("not three dot-separated ASCII parts")

    signing_input = f"{parts[0]}.{parts[1]}"
    if not hmac.compare_digest(_sign(secret, signing_input), parts[2]):
        raise InvalidTokenError("bad signature")

    claims = _decode_part(parts[1])
    agent_id = claims.get("sub")
    token_id = claims.get("jti")
    expires_at = claims.get("exp")
    if not (
        isinstance(agent_id, str)
        and isinstance(token_id, str)
        and isinstance(expires_at, int)
    ):
        raise InvalidTokenError("missing claims")
    if expires_at <= time.time():
        raise InvalidTokenError("expired")

    return AgentClaims(agent_id, token_id, expires_at)


def fingerprint(token: str) -> str:
    """Return a short SHA-256 fingerprint that identifies a token in logs."""
    # aiohttp decodes header bytes that are not UTF-8 as surrogate escapes.
    digest = hashlib.sha256(token.encode(errors="surrogateescape")).hexdigest()

    return f"sha256:{digest[:12]}"


def _sign(secret: bytes, signing_input: str) -> str:
    digest = hmac.new(secret, signing_input.encode("ascii"), hashlib.sha256).digest()

    return _b64encode(digest)


def _encode_part(part: dict[str, object]) -> str:
    text = json.dumps(part, separators=(",", ":"), sort_keys=True)

    return _b64encode(text.encode())


def _decode_part(part: str) -> dict[str, object]:
    padded = part + "=" * (-len(part) % 4)
    try:
        decoded = json.loads(base64.urlsafe_b64decode(padded))
    except (binascii.Error, ValueError) as error:
        raise InvalidTokenError("claims are not base64url JSON") from error
    if not isinstance(decoded, dict):
        raise InvalidTokenError("claims are not a JSON object")

    return decoded


def _b64encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")
