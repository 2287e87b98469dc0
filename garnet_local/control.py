"""Test control endpoints under `/_local/`: agents, faults and the request log.

They take no credential, which is safe only because the command line and
LocalGarnet bind loopback addresses alone.
"""

import logging

from aiohttp import web

from garnet_local.api import read_json
from garnet_local.errors import HttpError
from garnet_local.faults import parse_fault
from garnet_local.state import STATE_KEY
from garnet_local.store import Agent

log = logging.getLogger(__name__)


async def list_agents(request: web.Request) -> web.Response:
    """List every agent, deleted ones included."""
    agents = request.app[STATE_KEY].agents.agents.values()

    return web.json_response([agent.to_listing() for agent in agents])


async def revoke_agent(request: web.Request) -> web.Response:
    """Revoke an agent's token, so its calls get 401."""
    agent = _find_agent(request)
    agent.revoked = True
    await request.app[STATE_KEY].agents.save()
    log.info("agent token revoked agent_id=%s", agent.id)

    return web.json_response(agent.to_listing())


async def delete_agent(request: web.Request) -> web.Response:
    """Delete an agent but keep it as a tombstone, so its calls get 404."""
    agent = _find_agent(request)
    agent.deleted = True
    await request.app[STATE_KEY].agents.save()
    log.info("agent deleted agent_id=%s", agent.id)

    return web.json_response(agent.to_listing())


async def add_fault(request: web.Request) -> web.Response:
    """Add a fault after those already set."""
    fault = parse_fault(await read_json(request))
    request.app[STATE_KEY].faults.add(fault)
    log.info("fault added path=%s status=%s", fault.path, fault.status)

    return web.json_response(fault.to_json(), status=201)


async def clear_faults(request: web.Request) -> web.Response:
    """Remove every fault."""
    request.app[STATE_KEY].faults.clear()

    return web.Response(status=204)


async def list_requests(request: web.Request) -> web.Response:
    """List the API requests received, oldest first, with no token value."""
    return web.json_response(list(request.app[STATE_KEY].request_log))


async def clear_requests(request: web.Request) -> web.Response:
    """Empty the request log."""
    request.app[STATE_KEY].request_log.clear()

    return web.Response(status=204)


def _find_agent(request: web.Request) -> Agent:
    agent_id = request.match_info["agent_id"]
    agent = request.app[STATE_KEY].agents.agents.get(agent_id)
    if agent is None:
        raise HttpError(404, f"agent {agent_id} not found")

    return agent
