"""Control API routes of the RTT prediction service (XBAC, thesis Appendix B).

    GET  /api/v1/xbac                  role, group, counts, measurement sources
    GET  /api/v1/xbac/recent           the recent prediction answers
    POST /api/v1/xbac/connect          {"address": "HOST[:PORT]"} -> join through that agent
    POST /api/v1/xbac/measurements     {"host", "rtts_ms": [..], "interval_s"?} -> kept
    POST /api/v1/xbac/measure          {"host"} -> one active measurement, recorded
    POST /api/v1/xbac/predict/rtt      {"host"} -> value, interval, basis (or why not)
    POST /api/v1/xbac/predict          {"metric": "rtt", "target": HOST}
    POST /api/v1/xbac/quality          {"host", "predicted_ms", "measured_ms"}

Hosts are IPv4 or IPv6 address literals; RTTs are milliseconds. Every body is
checked for shape and range; a bad one is a 400 with a sentence (the service's
``XbacInputError`` is a ``DnaAgentError``, which the API answers with 400). An unanswerable
prediction is not an error: it comes back at once with ``"predicted": false``
and the reason.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from dnaagent.control.api import ApiError, JsonApi

if TYPE_CHECKING:
    from dnaagent.service import AgentService


def _body(body: Any, fields: dict[str, bool], example: str) -> dict[str, Any]:
    """A JSON object with only ``fields`` (name -> required)."""
    if not isinstance(body, dict):
        raise ApiError(400, f"body must be a JSON object like {example}")
    unknown = set(body) - set(fields)
    if unknown:
        raise ApiError(400, f"unknown field(s) in body: {', '.join(sorted(unknown))}")
    for name, required in fields.items():
        if required and name not in body:
            raise ApiError(400, f"field {name!r} is missing (example: {example})")
    return body


def install_xbac_routes(api: JsonApi, agent: AgentService) -> None:
    """Serve the prediction routes of ``agent`` (503 while the service is off)."""

    def service() -> Any:
        xbac = getattr(agent, "xbac", None)
        if xbac is None:
            raise ApiError(503, "the prediction service is off ([xbac] enabled = false)")
        return xbac

    def status(args: Mapping[str, str], body: Any) -> Any:
        return service().status()

    def recent(args: Mapping[str, str], body: Any) -> Any:
        return {"predictions": [{"index": a.index, **a.to_json()} for a in service().recent]}

    def connect(args: Mapping[str, str], body: Any) -> Any:
        b = _body(body, {"address": True}, '{"address": "127.0.0.1:4001"}')
        if not isinstance(b["address"], str):
            raise ApiError(400, "field 'address' must be HOST or HOST:PORT")
        return service().connect(b["address"])

    def measurements(args: Mapping[str, str], body: Any) -> Any:
        b = _body(
            body,
            {"host": True, "rtts_ms": True, "interval_s": False},
            '{"host": "192.0.2.7", "rtts_ms": [12.5, 13.0]}',
        )
        rtts = b["rtts_ms"]
        if isinstance(rtts, int | float) and not isinstance(rtts, bool):
            rtts = [rtts]
        kept = service().add_measurement(b["host"], rtts, b.get("interval_s", 1.0))
        return {"host": b["host"], "given": len(rtts), "kept": kept}

    def measure(args: Mapping[str, str], body: Any) -> Any:
        b = _body(body, {"host": True}, '{"host": "192.0.2.7"}')
        return service().measure_rtt(b["host"])

    def predict_rtt(args: Mapping[str, str], body: Any) -> Any:
        b = _body(body, {"host": True}, '{"host": "192.0.2.7"}')
        return service().predict_rtt(b["host"])

    def predict(args: Mapping[str, str], body: Any) -> Any:
        return service().predict(body)

    def quality(args: Mapping[str, str], body: Any) -> Any:
        b = _body(
            body,
            {"host": True, "predicted_ms": True, "measured_ms": True},
            '{"host": "192.0.2.7", "predicted_ms": 12.0, "measured_ms": 14.5}',
        )
        return service().report_prediction_quality(b["host"], b["predicted_ms"], b["measured_ms"])

    api.route("GET", "/api/v1/xbac", status)
    api.route("GET", "/api/v1/xbac/recent", recent)
    api.route("POST", "/api/v1/xbac/connect", connect)
    api.route("POST", "/api/v1/xbac/measurements", measurements)
    api.route("POST", "/api/v1/xbac/measure", measure)
    api.route("POST", "/api/v1/xbac/predict/rtt", predict_rtt)
    api.route("POST", "/api/v1/xbac/predict", predict)
    api.route("POST", "/api/v1/xbac/quality", quality)
