"""The distributed test module: tests run together with other agents (seed 000 §2.3).

``DistributedPing``
    ping a host from here and from several peers; diagnose "reachable",
    "host down", "path problem" (with the suspected broken link from
    traceroutes) or "local problem".
``PortCheck``
    a random peer checks from outside that the services this host declares
    (``[distributed] services``) are reachable; only errors notify.
``DNSProxy``
    when this host's resolvers fail, resolve through a peer's resolver and
    serve the host meanwhile from a DNS proxy on loopback.
``Relay``
    reach a peer directly or, when the direct path is broken, through a
    third agent that reaches both.
``Throughput``
    bulk TCP from a peer to this host for a bounded time and rate; average
    and per-second throughput.

Partners are random peers of the routing table, or the ones named by the
``peers`` parameter (node IDs as 40 hex digits, or addresses).
"""

from __future__ import annotations

import ipaddress
import random
import socket
from collections.abc import Callable, Coroutine, Mapping
from typing import Any

from twisted.internet import defer, threads
from twisted.logger import Logger, LogLevel
from zope.interface import implementer

from dnaagent.errors import DnaAgentError
from dnaagent.guard import Guard
from dnaagent.guard.catalogue import (
    PING_MAX_COUNT,
    THROUGHPUT_MAX_SECONDS,
    Refused,
    Request,
    dns_name,
    port_spec,
)
from dnaagent.measure.dns import DnsClientAPI
from dnaagent.measure.ping import PingerAPI
from dnaagent.measure.traceroute import TracerAPI
from dnaagent.mediator.interface import (
    InvalidParameters,
    ITestModule,
    ITestRun,
    Outcome,
    TestSpec,
)
from dnaagent.modules.distributed.diagnosis import PeerView, diagnose_ping
from dnaagent.modules.distributed.dnsproxy import DnsProxy
from dnaagent.modules.distributed.handlers import (
    HANDLERS,
    PeerHandlers,
    ping_many,
    raise_if_refused,
)
from dnaagent.modules.distributed.probes import ThroughputReceiver
from dnaagent.modules.distributed.settings import DistributedSection
from dnaagent.modules.sysfiles import parse_resolv_conf
from dnaagent.overlay.section import parse_address
from dnaagent.trust.loader import ModuleStore, fetch_package, load_signed_modules, serve_packages
from dnaagent.trust.store import UntrustedPackage
from dnaagent.wire import node_id_for_key

TESTS: tuple[TestSpec, ...] = (
    TestSpec(
        "PortCheck",
        "a peer checks from outside that the services this host declares are reachable",
        timeout=30.0,
    ),
    TestSpec(
        "DNSProxy",
        "the resolvers answer; if not, a peer's resolver answers for them through a proxy",
        timeout=30.0,
    ),
    TestSpec(
        "DistributedPing",
        "ping a host from here and from peers: host down, path problem or local problem",
        default=False,
        timeout=90.0,
    ),
    TestSpec(
        "Relay",
        "reach a peer directly, else through a third agent that reaches both",
        default=False,
        timeout=60.0,
    ),
    TestSpec(
        "Throughput",
        "bulk TCP from a peer for a bounded time and rate: average and per-second Mbit/s",
        default=False,
        timeout=float(THROUGHPUT_MAX_SECONDS + 30),
    ),
)

PARAMETERS = {
    "target": "DistributedPing: host to ping (IP address or name)",
    "peers": "partners: node IDs (40 hex), keys (64 hex) or ADDRESS[:PORT], comma-separated "
    "(default: random)",
    "count": "DistributedPing: how many peers to ask (default: [distributed] peers)",
    "ports": "PortCheck: tcp/PORT,udp/PORT to check (default: [distributed] services)",
    "name": "DNSProxy: name to look up (default: [distributed] dns_name)",
    "seconds": f"Throughput: duration, 1 to {THROUGHPUT_MAX_SECONDS} s (default 5)",
    "rate_mbit": "Throughput: sending rate ceiling in Mbit/s (default: the peer's ceiling)",
}

PING_SLACK = 3.0
MAX_MESSAGE = 512
_DEBUG = LogLevel.debug
TRACE_TIMEOUT = 25.0
DNS_TIMEOUT = 2.0

Partner = bytes | tuple[str, int]


