"""The local control API: JSON over HTTP on a loopback address.

``dnactl`` and the web dashboard use it. Components add their own routes with
:meth:`JsonApi.route`; a handler gets the query arguments and the decoded
JSON body and returns a JSON-ready value (or a Deferred of one), or raises
:class:`ApiError` for a clear client error. Every request is checked for
size, content type and shape before a handler sees it.

Web pages open in a browser on the same host must not be able to drive the
agent: a POST or PUT must say ``Content-Type: application/json`` (which a
cross-site page cannot send without a CORS preflight this API never grants),
the ``Host`` header must be an IP literal or ``localhost`` (no DNS rebinding),
and an ``Origin`` header, when present, must name such a host too.

Routes of the agent core (see ``docs/control-api.md``)::

    GET  /api/v1/status                agent state, schedule, result summary
    GET  /api/v1/modules               modules, their tests and dependencies
    POST /api/v1/run                   {"module", "tests"?, "params"?} -> results
    GET  /api/v1/results               ?since=&module=&test=&limit= history
    GET  /api/v1/results/latest        ?module= latest result of every test
"""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Callable, Mapping
from typing import Any

from twisted.internet import defer
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web import resource, server

from dnaagent.errors import DnaAgentError
from dnaagent.mediator.interface import InvalidParameters

MAX_BODY = 64 * 1024

Handler = Callable[[Mapping[str, str], Any], Any]


def _host_part(value: str) -> str:
    """The host of a ``Host`` header or URL authority, without port and brackets."""
    value = value.strip()
    if value.startswith("["):
        return value[1 : value.find("]")] if "]" in value else value[1:]
    if value.count(":") == 1:
        return value.split(":", 1)[0]
    return value


def local_host(value: str) -> bool:
    """Whether a ``Host``/``Origin`` host names this machine without a DNS name.

    ``localhost`` and IP literals pass; any other name could be re-bound to
    127.0.0.1 by a hostile DNS server and is refused.
    """
    host = _host_part(value).rstrip(".").lower()
    if host == "localhost":
        return True
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


