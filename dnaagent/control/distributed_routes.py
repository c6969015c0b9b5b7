"""Control API routes of the distributed tests: guard and trust status, module fetch.

* ``GET /api/v1/distributed``: the guard's counters and limits, the trust
  store's keys, kept packages and rejection counters, the DNS proxy.
* ``POST /api/v1/distributed/fetch`` ``{"peer": ID-or-ADDRESS, "name": N}``:
  fetch the module package ``N`` from a peer over the overlay, verify it
  against the trust store, keep it and register its test module.
* ``POST /api/v1/distributed/run-remote`` ``{"peer", "module", "test", "params"?}``:
  ask a peer to run one test of a signed module; a peer that lacks the module
  fetches it from this agent and runs it only if it verifies.

Running the tests themselves goes through ``POST /api/v1/run`` like any
module (``{"module": "distributed", "tests": ["DistributedPing"], "params":
{"target": "192.0.2.1"}}``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from twisted.internet import defer

from dnaagent.control.api import ApiError, JsonApi
from dnaagent.guard.catalogue import Refused
from dnaagent.mediator.interface import InvalidParameters
from dnaagent.trust.loader import ModuleLoadError, fetch_package
from dnaagent.trust.store import UntrustedPackage

if TYPE_CHECKING:
    from dnaagent.service import AgentService


def _module(agent: AgentService) -> Any:
    mediator = agent.mediator
    module = mediator.modules.get("distributed") if mediator is not None else None
    if module is None:
        raise ApiError(404, "the distributed module is not loaded ([distributed] enabled = false?)")
    return module


def install_distributed_routes(api: JsonApi, agent: AgentService) -> None:
    """Serve the distributed routes of ``agent`` on ``api``."""
    from dnaagent.modules.distributed.handlers import HANDLERS, raise_if_refused
    from dnaagent.modules.distributed.module import parse_partner

    def status(args: Mapping[str, str], body: Any) -> Any:
        return _module(agent).status()

    async def fetch(body: Any) -> Any:
        module = _module(agent)
        if not isinstance(body, dict) or set(body) != {"peer", "name"}:
            raise ApiError(400, 'body must be {"peer": NODE_ID_OR_ADDRESS, "name": MODULE}')
        if agent.overlay is None or module.packages is None:
            raise ApiError(503, "the overlay is off: no peer to fetch from")
        try:
            peer = parse_partner(str(body["peer"]))
        except InvalidParameters as e:
            raise ApiError(400, str(e)) from None
        name = str(body["name"])
        try:
            package = await fetch_package(agent.overlay, peer, name, module.packages)
            test_module = module.packages.make(name, agent.reactor, agent)
        except UntrustedPackage as e:
            raise ApiError(403, str(e)) from None
        except ModuleLoadError as e:
            raise ApiError(422, str(e)) from None
        except Exception as e:  # noqa: BLE001 (overlay errors: peer gone, timeout)
            raise ApiError(502, f"fetching {name} failed: {e}") from None
        assert agent.mediator is not None
        agent.mediator.register(test_module)
        m = package.manifest
        return {"installed": m.name, "version": m.version, "signed_by": package.key_id}

    async def run_remote(body: Any) -> Any:
        _module(agent)  # 404 when the module is off
        if not isinstance(body, dict) or not {"peer", "module", "test"} <= set(body) <= {
            "peer",
            "module",
            "test",
            "params",
        }:
            raise ApiError(
                400, 'body must be {"peer": ID_OR_ADDRESS, "module": M, "test": T, "params"?: {}}'
            )
        if agent.overlay is None:
            raise ApiError(503, "the overlay is off: no peer to ask")
        try:
            peer = parse_partner(str(body["peer"]))
        except InvalidParameters as e:
            raise ApiError(400, str(e)) from None
        request = {"module": body["module"], "test": body["test"]}
        if body.get("params"):
            request["params"] = body["params"]
        try:
            answer = await agent.overlay.request(peer, HANDLERS["run"], request, timeout=90.0)
            return raise_if_refused(answer)
        except Refused as e:
            raise ApiError(403, str(e)) from None
        except Exception as e:  # noqa: BLE001 (overlay errors: peer gone, timeout)
            raise ApiError(502, f"the peer did not run it: {e}") from None

    api.route("GET", "/api/v1/distributed", status)
    api.route(
        "POST", "/api/v1/distributed/run-remote", lambda a, b: defer.ensureDeferred(run_remote(b))
    )
    api.route("POST", "/api/v1/distributed/fetch", lambda a, b: defer.ensureDeferred(fetch(b)))
