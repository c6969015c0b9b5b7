"""The web dashboard and ``/metrics`` beside the JSON API, on the control listener.

:func:`control_root` makes the resource the control site serves:

* ``GET /`` and ``GET /ui/FILE``: the dashboard, static files shipped in
  ``dnaagent/control/web/`` (HTML, CSS, plain JavaScript drawing its charts
  in SVG; nothing is fetched from anywhere but this listener). Every answer
  carries ``Content-Security-Policy: default-src 'self'`` and
  ``X-Content-Type-Options: nosniff``.
* ``GET /metrics``: OpenMetrics / Prometheus text (:mod:`dnaagent.control.metrics`).
* everything else: the JSON API, unchanged.

:func:`install_dashboard_routes` adds the read-only JSON routes the
dashboard needs beyond the core ones:

* ``GET /api/v1/dashboard``: the served routes and which optional
  components run, so that the dashboard asks only for what is there.
* ``GET /api/v1/notifications`` ``?limit=`` targets with their counters, the
  pending count and the newest deliveries (pending, sent, acked, dropped).
"""

from __future__ import annotations

from collections.abc import Mapping
from importlib import resources
from typing import TYPE_CHECKING, Any

from twisted.web import resource, server

from dnaagent.control.api import ApiError, JsonApi, arg_int
from dnaagent.control.metrics import MetricsResource, make_registry
from dnaagent.snmp.notify import varbinds as vb
from dnaagent.snmp.tree import Kind

if TYPE_CHECKING:
    from dnaagent.service import AgentService

WEB_PACKAGE = "dnaagent.control"
WEB_DIR = "web"

CONTENT_TYPES = {
    ".html": b"text/html; charset=utf-8",
    ".css": b"text/css; charset=utf-8",
    ".js": b"text/javascript; charset=utf-8",
    ".svg": b"image/svg+xml",
    ".png": b"image/png",
}

# Only this listener, no inline script or style, no framing, no plugins.
CSP = (
    b"default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; "
    b"connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'none'; "
    b"frame-ancestors 'none'"
)

SECURITY_HEADERS = {
    b"content-security-policy": CSP,
    b"x-content-type-options": b"nosniff",
    b"x-frame-options": b"DENY",
    b"referrer-policy": b"no-referrer",
    b"cache-control": b"no-cache",
}

# Varbinds of a notification shown by the dashboard: OID -> field name.
NOTIFY_FIELDS = {
    vb.NOTIFY_TEST: "test",
    vb.NOTIFY_MESSAGE: "message",
    vb.NOTIFY_TARGET: "target_host",
    vb.NOTIFY_FAULT_LOCATION: "fault_location",
}


def load_web_files() -> dict[str, tuple[bytes, bytes]]:
    """The dashboard's files: name -> (content type, bytes), read once."""
    files: dict[str, tuple[bytes, bytes]] = {}
    root = resources.files(WEB_PACKAGE).joinpath(WEB_DIR)
    for entry in root.iterdir():
        name = entry.name
        suffix = name[name.rfind(".") :] if "." in name else ""
        if entry.is_file() and suffix in CONTENT_TYPES:
            files[name] = (CONTENT_TYPES[suffix], entry.read_bytes())
    return files


def _security_headers(request: server.Request) -> None:
    for name, value in SECURITY_HEADERS.items():
        request.setHeader(name, value)


def method_not_allowed(request: server.Request) -> bytes:
    """A plain-text 405 for anything but GET and HEAD."""
    request.setResponseCode(405)
    request.setHeader(b"allow", b"GET, HEAD")
    request.setHeader(b"content-type", b"text/plain; charset=utf-8")
    request.setHeader(b"x-content-type-options", b"nosniff")
    return b"only GET and HEAD are allowed here\n"


