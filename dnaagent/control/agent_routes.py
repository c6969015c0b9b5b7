"""The control API routes of the agent core: status, modules, runs, results."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from dnaagent.control.api import ApiError, JsonApi, arg_float, arg_int
from dnaagent.mediator.interface import describe

if TYPE_CHECKING:
    from dnaagent.service import AgentService

MAX_TESTS = 64


def _run_request(body: Any) -> tuple[str, list[str] | None, dict[str, str]]:
    """Check a ``POST /api/v1/run`` body: ``{"module", "tests"?, "params"?}``."""
    if not isinstance(body, dict):
        raise ApiError(400, 'body must be a JSON object like {"module": "local"}')
    unknown = set(body) - {"module", "tests", "params"}
    if unknown:
        raise ApiError(400, f"unknown field(s) in body: {', '.join(sorted(unknown))}")
    module = body.get("module")
    if not isinstance(module, str) or not module:
        raise ApiError(400, "field 'module' must be a module name")
    tests = body.get("tests")
    if tests is not None:
        if (
            not isinstance(tests, list)
            or not all(isinstance(t, str) and t for t in tests)
            or len(tests) > MAX_TESTS
        ):
            raise ApiError(400, f"field 'tests' must be a list of at most {MAX_TESTS} test names")
    params = body.get("params") or {}
    if not isinstance(params, dict) or not all(
        isinstance(k, str) and isinstance(v, str) and len(v) < 1024 for k, v in params.items()
    ):
        raise ApiError(400, "field 'params' must map parameter names to strings")
    return module, tests, params


def install_agent_routes(api: JsonApi, agent: AgentService) -> None:
    """Serve the core routes of ``agent`` on ``api``."""

    def mediator() -> Any:
        assert agent.mediator is not None
        return agent.mediator

    def index(args: Mapping[str, str], body: Any) -> Any:
        return {"routes": api.routes()}

    def status(args: Mapping[str, str], body: Any) -> Any:
        return agent.status()

    def modules(args: Mapping[str, str], body: Any) -> Any:
        return {"modules": [describe(m) for m in mediator().modules.values()]}

    def run(args: Mapping[str, str], body: Any) -> Any:
        module, tests, params = _run_request(body)
        d = mediator().run(module, tests, params, origin="control")
        d.addCallback(lambda results: {"results": [r.to_json() for r in results]})
        return d

    def results(args: Mapping[str, str], body: Any) -> Any:
        if agent.store is None:
            raise ApiError(503, "the results store is closed")
        history = agent.store.history(
            since=arg_float(args, "since"),
            module=args.get("module") or None,
            test=args.get("test") or None,
            limit=arg_int(args, "limit", 1000, 1, 100_000),
        )
        return {"results": [r.to_json() for r in history]}

    def latest(args: Mapping[str, str], body: Any) -> Any:
        found = mediator().latest(args.get("module") or None)
        return {"results": [r.to_json() for r in found]}

    api.route("GET", "/api/v1", index)
    api.route("GET", "/api/v1/status", status)
    api.route("GET", "/api/v1/modules", modules)
    api.route("POST", "/api/v1/run", run)
    api.route("GET", "/api/v1/results", results)
    api.route("GET", "/api/v1/results/latest", latest)
