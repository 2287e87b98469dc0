"""The aiohttp application: routes under a prefix, and per-request middleware."""

import asyncio
import json
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from aiohttp import web
from aiohttp.typedefs import Handler

from garnet_local import api, control
from garnet_local.errors import HttpError
from garnet_local.state import (
    AGENT_TOKEN_HEADER,
    PROJECT_TOKEN_HEADER,
    STATE_KEY,
    ServerState,
)
from garnet_local.tokens import fingerprint

log = logging.getLogger("garnet_local")

# Request storage key of the error message that _json_errors leaves for the
# log line. Messages may quote the path and body values, never a credential.
_ERROR_KEY = web.RequestKey("garnet_local_error", str)


def make_app(
    state_dir: Path, project_tokens: Mapping[str, str], prefix: str = "/"
) -> web.Application:
    """Build the application, loading agents and the token secret from state_dir.

    project_tokens maps each project token to "write" or "readonly". Every
    route, `/_local/` included, is served under prefix.
    """
    prefix = normalize_prefix(prefix)
    app = web.Application(
        middlewares=[_log_request, _record_request, _inject_fault, _json_errors]
    )
    app[STATE_KEY] = ServerState.load(state_dir, project_tokens, prefix)
    _add_routes(app.router, prefix)

    return app


def normalize_prefix(prefix: str) -> str:
    """Return prefix with one leading and one trailing slash."""
    if not prefix.startswith("/"):
        raise ValueError(f"invalid prefix {prefix!r}: it must start with '/'")

    return prefix.rstrip("/") + "/"


def _add_routes(router: web.UrlDispatcher, prefix: str) -> None:
    router.add_post(f"{prefix}api/v1/agents", api.register_agent)
    router.add_post(f"{prefix}api/v1/agent_heartbeat", api.heartbeat)
    router.add_put(f"{prefix}api/v1/events_v2", api.put_event)
    router.add_post(f"{prefix}api/v1/profiles", api.post_profile)
    router.add_get(f"{prefix}healthz", api.healthz)

    router.add_get(f"{prefix}_local/agents", control.list_agents)
    router.add_post(f"{prefix}_local/agents/{{agent_id}}/revoke", control.revoke_agent)
    router.add_delete(f"{prefix}_local/agents/{{agent_id}}", control.delete_agent)
    router.add_post(f"{prefix}_local/faults", control.add_fault)
    router.add_delete(f"{prefix}_local/faults", control.clear_faults)
    router.add_get(f"{prefix}_local/requests", control.list_requests)
    router.add_delete(f"{prefix}_local/requests", control.clear_requests)


@web.middleware
async def _log_request(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Log one line per request with its path and any error, never its headers."""
    try:
        response = await handler(request)
    except Exception:
        log.exception("request failed method=%s path=%s", request.method, request.path)
        raise

    method, path, status = request.method, request.path, response.status
    error = request.get(_ERROR_KEY)
    if error is None:
        log.info("request method=%s path=%s status=%d", method, path, status)
    else:
        log.info(
            "request method=%s path=%s status=%d error=%r", method, path, status, error
        )

    return response


@web.middleware
async def _record_request(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Append every request but the control ones to the request log."""
    state = request.app[STATE_KEY]
    if _is_control(state.prefix, request.path):
        return await handler(request)

    entry = _new_log_entry(request)
    state.request_log.append(entry)
    try:
        raw_body = await request.read()
    except web.HTTPException as error:
        # Raised for a body over the application's client_max_size (1 MiB).
        message = f"{error.reason.lower()}: {request.method} {request.path}"
        request[_ERROR_KEY] = message
        response: web.StreamResponse = _error_response(error.status, message)
    else:
        entry["body"] = _parse_logged_body(raw_body)
        response = await handler(request)

    entry["status"] = response.status

    return response


@web.middleware
async def _inject_fault(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Delay a request, or respond in its place, as the first matching fault sets."""
    state = request.app[STATE_KEY]
    api_path = _api_path(state.prefix, request.path)
    if api_path is None or _is_control(state.prefix, request.path):
        return await handler(request)

    fault = state.faults.take(request.method, api_path)
    if fault is None:
        return await handler(request)

    await asyncio.sleep(fault.delay)
    if fault.status is None:
        return await handler(request)

    body, content_type = fault.response_body()
    headers = {"Content-Type": content_type}
    if fault.retry_after is not None:
        headers["Retry-After"] = fault.retry_after
    if fault.location is not None:
        headers["Location"] = fault.location

    return web.Response(status=fault.status, body=body.encode(), headers=headers)


@web.middleware
async def _json_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Turn errors into `{"error": ...}` responses, the API's error shape."""
    try:
        return await handler(request)
    except HttpError as error:
        request[_ERROR_KEY] = str(error)
        return _error_response(error.status, str(error))
    except web.HTTPException as error:
        if error.status < 400:
            raise
        message = f"{error.reason.lower()}: {request.method} {request.path}"
        request[_ERROR_KEY] = message
        response = _error_response(error.status, message)
        if "Allow" in error.headers:
            response.headers["Allow"] = error.headers["Allow"]
        return response


def _error_response(status: int, message: str) -> web.Response:
    return web.json_response({"error": message}, status=status)


def _new_log_entry(request: web.Request) -> dict[str, Any]:
    credentials = {
        header: fingerprint(request.headers[header])
        for header in (PROJECT_TOKEN_HEADER, AGENT_TOKEN_HEADER)
        if header in request.headers
    }

    return {
        "method": request.method,
        "path": request.path,
        "headers": list(request.headers.keys()),
        "credentials": credentials,
        "body": None,
        "status": None,
    }


def _parse_logged_body(raw_body: bytes) -> Any:
    """Return the body as JSON, or None when it is empty or not JSON."""
    try:
        return json.loads(raw_body) if raw_body else None
    except ValueError:
        return None


def _api_path(prefix: str, path: str) -> str | None:
    """Return path without the prefix, or None when it is outside the prefix."""
    if not path.startswith(prefix):
        return None

    return "/" + path[len(prefix) :]


def _is_control(prefix: str, path: str) -> bool:
    return path.startswith(f"{prefix}_local/")
