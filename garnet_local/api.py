"""Handlers of the Garnet API calls that an agent makes."""

import hmac
import json
import logging
import uuid
from typing import Any

from aiohttp import web

from garnet_local.errors import HttpError, InvalidRequestError
from garnet_local.state import (
    AGENT_TOKEN_HEADER,
    PROJECT_TOKEN_HEADER,
    STATE_KEY,
    ServerState,
)
from garnet_local.store import Agent
from garnet_local.tokens import (
    InvalidTokenError,
    issue_agent_token,
    verify_agent_token,
)
from garnet_local.validation import validate_event, validate_registration

log = logging.getLogger(__name__)


async def register_agent(request: web.Request) -> web.Response:
    """Register an agent: `POST /api/v1/agents` with a project token."""
    state = request.app[STATE_KEY]
    _check_project_token(state, request.headers.get(PROJECT_TOKEN_HEADER))
    registration = validate_registration(await read_json(request))

    agent_id = str(uuid.uuid4())
    agent_token, token_id = issue_agent_token(state.secret, agent_id)
    agent = state.agents.add(agent_id, token_id, registration)
    await state.agents.save()
    log.info("agent registered agent_id=%s kind=%s", agent.id, agent.kind)

    return web.json_response({"id": agent_id, "agent_token": agent_token}, status=201)


async def heartbeat(request: web.Request) -> web.Response:
    """Count a heartbeat: `POST /api/v1/agent_heartbeat` with an agent token."""
    agent = _authenticate_agent(request)
    agent.heartbeats += 1

    return web.json_response({"status": "ok"})


async def put_event(request: web.Request) -> web.Response:
    """Store an event by its id: 201 when new, 202 when it replaces one."""
    agent = _authenticate_agent(request)
    event = validate_event(await read_json(request))

    events = request.app[STATE_KEY].events
    event_id = str(uuid.UUID(event["id"]))
    status = 202 if event_id in events else 201
    events[event_id] = {"agent_id": agent.id, **event}

    return web.json_response({"id": event_id}, status=status)


async def post_profile(request: web.Request) -> web.Response:
    """Accept an agent's run profile: `POST /api/v1/profiles`."""
    _authenticate_agent(request)
    body = await read_json(request)
    if not isinstance(body, dict):
        raise InvalidRequestError("invalid request body: expected a JSON object")

    return web.json_response({"status": "created"}, status=201)


async def healthz(request: web.Request) -> web.Response:
    """Report that the server is up: `GET /healthz`, no credential."""
    return web.json_response({"status": "ok"})


async def read_json(request: web.Request) -> Any:
    """Parse the request body as strict JSON, or raise InvalidRequestError."""
    raw = await request.read()
    if not raw:
        raise InvalidRequestError("invalid request body: empty, expected JSON")

    try:
        return json.loads(raw, parse_constant=_reject_constant)
    except ValueError as error:
        raise InvalidRequestError(f"invalid request body: {error}") from None


def _reject_constant(name: str) -> None:
    # Python's json accepts NaN and Infinity, but they are not JSON (RFC 8259)
    # and a Go decoder rejects them.
    raise ValueError(f"{name} is not valid JSON")


def _check_project_token(state: ServerState, token: str | None) -> None:
    if not token:
        raise HttpError(401, f"missing {PROJECT_TOKEN_HEADER} header")

    permission = None
    for known, known_permission in state.project_tokens.items():
        if hmac.compare_digest(known.encode(), token.encode(errors="surrogateescape")):
            permission = known_permission

    if permission is None:
        raise HttpError(401, "invalid project token")
    if permission != "write":
        raise HttpError(
            403, "project token is read-only, but registration needs write permission"
        )


def _authenticate_agent(request: web.Request) -> Agent:
    state = request.app[STATE_KEY]
    token = request.headers.get(AGENT_TOKEN_HEADER)
    if not token:
        raise HttpError(401, f"missing {AGENT_TOKEN_HEADER} header")

    try:
        claims = verify_agent_token(state.secret, token)
    except InvalidTokenError:
        raise HttpError(401, "invalid agent token") from None

    agent = state.agents.agents.get(claims.agent_id)
    if agent is None or agent.token_id != claims.token_id:
        raise HttpError(401, "invalid agent token")
    if agent.revoked:
        raise HttpError(401, "agent token revoked")
    if agent.deleted:
        raise HttpError(404, f"agent {agent.id} not found because it was deleted")

    return agent