def parse_partner(text: str) -> Partner:
    """A node ID (40 hex digits), a public key (64 hex digits) or an address.

    A key stands for the node whose ID derives from it. Raises InvalidParameters.
    """
    text = text.strip()
    if len(text) in (40, 64):
        try:
            raw = bytes.fromhex(text)
        except ValueError:
            pass
        else:
            return raw if len(raw) == 20 else node_id_for_key(raw)
    try:
        return parse_address(text)
    except ValueError as e:
        raise InvalidParameters(
            f"partner {text!r}: neither a 40-hex node ID nor an address ({e})"
        ) from None


def partner_text(partner: Partner) -> str:
    """How a partner is shown: a short node ID or host:port."""
    if isinstance(partner, bytes):
        return partner.hex()[:12]
    host, port = partner
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def remote_reason(failure: Any) -> str:
    """A short reason from a failed overlay request."""
    exc = getattr(failure, "value", failure)
    if isinstance(exc, Refused):
        return str(exc)
    text = getattr(exc, "text", None)
    return str(text or exc or type(exc).__name__)


@implementer(ITestModule)
class DistributedModule:
    """Tests with peers over the overlay; see the module docstring."""

    name = "distributed"
    description = "distributed tests with other agents: diagnosis, DNS proxy, relay, ports"
    tests = TESTS
    parameters = PARAMETERS

    log = Logger()

    def __init__(
        self,
        cfg: DistributedSection,
        reactor: Any,
        pinger: PingerAPI,
        tracer: TracerAPI,
        dns: DnsClientAPI,
        node: Callable[[], Any],
        *,
        rng: random.Random | None = None,
        read_file: Callable[[str], str] | None = None,
        resolve_name: Callable[[str], defer.Deferred[list[str]]] | None = None,
    ) -> None:
        self.cfg = cfg
        self.reactor = reactor
        self.pinger = pinger
        self.tracer = tracer
        self.dns = dns
        self.node = node
        self.rng = rng or random.Random()
        self.read_file = read_file or _read_text
        self.resolve_name = resolve_name or self._getaddrinfo
        self.proxy: DnsProxy | None = None
        self.guard = Guard(cfg.limits(), reactor)
        #: Signed module packages kept by the agent (None: no state directory).
        self.packages: ModuleStore | None = None
        #: The agent (mediator) that runs modules for peers (None: refused).
        self.agent: Any = None
        self.handlers = PeerHandlers(reactor, self.guard, pinger, tracer, dns, self.resolvers)
        self.handlers.module_runner = self.run_for_peer

    def attach(self, node: Any) -> None:
        """Serve the peers' requests (and the kept module packages) on the overlay ``node``."""
        self.handlers.install(node)
        if self.packages is not None:
            serve_packages(node, self.packages, self.reactor)

    async def run_for_peer(self, request: Request, sender: Any) -> dict[str, Any]:
        """Run one test of a signed module for a peer (the ``run`` request, seed 000 §2.4).

        A module this agent lacks is fetched from the requester and kept only
        when it verifies against this agent's trust store; built-in modules
        are not run for peers. Raises :class:`Refused`.
        """
        agent, store, node = self.agent, self.packages, self.node()
        mediator = getattr(agent, "mediator", None)
        if mediator is None or store is None or node is None:
            raise Refused("unknown_kind", "this agent runs no test modules for peers")
        name, test = request.params["module"], request.params["test"]
        if name in mediator.modules and name not in store.installed():
            raise Refused("bad_parameter", f"{name} is a built-in module, not run for peers")
        if name not in mediator.modules:
            try:
                await fetch_package(node, sender.node_id, name, store)
                module = store.make(name, self.reactor, agent)
                mediator.register(module)
            except UntrustedPackage as e:
                raise Refused("untrusted_module", e.text) from None
            except Exception as e:  # noqa: BLE001 (peer gone, import error: all refusals)
                self.log.failure("cannot get module {name} from the requester", name=name)
                raise Refused("untrusted_module", f"{name} could not be fetched: {e}") from None
        try:
            results = await mediator.run(
                name, [test], request.params["params"], origin=f"peer {sender.node_id.hex()[:12]}"
            )
        except (DnaAgentError, InvalidParameters) as e:
            raise Refused("bad_parameter", str(e)) from None
        return {
            "results": [
                {
                    "module": r.module,
                    "test": r.test,
                    "status": r.status.value,
                    "message": r.message[:MAX_MESSAGE],
                }
                for r in results[:8]
            ]
        }

    def signed_modules(self, agent: Any = None) -> list[Any]:
        """The test modules of the kept signed packages that verify (see dnaagent.trust)."""
        if self.packages is None:
            return []
        return load_signed_modules(self.packages, self.reactor, agent)

    def status(self) -> dict[str, Any]:
        """The guard's counters and the DNS proxy's, for the control API."""
        proxy = self.proxy
        packages = self.packages
        return {
            "trust": None
            if packages is None
            else {
                "keys": sorted(packages.trust.keys),
                "installed": packages.installed(),
                "counters": dict(packages.trust.counters),
            },
            "guard": self.guard.status(),
            "dns_proxy": None
            if proxy is None
            else {"port": proxy.port, "counters": dict(proxy.counters)},
        }

    def _getaddrinfo(self, name: str) -> defer.Deferred[list[str]]:
        def lookup() -> list[str]:
            infos = socket.getaddrinfo(name, None, type=socket.SOCK_DGRAM)
            return list(dict.fromkeys(str(info[4][0]) for info in infos))

        return threads.deferToThreadPool(self.reactor, self.reactor.getThreadPool(), lookup)

    def resolvers(self) -> list[str]:
        """The nameservers of the configured resolv.conf."""
        try:
            servers, _ = parse_resolv_conf(self.read_file(self.cfg.resolv_conf))
        except OSError:
            self.log.failure("cannot read {path}", path=self.cfg.resolv_conf)
            return []
        return servers

    def open_run(self, params: Mapping[str, str]) -> DistributedRun:
        """Check the parameters and return a run sharing them."""
        unknown = sorted(set(params) - set(self.parameters))
        if unknown:
            raise InvalidParameters(
                f"unknown parameter {', '.join(unknown)} for module distributed; "
                f"it takes: {', '.join(self.parameters)}"
            )
        return DistributedRun(self, dict(params))

    def stop(self) -> None:
        """Stop the DNS proxy if it runs."""
        if self.proxy is not None:
            self.proxy.stop()
            self.proxy = None