class ApiError(Exception):
    """A client error: its HTTP status and a sentence for the operator."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class JsonApi(resource.Resource):
    """Dispatches ``METHOD /path`` to registered handlers; speaks only JSON."""

    isLeaf = True
    log = Logger()

    def __init__(self) -> None:
        super().__init__()
        self._routes: dict[tuple[str, str], Handler] = {}
        self.requests = 0
        self.errors = 0

    def route(self, method: str, path: str, handler: Handler) -> None:
        """Serve ``method path`` with ``handler(args, body)``."""
        key = (method.upper(), path.rstrip("/"))
        if key in self._routes:
            raise ValueError(f"route {method} {path} is already served")
        self._routes[key] = handler

    def routes(self) -> list[str]:
        """Every served route as ``METHOD /path``, sorted."""
        return sorted(f"{m} {p}" for m, p in self._routes)

    def render(self, request: server.Request) -> bytes | int:  # type: ignore[override]
        """Answer one HTTP request (asynchronously when the handler defers)."""
        self.requests += 1
        d = defer.maybeDeferred(self._dispatch, request)
        d.addCallbacks(
            lambda value: self._send(request, 200, value),
            lambda failure: self._fail(request, failure),
        )
        return server.NOT_DONE_YET

    def _dispatch(self, request: server.Request) -> Any:
        method = (request.method or b"GET").decode("ascii", "replace").upper()
        path = (request.path or b"/").decode("utf-8", "replace").rstrip("/") or "/"
        handler = self._routes.get((method, path))
        if handler is None:
            if any(p == path for _, p in self._routes):
                raise ApiError(405, f"{method} is not allowed on {path}")
            raise ApiError(404, f"no such endpoint: {path} (see GET /api/v1 for the list)")
        self._check_origin(request, method)
        args: dict[str, str] = {}
        for key, values in (request.args or {}).items():
            name = key.decode("utf-8", "replace")
            args[name] = values[-1].decode("utf-8", "replace") if values else ""
        body: Any = None
        if method in ("POST", "PUT"):
            raw = request.content.read(MAX_BODY + 1) if request.content else b""
            if len(raw) > MAX_BODY:
                raise ApiError(413, f"request body larger than {MAX_BODY} bytes")
            if raw.strip():
                try:
                    body = json.loads(raw)
                except (ValueError, UnicodeDecodeError) as e:
                    raise ApiError(400, f"request body is not valid JSON: {e}") from None
        return handler(args, body)

    def _check_origin(self, request: server.Request, method: str) -> None:
        """Refuse what a web page elsewhere could make a browser send (see the module doc)."""

        def header(name: bytes) -> str | None:
            value = request.getHeader(name)
            if isinstance(value, bytes):
                return value.decode("latin-1")
            return value

        host = header(b"host")
        if host is not None and not local_host(host):
            raise ApiError(403, f"Host {host!r} is not this machine's address or localhost")
        origin = header(b"origin")
        if origin is not None and origin != "null":
            authority = origin.split("://", 1)[-1].split("/", 1)[0]
            if not local_host(authority):
                raise ApiError(403, f"requests from pages of {origin!r} are not accepted")
        elif origin == "null":
            raise ApiError(403, "requests from opaque origins are not accepted")
        if method in ("POST", "PUT"):
            ctype = (header(b"content-type") or "").split(";", 1)[0].strip().lower()
            if ctype != "application/json":
                raise ApiError(415, f"{method} needs Content-Type: application/json")

    def _send(self, request: server.Request, status: int, value: Any) -> None:
        try:
            payload = json.dumps(value, indent=None, separators=(",", ":")).encode() + b"\n"
        except (TypeError, ValueError) as e:
            self.log.failure("unserializable API answer", Failure(e))
            status, payload = 500, json.dumps({"error": "internal error"}).encode() + b"\n"
        if request.finished or getattr(request, "_disconnected", False):
            return
        request.setResponseCode(status)
        request.setHeader(b"content-type", b"application/json")
        request.setHeader(b"cache-control", b"no-store")
        request.write(payload)
        request.finish()

    def _fail(self, request: server.Request, failure: Failure) -> None:
        self.errors += 1
        if failure.check(ApiError):
            err: ApiError = failure.value  # type: ignore[assignment]
            self._send(request, err.status, {"error": err.message})
            return
        if failure.check(DnaAgentError, InvalidParameters):
            # Typed errors of the agent (unknown module or test, bad
            # parameters) are client errors written for the operator.
            self._send(request, 400, {"error": str(failure.value)})
            return
        self.log.failure("control API handler failed", failure)
        self._send(request, 500, {"error": f"internal error: {failure.getErrorMessage()}"})


def make_site(api: JsonApi) -> server.Site:
    """A web site serving ``api`` with request logging kept quiet."""
    site = server.Site(api)
    site.displayTracebacks = False
    site.noisy = False
    site.log = lambda request: None  # type: ignore[method-assign]
    return site


def arg_float(args: Mapping[str, str], name: str) -> float | None:
    """A query argument as a number, or None when absent."""
    if name not in args or args[name] == "":
        return None
    try:
        return float(args[name])
    except ValueError:
        raise ApiError(400, f"query argument {name!r} must be a number") from None


def arg_int(args: Mapping[str, str], name: str, default: int, lo: int, hi: int) -> int:
    """A query argument as a whole number within bounds."""
    if name not in args or args[name] == "":
        return default
    try:
        value = int(args[name])
    except ValueError:
        raise ApiError(400, f"query argument {name!r} must be a whole number") from None
    if not lo <= value <= hi:
        raise ApiError(400, f"query argument {name!r} must be between {lo} and {hi}")
    return value
