"""XBAC in the agent: the user interface of the thesis (Appendix B) over a group node.

:class:`XbacService` is what the control API, ``dnactl predict`` and the MIB
talk to. It holds the prediction engine, the group node
(:class:`dnaagent.xbac.node.XbacNode`) when the overlay runs, else a group of
one (:class:`dnaagent.xbac.local.LocalXbac`), and feeds it:

* ``add_measurement``: RTTs an application measured itself;
* ``measure_rtt``: one active measurement (ICMP echo, or TCP connect time where
  ICMP is blocked), asked for explicitly, or every ``active_interval`` seconds
  for the targets recently predicted when configured;
* passive RTTs of other applications' TCP connections (sock_diag), when
  configured (:class:`dnaagent.measure.passive.PassiveRtt`).

With the built-in defaults it answers and records but sends nothing unasked.

Interface (seconds inside, milliseconds at the edges: API, dnactl, MIB):
``connect(address)``, ``add_measurement(host, rtts_ms)``, ``measure_rtt(host)``,
``predict_rtt(host)``, ``predict(spec)``, ``report_prediction_quality(host,
predicted_ms, measured_ms)``, ``status()``.
"""

from __future__ import annotations

import ipaddress
import math
import socket
from collections import Counter, deque
from collections.abc import Callable, Hashable, Mapping
from dataclasses import dataclass
from typing import Any

from twisted.application.service import Service
from twisted.internet import defer, task
from twisted.logger import Logger

from dnaagent.errors import DnaAgentError
from dnaagent.xbac.local import LocalXbac
from dnaagent.xbac.predictor import Prediction
from dnaagent.xbac.settings import XbacSection

#: Most RTT values one add_measurement call may carry.
MAX_SERIES = 1000
#: RTTs beyond this (ms) are refused as nonsense.
MAX_RTT_MS = 60_000.0
#: Longest host name or address accepted.
MAX_HOST = 253

PREDICTION_METRICS = ("rtt",)


class XbacInputError(DnaAgentError, ValueError):
    """A request to the prediction service is malformed (bad host, bad value)."""


def normalize_address(host: str) -> str:
    """The canonical text of an IP address literal; raises :class:`XbacInputError`."""
    if not isinstance(host, str) or not host.strip() or len(host) > MAX_HOST:
        raise XbacInputError("the host must be an IPv4 or IPv6 address")
    text = host.strip()
    if text.startswith("[") and text.endswith("]"):
        text = text[1:-1]
    try:
        ip = ipaddress.ip_address(text.split("%")[0])
    except ValueError:
        raise XbacInputError(f"{host!r} is not an IP address") from None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    if ip.is_unspecified or ip.is_multicast:
        raise XbacInputError(f"{ip} is not a host address")
    return str(ip)


def check_rtt_ms(value: Any, what: str = "an RTT") -> float:
    """A finite, non-negative number of milliseconds below a minute."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise XbacInputError(f"{what} must be a number of milliseconds, not {value!r}")
    v = float(value)
    if not math.isfinite(v) or not 0 <= v <= MAX_RTT_MS:
        raise XbacInputError(f"{what} must be between 0 and {MAX_RTT_MS:g} ms, not {value!r}")
    return v


def own_address(listen_ipv4: str, listen_ipv6: str) -> str | None:
    """This host's address as the group knows it (the node's host id).

    The overlay's listening address when it names one; else the source address
    the kernel picks toward a documentation address (a UDP ``connect`` only looks
    the route up, it sends nothing); None when there is no route.
    """
    for text in (listen_ipv4, listen_ipv6):
        if text:
            ip = ipaddress.ip_address(text)
            if not ip.is_unspecified:
                return str(ip)
    for family, probe in ((socket.AF_INET, "192.0.2.1"), (socket.AF_INET6, "2001:db8::1")):
        try:
            with socket.socket(family, socket.SOCK_DGRAM) as s:
                s.connect((probe, 9))
                return str(s.getsockname()[0])
        except OSError:
            continue
    return None


@dataclass(frozen=True)
class Answer:
    """One answered (or unanswered) prediction request, as the MIB's table shows it."""

    index: int
    target: str
    time: float
    prediction: Prediction | None
    elapsed: float

    def to_json(self) -> dict[str, Any]:
        """The answer as the control API returns it."""
        out: dict[str, Any] = {
            "target": self.target,
            "time": self.time,
            "elapsed_ms": round(self.elapsed * 1000, 3),
        }
        p = self.prediction
        if p is None:
            out.update(
                predicted=False,
                reason=(
                    f"no prediction possible for {self.target}: neither this host nor its "
                    "group has measured it or a host of its cluster"
                ),
            )
            return out
        out.update(
            predicted=True,
            rtt_ms=round(p.value * 1000, 3),
            low_ms=round(p.low * 1000, 3),
            high_ms=round(p.high * 1000, 3),
            basis={"source": p.source, "series": p.series, "measurements": p.samples},
        )
        return out