def _read_text(path: str) -> str:
    with open(path, encoding="utf-8", errors="replace") as f:
        return f.read(65536)


def _int_param(params: Mapping[str, str], name: str, default: int, lo: int, hi: int) -> int:
    text = params.get(name, "").strip()
    if not text:
        return default
    try:
        value = int(text)
    except ValueError:
        raise InvalidParameters(f"{name} must be an integer, not {text!r}") from None
    if not lo <= value <= hi:
        raise InvalidParameters(f"{name} must be between {lo} and {hi}, not {value}")
    return value


@implementer(ITestRun)
class DistributedRun:
    """One run of distributed tests, sharing parameters and partners."""

    log = Logger()

    def __init__(self, module: DistributedModule, params: dict[str, str]) -> None:
        self.module = module
        self.cfg = module.cfg
        self.params = params
        self.partners = [parse_partner(p) for p in params.get("peers", "").split(",") if p.strip()]
        self.count = _int_param(params, "count", self.cfg.peers, 1, 16)
        self._tests: dict[str, Callable[[], Coroutine[Any, Any, Outcome]]] = {
            "DistributedPing": self.distributed_ping,
            "PortCheck": self.port_check,
            "DNSProxy": self.dns_proxy,
            "Relay": self.relay,
            "Throughput": self.throughput,
        }

    def run_test(self, name: str) -> Coroutine[Any, Any, Outcome]:
        """Start the test ``name``."""
        return self._tests[name]()

    # -- partners and requests ---------------------------------------------

    def _node(self) -> Any:
        return self.module.node()

    def choose(self, count: int, exclude: tuple[Partner, ...] = ()) -> list[Partner]:
        """The named partners, else up to ``count`` random peers of the routing table."""
        if self.partners:
            return [p for p in self.partners if p not in exclude][:count] or self.partners[:count]
        node = self._node()
        known = [bytes.fromhex(str(p["node_id"])) for p in node.peers()] if node else []
        known = [p for p in known if p not in exclude]
        return self.module.rng.sample(known, min(count, len(known)))

    async def ask(self, partner: Partner, kind: str, body: Any, timeout: float) -> Any:
        """Send a catalogue request to ``partner``; its answer or an exception."""
        node = self._node()
        return raise_if_refused(await node.request(partner, HANDLERS[kind], body, timeout=timeout))

    async def _try(self, partner: Partner, kind: str, body: Any, timeout: float) -> tuple[Any, str]:
        try:
            return await self.ask(partner, kind, body, timeout), ""
        except Exception as e:  # noqa: BLE001 (every failure is an answer here)
            self.log.failure(
                "{kind} request to {p} failed", kind=kind, p=partner_text(partner), level=_DEBUG
            )
            return None, remote_reason(e)

    def _no_overlay(self) -> Outcome | None:
        if self._node() is None:
            return Outcome.skipped("the overlay is off: distributed tests need peers")
        return None

    # -- DistributedPing -----------------------------------------------------

    async def _target(self) -> str:
        text = self.params.get("target", "").strip()
        if not text:
            raise InvalidParameters("DistributedPing needs target=HOST")
        try:
            return str(ipaddress.ip_address(text))
        except ValueError:
            pass
        addresses = await self.module.resolve_name(text)
        if not addresses:
            raise InvalidParameters(f"{text!r} does not resolve")
        return addresses[0]

    async def distributed_ping(self) -> Outcome:
        """DistributedPing: see the module docstring."""
        skip = self._no_overlay()
        if skip:
            return skip
        try:
            target = await self._target()
        except (InvalidParameters, OSError) as e:
            self.log.failure("no target for DistributedPing", level=_DEBUG)
            return Outcome.error(f"cannot ping: {e}")
        cfg = self.cfg
        count = min(cfg.ping_count, PING_MAX_COUNT)
        partners = self.choose(self.count)
        body = {"target": target, "count": count, "timeout": cfg.ping_timeout}
        timeout = count * cfg.ping_timeout + PING_SLACK
        local_d = defer.ensureDeferred(
            ping_many(self.module.pinger, target, count, cfg.ping_timeout)
        )
        asked = [defer.ensureDeferred(self._try(p, "ping", body, timeout)) for p in partners]
        local = await local_d
        answers = await defer.gatherResults(asked) if asked else []
        views = []
        for partner, (answer, error) in zip(partners, answers, strict=True):
            if answer is None:
                views.append(PeerView(partner_text(partner), None, error=error))
            else:
                rtts = answer.get("rtt_ms") or []
                views.append(
                    PeerView(
                        partner_text(partner),
                        bool(answer.get("received")),
                        rtts[0] if rtts else None,
                        answer.get("error"),
                    )
                )
        own_path = None
        if not local["received"] and any(v.reached for v in views):
            views, own_path, traces = await self._traces(target, partners, views)
        diagnosis = diagnose_ping(target, local, views, own_path)
        details = dict(diagnosis.evidence)
        details["verdict"] = diagnosis.verdict
        details["partners"] = [partner_text(p) for p in partners]
        if diagnosis.location:
            details["location"] = diagnosis.location
        return Outcome(diagnosis.status, diagnosis.message, details)

    async def _traces(
        self, target: str, partners: list[Partner], views: list[PeerView]
    ) -> tuple[list[PeerView], tuple[str | None, ...], int]:
        """Traceroutes from here and from the peers that reach the target."""
        hops = self.cfg.max_hops
        body = {"target": target, "max_hops": hops, "timeout": 1.0}
        own_d = self.module.tracer.trace(target, hops, 1.0)
        reaching = [
            (i, p) for i, (p, v) in enumerate(zip(partners, views, strict=True)) if v.reached
        ]
        asked = [
            defer.ensureDeferred(self._try(p, "traceroute", body, TRACE_TIMEOUT))
            for _, p in reaching
        ]
        own = await own_d
        answers = await defer.gatherResults(asked) if asked else []
        out = list(views)
        for (i, _), (answer, _error) in zip(reaching, answers, strict=True):
            if answer is None:
                continue
            path = tuple(
                h[1]
                if isinstance(h, list | tuple) and len(h) > 1 and isinstance(h[1], str)
                else None
                for h in (answer.get("hops") or [])[:32]
            )
            v = out[i]
            out[i] = PeerView(
                v.peer, v.reached, v.rtt_ms, v.error, path, bool(answer.get("reached"))
            )
        return out, tuple(own.addresses()), len(answers)

    # -- PortCheck -----------------------------------------------------------

    def _ports(self) -> list[str]:
        text = self.params.get("ports")
        specs = [p.strip() for p in text.split(",") if p.strip()] if text else self.cfg.services
        out = []
        for spec in specs:
            try:
                proto, port = port_spec(spec)
            except Refused as e:
                raise InvalidParameters(e.text) from None
            out.append(f"{proto}/{port}")
        return out

    async def port_check(self) -> Outcome:
        """PortCheck: see the module docstring."""
        try:
            ports = self._ports()
        except InvalidParameters as e:
            return Outcome.error(str(e))
        if not ports:
            return Outcome.skipped("no services declared ([distributed] services is empty)")
        skip = self._no_overlay()
        if skip:
            return skip
        tried: list[dict[str, str]] = []
        for partner in self.choose(max(self.count, 3)):
            answer, error = await self._try(partner, "portcheck", {"ports": ports}, 15.0)
            if answer is None:
                tried.append({"peer": partner_text(partner), "error": error})
                continue
            states = {str(k): str(v) for k, v in (answer.get("ports") or {}).items()}
            bad = {k: v for k, v in states.items() if v not in ("open", "open|filtered")}
            who = partner_text(partner)
            details = {"peer": who, "seen_as": answer.get("target"), "ports": states}
            if bad:
                shown = ", ".join(f"{k} {v}" for k, v in bad.items())
                return Outcome.error(
                    f"seen from peer {who}, declared service(s) not reachable: {shown}",
                    unreachable=len(bad),
                    **details,
                )
            return Outcome.ok(
                f"all {len(states)} declared service(s) reachable from peer {who}: "
                + ", ".join(f"{k} {v}" for k, v in states.items()),
                unreachable=0,
                **details,
            )
        return Outcome.warning(
            "no peer could check the declared services"
            + (": " + "; ".join(f"{t['peer']}: {t['error']}" for t in tried) if tried else ""),
            tried=tried,
        )

    # -- DNSProxy ------------------------------------------------------------

    async def dns_proxy(self) -> Outcome:
        """DNSProxy: see the module docstring."""
        name = self.params.get("name") or self.cfg.dns_name
        try:
            name = dns_name(name)
        except Refused as e:
            return Outcome.error(e.text)
        servers = self.module.resolvers()
        local = []
        for server in servers[:3]:
            result = await self.module.dns.query(server, name, "A", DNS_TIMEOUT)
            local.append({"server": server, "rcode": result.rcode, "error": result.error})
            if result.answered:
                if self.module.proxy is not None:
                    self.module.stop()
                    return Outcome.ok(
                        f"{server} answers again ({result.rcode} for {name}); "
                        "the DNS proxy on loopback is stopped",
                        local=local,
                    )
                return Outcome.ok(f"{result.describe()}", local=local)
        if self._node() is None:
            return Outcome.error(
                f"no resolver answers {name} ({', '.join(servers) or 'none configured'}) "
                "and the overlay is off, so no peer can resolve for this host",
                local=local,
            )
        tried = []
        for partner in self.choose(max(self.count, 3)):
            answer, error = await self._try(partner, "dns", {"name": name, "rdtype": "A"}, 10.0)
            if answer is None or answer.get("rcode") is None:
                tried.append({"peer": partner_text(partner), "error": error or answer.get("error")})
                continue
            who = partner_text(partner)
            proxy = self._start_proxy(partner)
            where = f"; queries to {proxy} go through peers meanwhile" if proxy else ""
            answers = [str(a) for a in answer.get("answers") or []][:8]
            return Outcome.warning(
                f"this host's resolver(s) {', '.join(servers) or '(none)'} do not answer; "
                f"peer {who} resolved {name} through its own resolver "
                f"({answer.get('rcode')}: {', '.join(answers) or 'no records'}){where}",
                local=local,
                peer=who,
                answers=answers,
                proxy=proxy,
            )
        return Outcome.error(
            f"no resolver answers {name} here, and no peer could resolve it for this host",
            local=local,
            tried=tried,
        )

    def _start_proxy(self, partner: Partner) -> str | None:
        cfg = self.cfg
        if not cfg.dns_proxy_port:
            return None
        module = self.module
        if module.proxy is None:
            proxy = DnsProxy(module.reactor, lambda: self.choose(3), self.ask)
            try:
                proxy.listen(cfg.dns_proxy_address, cfg.dns_proxy_port)
            except OSError as e:
                self.log.failure("cannot start the DNS proxy")
                return f"(proxy not started: {e})"
            module.proxy = proxy
        return f"{cfg.dns_proxy_address}:{module.proxy.port}"

    # -- Relay ---------------------------------------------------------------

    async def relay(self) -> Outcome:
        """Relay: see the module docstring."""
        skip = self._no_overlay()
        if skip:
            return skip
        if not self.partners:
            return Outcome.error("Relay needs peers=NODE_ID or ADDRESS: the agent to reach")
        dest = self.partners[0]
        who = partner_text(dest)
        data = b"dna-relay-check"
        answer, direct_error = await self._try(dest, "echo", {"data": data}, 5.0)
        if answer is not None and answer.get("data") == data:
            return Outcome.ok(f"{who} answers directly", direct=True)
        node = self._node()
        candidates = [
            bytes.fromhex(str(p["node_id"]))
            for p in node.peers()
            if bytes.fromhex(str(p["node_id"])) != dest
        ]
        self.module.rng.shuffle(candidates)
        tried = []
        relay_to: Any = dest if isinstance(dest, bytes) else list(dest)
        for relay in candidates[:5]:
            body = {"to": relay_to, "kind": "echo", "body": {"data": data}}
            answer, error = await self._try(relay, "relay", body, 12.0)
            inner = (answer or {}).get("answer") or {}
            if isinstance(inner, dict) and "refused" in inner:
                error = f"refused by {who}: {inner.get('error')}"
                inner = {}
            if answer is not None and inner.get("data") == data:
                via = partner_text(relay)
                return Outcome.warning(
                    f"{who} does not answer directly ({direct_error}) but answers through "
                    f"{via}: the direct path is broken, the relay works",
                    direct=False,
                    via=via,
                    direct_error=direct_error,
                )
            tried.append({"relay": partner_text(relay), "error": error or "bad answer"})
        return Outcome.error(
            f"{who} answers neither directly ({direct_error}) nor through {len(tried)} relay(s)",
            direct=False,
            tried=tried,
        )

    # -- Throughput ----------------------------------------------------------

    async def throughput(self) -> Outcome:
        """Throughput: see the module docstring."""
        skip = self._no_overlay()
        if skip:
            return skip
        seconds = _int_param(self.params, "seconds", 5, 1, THROUGHPUT_MAX_SECONDS)
        partners = self.choose(1)
        if not partners:
            return Outcome.error("no peer to measure throughput with")
        peer = partners[0]
        who = partner_text(peer)
        body: dict[str, Any] = {"seconds": seconds}
        rate_text = self.params.get("rate_mbit", "").strip()
        if rate_text:
            try:
                body["rate_mbit"] = float(rate_text)
            except ValueError:
                return Outcome.error(f"rate_mbit must be a number, not {rate_text!r}")
        receiver = ThroughputReceiver(self.module.reactor)
        try:
            body["port"] = receiver.listen("::")
        except Exception as e:  # noqa: BLE001 (a host without IPv6)
            self.log.failure("listening on :: failed; trying 0.0.0.0", level=_DEBUG)
            try:
                body["port"] = receiver.listen("0.0.0.0")
            except Exception:
                self.log.failure("cannot listen for the throughput stream")
                return Outcome.error(f"cannot listen for the stream: {e}")
        try:
            answer, error = await self._try(peer, "throughput", body, seconds + 20.0)
            if answer is None:
                return Outcome.error(f"peer {who} did not send: {error}", peer=who)
            if answer.get("error") and not receiver.report.total_bytes:
                return Outcome.error(f"peer {who} could not send: {answer['error']}", peer=who)
            if not receiver.done.called:
                timer = self.module.reactor.callLater(5.0, receiver.ended)
                report = await receiver.done
                if timer.active():
                    timer.cancel()
            else:
                report = receiver.report
        finally:
            receiver.close()
        mbit = report.mbit()
        per_second = report.per_second_mbit()
        return Outcome.ok(
            f"{mbit:.2f} Mbit/s from peer {who} over {seconds} s "
            f"(per second: {', '.join(f'{x:.1f}' for x in per_second)})",
            peer=who,
            mbit=round(mbit, 3),
            per_second_mbit=per_second,
            bytes=report.total_bytes,
            seconds=seconds,
            rate_mbit=answer.get("rate_mbit"),
            sent_bytes=answer.get("sent_bytes"),
        )