class StaticFiles(resource.Resource):
    """Serves a fixed set of in-memory files by name; nothing else is reachable.

    ``default`` is served for an empty name (``/`` and ``/ui/``).
    """

    isLeaf = True

    def __init__(self, files: Mapping[str, tuple[bytes, bytes]], default: str) -> None:
        super().__init__()
        self.files = dict(files)
        self.default = default

    def render(self, request: server.Request) -> bytes:
        """GET and HEAD only."""
        if request.method not in (b"GET", b"HEAD"):
            return method_not_allowed(request)
        return super().render(request)  # type: ignore[no-any-return]

    def render_GET(self, request: server.Request) -> bytes:  # noqa: N802 (Twisted's name)
        """The named file with the dashboard's security headers, or 404."""
        parts = [p for p in request.postpath or [] if p]
        name = parts[0].decode("utf-8", "replace") if len(parts) == 1 else ""
        if not parts:
            name = self.default
        _security_headers(request)
        found = self.files.get(name)
        if found is None:
            request.setResponseCode(404)
            request.setHeader(b"content-type", b"text/plain; charset=utf-8")
            return b"not found\n"
        content_type, body = found
        request.setHeader(b"content-type", content_type)
        return body

    def render_HEAD(self, request: server.Request) -> bytes:  # noqa: N802
        """Same headers as GET; Twisted drops the body."""
        return self.render_GET(request)


class ControlRoot(resource.Resource):
    """Routes the first path segment: dashboard, ``/metrics`` or the JSON API."""

    def __init__(self, api: JsonApi, ui: resource.Resource, metrics: resource.Resource) -> None:
        super().__init__()
        self.api = api
        self.ui = ui
        self.metrics = metrics

    def getChildWithDefault(  # noqa: N802 (Twisted's name)
        self, path: bytes, request: server.Request
    ) -> resource.Resource:
        """``""`` and ``ui``: the dashboard; ``metrics``; anything else: the API."""
        if path == b"" and not request.postpath:
            return self.ui
        if path == b"ui":
            return self.ui
        if path == b"metrics" and not [p for p in request.postpath or [] if p]:
            return self.metrics
        # The JSON API is a leaf that reads the whole request path itself.
        return self.api


def control_root(api: JsonApi, agent: AgentService) -> ControlRoot:
    """The resource of the control listener: dashboard, metrics and ``api``."""
    ui = StaticFiles(load_web_files(), "index.html")
    return ControlRoot(api, ui, MetricsResource(make_registry(agent)))


def _varbind_text(value: Any) -> str:
    if value.kind is Kind.OCTETS:
        return bytes(value.value).decode("utf-8", "replace")
    return str(value.value)


# Attributes of the agent that hold an optional component (None when off).
COMPONENTS = ("overlay", "scheduler", "notifications", "snmp", "agentx", "xbac", "dts")


def install_dashboard_routes(api: JsonApi, agent: AgentService) -> None:
    """Serve the dashboard's read-only JSON routes of ``agent`` on ``api``."""

    def dashboard(args: Mapping[str, str], body: Any) -> Any:
        return {
            "routes": api.routes(),
            "components": {name: getattr(agent, name, None) is not None for name in COMPONENTS},
        }

    def notifications(args: Mapping[str, str], body: Any) -> Any:
        service = agent.notifications
        if service is None:
            raise ApiError(503, "the notification service is not running")
        limit = arg_int(args, "limit", 50, 1, 1000)
        deliveries = service.queue.deliveries()[-limit:]
        recent = []
        for d in reversed(deliveries):
            fields = {
                NOTIFY_FIELDS[oid]: _varbind_text(value)
                for oid, value in d.varbinds
                if oid in NOTIFY_FIELDS
            }
            recent.append(
                {
                    "id": d.notification_id,
                    "kind": d.kind,
                    "target": d.target,
                    "mode": d.mode,
                    "state": d.state,
                    "attempts": d.attempts,
                    "created": d.created,
                    "next_attempt": d.next_attempt if d.state == "pending" else None,
                    **fields,
                }
            )
        status = service.status()
        return {
            "targets": status["targets"],
            "pending": status["pending"],
            "next_attempt": status["next_attempt"],
            "events_seen": status["events_seen"],
            "events_ignored": status["events_ignored"],
            "recent": recent,
        }

    api.route("GET", "/api/v1/dashboard", dashboard)
    api.route("GET", "/api/v1/notifications", notifications)