def _engine_factory() -> Callable[..., Any] | None:
    """The distributed group node class, when this version has one."""
    try:
        from dnaagent.xbac.node import XbacNode
    except ImportError:
        return None
    return XbacNode  # type: ignore[no-any-return]


class XbacService(Service):
    """The prediction service of one agent; see the module docstring.

    ``pinger`` (``ping(address, timeout)``) and ``tcp`` (``measure(address, port,
    timeout)``) do the active measurements; ``passive_reader`` replaces the kernel
    reading of passive RTTs (tests). ``overlay`` is the agent's overlay node (None:
    a group of one).
    """

    log = Logger()

    def __init__(
        self,
        cfg: XbacSection,
        reactor: Any,
        overlay: Any = None,
        *,
        pinger: Any = None,
        tcp: Any = None,
        passive_reader: Any = None,
        host_id: Hashable | None = None,
        join_wait: float = 0.0,
    ) -> None:
        self.cfg = cfg
        self.join_wait = join_wait
        self._waiting: task.LoopingCall | None = None
        self.reactor = reactor
        self.overlay = overlay
        self._pinger = pinger
        self._tcp = tcp
        self.counters: Counter[str] = Counter()
        self.recent: deque[Answer] = deque(maxlen=cfg.recent)
        self._next_index = 1
        self.engine = self._make_engine(host_id)
        self.passive = None
        if cfg.passive:
            from dnaagent.measure.passive import PassiveRtt

            kwargs: dict[str, Any] = {}
            if passive_reader is not None:
                kwargs["reader"] = passive_reader
            self.passive = PassiveRtt(
                reactor,
                self._passive_sample,
                interval=cfg.passive_interval,
                per_destination=cfg.passive_per_destination,
                max_sockets=cfg.passive_max_sockets,
                include_local=cfg.passive_include_loopback,
                **kwargs,
            )
        self._active: task.LoopingCall | None = None

    def _make_engine(self, host_id: Hashable | None) -> Any:
        node_class = _engine_factory() if self.overlay is not None else None
        if node_class is not None:
            self.mode = "group"
            return node_class(
                self.overlay, self.reactor, self._measure_seconds, self.cfg.node_params(), host_id
            )
        self.mode = "local"
        return LocalXbac(
            self.reactor,
            self._measure_seconds,
            self.cfg.predictor_params(),
            host_id,
            horizon=self.cfg.horizon,
        )

    # -- service ----------------------------------------------------------------------

    def startService(self) -> None:  # noqa: N802 (Twisted's name)
        """Start the engine, the passive polling and the active rounds (when configured)."""
        super().startService()
        if self.mode == "group" and self.join_wait > 0:
            # Bootstrapping reads the group leaders from the DHT: wait until the
            # overlay knows a peer (or join_wait has passed), else every agent of a
            # starting site would found a group of its own.
            began = self.reactor.seconds()

            def ready() -> None:
                table = getattr(self.overlay, "routing_table", ())
                late = self.reactor.seconds() - began >= self.join_wait
                if (len(table) > 0 or late) and self._waiting is not None:
                    self._waiting.stop()
                    self._waiting = None
                    self._start_engine()

            self._waiting = task.LoopingCall(ready)
            self._waiting.clock = self.reactor
            self._waiting.start(0.5, now=True)
        else:
            self._start_engine()
        if self.passive is not None:
            self.passive.start()
        if self.cfg.active_interval > 0:
            self._active = task.LoopingCall(self._active_round)
            self._active.clock = self.reactor
            self._active.start(self.cfg.active_interval, now=False).addErrback(
                lambda f: self.log.failure("XBAC active measurements stopped", f)
            )

    def _start_engine(self) -> None:
        d = defer.maybeDeferred(self.engine.start)
        d.addErrback(lambda f: self.log.failure("XBAC did not start", f))

    def stopService(self) -> Any:  # noqa: N802 (Twisted's name)
        """Stop polling and hand the group role over (once: the agent stops it first)."""
        if not self.running:
            return defer.succeed(None)
        super().stopService()
        if self._waiting is not None and self._waiting.running:
            self._waiting.stop()
        self._waiting = None
        if self.passive is not None:
            self.passive.stop()
        if self._active is not None and self._active.running:
            self._active.stop()
        self._active = None
        d = defer.maybeDeferred(self.engine.stop, True)
        d.addErrback(lambda f: self.log.failure("XBAC did not stop cleanly", f))
        return d

    # -- measurements -------------------------------------------------------------------

    def add_measurement(
        self,
        host: str,
        rtts_ms: list[Any],
        interval: Any = 1.0,
        source: str = "api",
        t: float | None = None,
    ) -> int:
        """Record RTTs (ms) to ``host``, oldest first, ``interval`` seconds apart, the
        newest at ``t`` (now); return how many were kept."""
        target = normalize_address(host)
        if not isinstance(rtts_ms, list) or not 1 <= len(rtts_ms) <= MAX_SERIES:
            raise XbacInputError(f"give 1 to {MAX_SERIES} RTT values")
        values = [check_rtt_ms(v) for v in rtts_ms]
        if (
            isinstance(interval, bool)
            or not isinstance(interval, int | float)
            or not 0.001 <= interval <= 86400
        ):
            raise XbacInputError("the interval between values must be 0.001 to 86400 seconds")
        kept = 0
        now = self.reactor.seconds() if t is None else t
        for i, v in enumerate(values):
            when = now - (len(values) - 1 - i) * float(interval)
            if self.engine.add_measurement(target, v / 1000.0, when):
                kept += 1
        self.counters[f"measurements_{source}"] += kept
        self.counters["measurements_rejected"] += len(values) - kept
        return kept

    def _passive_sample(self, host: str, rtt: float, t: float) -> None:
        if self.engine.add_measurement(host, rtt, t):
            self.counters["measurements_passive"] += 1
        else:
            self.counters["measurements_rejected"] += 1

    def _measure_seconds(self, host: str) -> defer.Deferred[float | None]:
        """One active measurement with the configured method: RTT in seconds or None."""
        d: defer.Deferred[Any] = self._measure(host)
        d.addCallback(lambda r: None if r["rtt_ms"] is None else r["rtt_ms"] / 1000.0)
        return d

    def _measure(self, target: str) -> defer.Deferred[dict[str, Any]]:
        cfg = self.cfg
        if cfg.method == "tcp":
            if self._tcp is None:
                from dnaagent.measure.tcprtt import TcpRtt

                self._tcp = TcpRtt(self.reactor)
            d = self._tcp.measure(target, cfg.tcp_port, cfg.probe_timeout)
            d.addCallback(
                lambda r: {
                    "target": target,
                    "method": "tcp",
                    "port": cfg.tcp_port,
                    "rtt_ms": r.rtt_ms if r.reply else None,
                    "refused": r.refused,
                    "error": r.error,
                }
            )
            return d
        if self._pinger is None:
            from dnaagent.measure.ping import Pinger

            self._pinger = Pinger(self.reactor)
        d = self._pinger.ping(target, cfg.probe_timeout)
        d.addCallback(
            lambda r: {
                "target": target,
                "method": "icmp",
                "rtt_ms": r.rtt_ms if r.reply else None,
                "error": r.error,
            }
        )
        return d

    def measure_rtt(self, host: str) -> defer.Deferred[dict[str, Any]]:
        """Measure the RTT to ``host`` now, record it, and return what was measured."""
        target = normalize_address(host)
        self.counters["active_measurements"] += 1
        d = self._measure(target)

        def record(r: dict[str, Any]) -> dict[str, Any]:
            if r["rtt_ms"] is not None:
                r["recorded"] = bool(
                    self.engine.add_measurement(
                        target, r["rtt_ms"] / 1000.0, self.reactor.seconds()
                    )
                )
                self.counters["measurements_active"] += int(r["recorded"])
            else:
                r["recorded"] = False
                self.counters["active_failures"] += 1
            return r

        d.addCallback(record)
        return d

    def _active_round(self) -> defer.Deferred[Any]:
        """Re-measure the targets predicted most recently (only when configured)."""
        seen: list[str] = []
        for a in reversed(self.recent):
            if a.target not in seen:
                seen.append(a.target)
            if len(seen) >= self.cfg.active_targets:
                break
        ds = [self.measure_rtt(t) for t in seen]
        return defer.DeferredList(ds, consumeErrors=True)

    # -- predictions ----------------------------------------------------------------------

    def predict_rtt(self, host: str) -> defer.Deferred[dict[str, Any]]:
        """Predict the RTT to ``host``: value, interval and basis, or why not."""
        target = normalize_address(host)
        start = self.reactor.seconds()
        d = defer.maybeDeferred(self.engine.predict_rtt, target)

        def answer(p: Prediction | None) -> dict[str, Any]:
            now = self.reactor.seconds()
            a = Answer(self._next_index, target, now, p, max(now - start, 0.0))
            self._next_index = self._next_index % 0x7FFFFFFF + 1
            self.recent.append(a)
            self.counters[
                "predictions_answered" if p is not None else "predictions_unanswered"
            ] += 1
            return a.to_json()

        d.addCallback(answer)
        return d

    def predict(self, spec: Any) -> defer.Deferred[dict[str, Any]]:
        """A prediction for a specification ``{"metric": "rtt", "target": HOST}``."""
        if not isinstance(spec, Mapping):
            raise XbacInputError('a prediction specification is {"metric": "rtt", "target": HOST}')
        unknown = set(spec) - {"metric", "target"}
        if unknown:
            raise XbacInputError(
                f"unknown field(s) in the specification: {', '.join(sorted(unknown))}"
            )
        metric = spec.get("metric", "rtt")
        if metric not in PREDICTION_METRICS:
            raise XbacInputError(
                f"metric {metric!r} cannot be predicted (known: {', '.join(PREDICTION_METRICS)})"
            )
        target = spec.get("target")
        if not isinstance(target, str):
            raise XbacInputError("the specification needs a 'target' host")
        d = self.predict_rtt(target)
        d.addCallback(lambda out: {"metric": metric, **out})
        return d

    def report_prediction_quality(
        self, host: str, predicted_ms: Any, measured_ms: Any
    ) -> dict[str, Any]:
        """An application's check of a prediction: feeds the group, records the measurement."""
        target = normalize_address(host)
        p = check_rtt_ms(predicted_ms, "the predicted RTT")
        m = check_rtt_ms(measured_ms, "the measured RTT")
        # The engine keeps the error and adds the measured value to the series.
        self.engine.report_prediction_quality(target, p / 1000.0, m / 1000.0)
        self.counters["quality_reports"] += 1
        if m > 0:
            self.counters["measurements_report"] += 1
        rel = abs(p - m) / m if m > 0 else None
        return {"target": target, "relative_error": rel}

    def connect(self, address: str) -> defer.Deferred[dict[str, Any]]:
        """Bootstrap through the agent at ``address`` (``host[:port]``): join its overlay."""
        from dnaagent.overlay.section import parse_address

        if self.overlay is None:
            raise XbacInputError("the overlay is off: this agent forms a group of its own")
        try:
            addr = parse_address(address)
        except ValueError as e:
            raise XbacInputError(str(e)) from None
        d = self.overlay.join([addr])
        d.addCallback(
            lambda known: {"address": f"{addr[0]}:{addr[1]}", "peers": known, **self.status()}
        )
        return d

    # -- state ----------------------------------------------------------------------------

    def answered(self) -> int:
        """Predictions answered so far."""
        return self.counters["predictions_answered"]

    def status(self) -> dict[str, Any]:
        """Role, group, counts and the measurement sources' settings."""
        engine = dict(self.engine.status())
        c = self.counters
        measurements = sum(
            v
            for k, v in c.items()
            if k.startswith("measurements_") and k != "measurements_rejected"
        )
        members = engine.get("members", 0)
        if isinstance(members, list | tuple | set):
            members = len(members)
        return {
            "enabled": True,
            "mode": self.mode,
            "role": engine.get("role", "unknown"),
            "group": str(engine.get("group") or ""),
            "members": int(members or 0),
            "clusters": int(engine.get("clusters", 0) or 0),
            "measurements": measurements,
            "measurements_by_source": {
                s: c[f"measurements_{s}"] for s in ("api", "active", "passive", "report")
            },
            "measurements_rejected": c["measurements_rejected"],
            "predictions_answered": c["predictions_answered"],
            "predictions_unanswered": c["predictions_unanswered"],
            "quality_reports": c["quality_reports"],
            "active": {
                "method": self.cfg.method,
                "tcp_port": self.cfg.tcp_port,
                "interval": self.cfg.active_interval,
                "measurements": c["active_measurements"],
                "failures": c["active_failures"],
            },
            "passive": dict(self.passive.status())
            if self.passive is not None
            else {"running": False},
            "engine": engine,
        }
