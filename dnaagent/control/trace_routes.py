"""Control API routes of trace campaigns (DTS).

* ``GET  /api/v1/trace/campaigns``: campaigns joined on this agent, its monitor name,
  probes sent and refused.
* ``POST /api/v1/trace/campaigns`` ``{"campaign", "targets": [IP, ...], "chunk_size"?,
  "policy"?, "lease_seconds"?, "max_holders"?, "join"?}``: create a campaign in the DHT
  (and join it here when ``join`` is true).
* ``GET  /api/v1/trace/campaign?campaign=C``: its state: chunks done, claimed and
  pending, monitors, probes, deny list, and this agent's part.
* ``POST /api/v1/trace/campaign/join`` ``{"campaign"}``: probe it here.
* ``POST /api/v1/trace/campaign/leave`` ``{"campaign"}``: stop probing it here.
* ``POST /api/v1/trace/campaign/targets`` ``{"campaign", "add"?, "remove"?, "deny"?}``:
  change the target list while the campaign runs.
* ``GET  /api/v1/trace/campaign/export?campaign=C&format=atlas|csv``: the deduplicated
  records as RIPE Atlas traceroute results (``data`` is the list; a reply answered by
  an ICMP destination unreachable has the Atlas ``err``: N, H, A, P, p, h or the code)
  or CSV (``data`` is the text; ``err`` is its last column).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from twisted.internet import defer

from dnaagent.control.api import ApiError, JsonApi
from dnaagent.dts.chunks import check_campaign_id
from dnaagent.dts.plane import CampaignError

if TYPE_CHECKING:
    from dnaagent.dts.service import CampaignService
    from dnaagent.service import AgentService

#: Most targets in one request (the body is at most 64 KiB anyway).
MAX_TARGETS = 5000


def _service(agent: AgentService) -> CampaignService:
    service = getattr(agent, "dts", None)
    if service is None:
        raise ApiError(404, "trace campaigns are off ([dts] enabled = false, or no overlay)")
    return service


def _campaign(value: Any) -> str:
    try:
        return check_campaign_id(value)
    except ValueError as e:
        raise ApiError(400, str(e)) from None


def _targets(value: Any, what: str) -> list[str]:
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(t, str) for t in value):
        raise ApiError(400, f"{what} must be a list of IP addresses")
    if len(value) > MAX_TARGETS:
        raise ApiError(400, f"at most {MAX_TARGETS} targets per request")
    out = []
    for t in value:
        try:
            out.append(str(ipaddress.ip_address(t.strip())))
        except ValueError:
            raise ApiError(400, f"{t!r} in {what} is not an IP address") from None
    return out


def _body(body: Any, required: set[str], optional: set[str]) -> dict[str, Any]:
    if not isinstance(body, dict) or not required <= set(body) <= required | optional:
        fields = ", ".join(sorted(required)) + (
            f" (optional: {', '.join(sorted(optional))})" if optional else ""
        )
        raise ApiError(400, f"body must be a JSON object with {fields}")
    return body


def _int(body: Mapping[str, Any], name: str, lo: float, hi: float) -> Any:
    value = body.get(name)
    if value is None:
        return None
    if not isinstance(value, int | float) or isinstance(value, bool) or not lo <= value <= hi:
        raise ApiError(400, f"{name} must be a number between {lo:g} and {hi:g}")
    return value


async def _guard(coro: Any) -> Any:
    try:
        return await coro
    except CampaignError as e:
        message = str(e)
        status = 404 if "not found" in message else 409 if "already exists" in message else 400
        raise ApiError(status, message) from None
    except ApiError:
        raise
    except Exception as e:  # noqa: BLE001 (overlay errors: not joined, timeouts)
        raise ApiError(502, f"the overlay DHT did not answer: {e}") from None


def install_trace_routes(api: JsonApi, agent: AgentService) -> None:
    """Serve the trace campaign routes of ``agent`` on ``api``."""

    def local(args: Mapping[str, str], body: Any) -> Any:
        return _service(agent).local()

    async def create(body: Any) -> Any:
        service = _service(agent)
        b = _body(
            body,
            {"campaign", "targets"},
            {"chunk_size", "policy", "lease_seconds", "max_holders", "join"},
        )
        campaign = _campaign(b["campaign"])
        targets = _targets(b["targets"], "targets")
        if not targets:
            raise ApiError(400, "a campaign needs at least one target")
        policy = b.get("policy")
        if policy is not None and policy not in ("any", "each"):
            raise ApiError(400, "policy must be any or each")
        chunk_size = _int(b, "chunk_size", 1, 40)
        out = await _guard(
            service.create(
                campaign,
                targets,
                chunk_size=None if chunk_size is None else int(chunk_size),
                policy=policy,
                lease_seconds=_int(b, "lease_seconds", 2, 86400),
                max_holders=_int(b, "max_holders", 1, 1000),
            )
        )
        if b.get("join"):
            out["joined"] = await _guard(service.join(campaign))
        return out

    async def status(args: Mapping[str, str]) -> Any:
        service = _service(agent)
        return await _guard(service.status(_campaign(args.get("campaign", ""))))

    async def join(body: Any) -> Any:
        service = _service(agent)
        b = _body(body, {"campaign"}, set())
        return await _guard(service.join(_campaign(b["campaign"])))

    def leave(args: Mapping[str, str], body: Any) -> Any:
        service = _service(agent)
        b = _body(body, {"campaign"}, set())
        campaign = _campaign(b["campaign"])
        if not service.leave(campaign):
            raise ApiError(404, f"campaign {campaign!r} is not joined on this agent")
        return {"campaign": campaign, "left": True}

    async def targets(body: Any) -> Any:
        service = _service(agent)
        b = _body(body, {"campaign"}, {"add", "remove", "deny"})
        campaign = _campaign(b["campaign"])
        add = _targets(b.get("add"), "add")
        remove = _targets(b.get("remove"), "remove")
        deny = _targets(b.get("deny"), "deny")
        if not (add or remove or deny):
            raise ApiError(400, "give targets to add, remove or deny")
        out: dict[str, Any] = {"campaign": campaign}
        if deny:
            out.update(await _guard(service.deny_targets(campaign, deny)))
        if remove:
            out.update(await _guard(service.remove(campaign, remove)))
        if add:
            out.update(await _guard(service.add(campaign, add)))
        return out

    async def export(args: Mapping[str, str]) -> Any:
        service = _service(agent)
        fmt = args.get("format", "atlas") or "atlas"
        if fmt not in ("atlas", "csv"):
            raise ApiError(400, "format must be atlas or csv")
        return await _guard(service.export(_campaign(args.get("campaign", "")), fmt))

    api.route("GET", "/api/v1/trace/campaigns", local)
    api.route("POST", "/api/v1/trace/campaigns", lambda a, b: defer.ensureDeferred(create(b)))
    api.route("GET", "/api/v1/trace/campaign", lambda a, b: defer.ensureDeferred(status(a)))
    api.route("POST", "/api/v1/trace/campaign/join", lambda a, b: defer.ensureDeferred(join(b)))
    api.route("POST", "/api/v1/trace/campaign/leave", leave)
    api.route(
        "POST", "/api/v1/trace/campaign/targets", lambda a, b: defer.ensureDeferred(targets(b))
    )
    api.route("GET", "/api/v1/trace/campaign/export", lambda a, b: defer.ensureDeferred(export(a)))


__all__ = ["install_trace_routes"]
