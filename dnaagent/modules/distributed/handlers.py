"""What this agent does for its peers: the ``dna.*`` application requests.

:class:`PeerHandlers` registers one overlay handler per catalogue kind
(``dna.ping``, ``dna.traceroute``, ``dna.dns``, ``dna.portcheck``,
``dna.throughput``, ``dna.echo``, ``dna.relay``). Every request passes the
:class:`~dnaagent.guard.Guard` first; a refused request is answered with
``{"refused": REASON, "error": SENTENCE}`` (:func:`refusal_answer`; the
requester turns it back into :class:`~dnaagent.guard.Refused` with
:func:`raise_if_refused`). Answers are plain msgpack maps of bounded size.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from twisted.internet import defer
from twisted.logger import Logger

from dnaagent.guard import Guard, Refused, Request
from dnaagent.measure.dns import DnsClientAPI
from dnaagent.measure.ping import PingerAPI
from dnaagent.measure.traceroute import TracerAPI
from dnaagent.modules.distributed.probes import ThroughputSender, check_port

#: Handler names on the overlay, by catalogue kind.
HANDLERS = {
    kind: f"dna.{kind}"
    for kind in ("ping", "traceroute", "dns", "portcheck", "throughput", "echo", "relay", "run")
}
MAX_ANSWERS = 32
PortChecker = Callable[[Any, str, str, int, float], "defer.Deferred[str]"]
MAX_ANSWER_TEXT = 255
DNS_TIMEOUT = 2.0


def refusal_answer(refusal: Refused) -> dict[str, str]:
    """The answer a refused request gets: ``{"refused": REASON, "error": SENTENCE}``."""
    return {"refused": refusal.reason, "error": refusal.text}


def raise_if_refused(answer: Any) -> Any:
    """Turn a refusal answer back into :class:`Refused`; other answers pass."""
    if isinstance(answer, dict) and isinstance(answer.get("refused"), str):
        raise Refused(answer["refused"], str(answer.get("error", "")))
    return answer


async def ping_many(pinger: PingerAPI, target: str, count: int, timeout: float) -> dict[str, Any]:
    """Ping ``target`` up to ``count`` times, stopping at the first reply."""
    rtts: list[float] = []
    error: str | None = None
    sent = 0
    for _ in range(count):
        sent += 1
        result = await pinger.ping(target, timeout)
        if result.reply:
            rtts.append(round(result.rtt_ms or 0.0, 3))
            break
        error = result.error
    return {
        "target": target,
        "sent": sent,
        "received": len(rtts),
        "rtt_ms": rtts,
        "error": None if rtts else error or "no reply",
    }


class PeerHandlers:
    """Serves peers' requests through the guard with the measurement primitives."""

    log = Logger()

    def __init__(
        self,
        reactor: Any,
        guard: Guard,
        pinger: PingerAPI,
        tracer: TracerAPI,
        dns: DnsClientAPI,
        resolvers: Callable[[], list[str]],
        *,
        port_checker: PortChecker = check_port,
    ) -> None:
        self.reactor = reactor
        self.guard = guard
        self.pinger = pinger
        self.tracer = tracer
        self.dns = dns
        self.resolvers = resolvers
        self.port_checker = port_checker
        #: Runs a signed module's test for a peer (``run`` requests); None: refused.
        self.module_runner: Callable[[Request, Any], Any] | None = None
        self.node: Any = None

    def install(self, node: Any) -> None:
        """Register every handler on the overlay ``node``."""
        self.node = node
        for kind, name in HANDLERS.items():
            node.register_handler(name, self._handler(kind))

    def uninstall(self) -> None:
        """Stop answering peers."""
        if self.node is not None:
            for name in HANDLERS.values():
                self.node.unregister_handler(name)
            self.node = None

    def _handler(self, kind: str) -> Callable[[Any, Any], Any]:
        serve = getattr(self, f"_{kind}")

        def handle(body: Any, sender: Any) -> Any:
            try:
                request = self.guard.admit(kind, body, sender.node_id, sender.address[0])
            except Refused as refusal:
                # An answer, not a handler failure: refusals are expected under
                # abuse and must not fill the log with tracebacks.
                return refusal_answer(refusal)
            d = defer.ensureDeferred(serve(request, sender))

            def release(result: Any) -> Any:
                self.guard.release(request)
                return result

            def refused(failure: Any) -> Any:
                failure.trap(Refused)
                return refusal_answer(failure.value)

            return d.addBoth(release).addErrback(refused)

        return handle

    async def _ping(self, request: Request, sender: Any) -> dict[str, Any]:
        p = request.params
        return await ping_many(self.pinger, request.target, p["count"], p["timeout"])

    async def _traceroute(self, request: Request, sender: Any) -> dict[str, Any]:
        p = request.params
        result = await self.tracer.trace(request.target, p["max_hops"], p["timeout"])
        return {
            "target": result.target,
            "hops": [h.to_json() for h in result.hops],
            "reached": result.reached,
            "error": result.error,
        }

    async def _dns(self, request: Request, sender: Any) -> dict[str, Any]:
        name, rdtype = request.params["name"], request.params["rdtype"]
        servers = self.resolvers()[:3]
        last: dict[str, Any] = {
            "server": None,
            "rcode": None,
            "answers": [],
            "error": "no resolver",
        }
        for server in servers:
            result = await self.dns.query(server, name, rdtype, DNS_TIMEOUT)
            last = {
                "server": server,
                "rcode": result.rcode,
                "answers": [a[:MAX_ANSWER_TEXT] for a in result.answers[:MAX_ANSWERS]],
                "error": result.error,
            }
            if result.answered:
                break
        last["name"], last["rdtype"] = name, rdtype
        return last

    async def _portcheck(self, request: Request, sender: Any) -> dict[str, Any]:
        timeout = request.params["timeout"]
        specs = [spec.split("/") for spec in request.params["ports"]]
        states = await defer.gatherResults(
            [
                self.port_checker(self.reactor, request.target, proto, int(port), timeout)
                for proto, port in specs
            ]
        )
        return {
            "target": request.target,
            "ports": dict(zip(request.params["ports"], states, strict=True)),
        }

    async def _throughput(self, request: Request, sender: Any) -> dict[str, Any]:
        p = request.params
        stream = ThroughputSender(
            self.reactor, request.target, p["port"], p["seconds"], p["rate_mbit"]
        )
        result = await stream.run()
        result["rate_mbit"] = p["rate_mbit"]
        return result

    async def _echo(self, request: Request, sender: Any) -> dict[str, Any]:
        node_id = getattr(self.node, "node_id", b"")
        return {"data": request.params["data"], "node": node_id.hex()}

    async def _run(self, request: Request, sender: Any) -> dict[str, Any]:
        if self.module_runner is None:
            raise Refused("unknown_kind", "this agent runs no test modules for peers")
        result: dict[str, Any] = await self.module_runner(request, sender)
        return result

    async def _relay(self, request: Request, sender: Any) -> dict[str, Any]:
        p = request.params
        if self.node is None:
            raise RuntimeError("no overlay")
        answer = await self.node.request(p["to"], HANDLERS[p["kind"]], p["body"])
        return {"via": self.node.node_id.hex(), "answer": answer}
