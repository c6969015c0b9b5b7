"""OpenMetrics / Prometheus exposition of the agent: ``GET /metrics``.

:class:`AgentCollector` reads the agent's live state at scrape time (no copy
of it is kept): the figures of DNA-AGENT-MIB (agent information, test table,
result table, peer table, overlay counters) and the notification queue, the
results store, the scheduler, the control API and the distributed test
guard. Every metric is named ``dnaagent_...`` with its unit in the name; see
``docs/metrics.md``.

:class:`MetricsResource` answers in the OpenMetrics text format when the
client asks for it (``Accept: application/openmetrics-text``), in the
Prometheus text format 0.0.4 otherwise.

Like :class:`~dnaagent.snmp.instrumentation.MibUpdater`, the collector reads
the agent through plain attributes (``mediator``, ``store``, ``scheduler``,
``started_at``, ``overlay``, ``notifications``, ``api``), so a part that is
off (no overlay, no notifications) yields no samples instead of failing. A
part that raises is logged and counted in
``dnaagent_metrics_collect_errors_total``; the others are still exposed.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import Any

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    InfoMetricFamily,
    StateSetMetricFamily,
)
from prometheus_client.exposition import choose_encoder
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector, CollectorRegistry
from twisted.logger import Logger
from twisted.web import resource, server

from dnaagent import __version__
from dnaagent.snmp.instrumentation import DROPPED_PREFIX, estimate_overlay_size
from dnaagent.snmp.notify.queue import COUNTERS as NOTIFY_COUNTERS

PREFIX = "dnaagent_"

STATUSES = ("ok", "warning", "error", "skipped")

# Overlay node counters exposed one metric each: counter key -> (name, help, unit).
OVERLAY_COUNTERS: dict[str, tuple[str, str, str]] = {
    "messages_in": ("overlay_messages_received", "Overlay datagrams received.", ""),
    "messages_out": ("overlay_messages_sent", "Overlay datagrams sent.", ""),
    "bytes_in": ("overlay_received", "Bytes of overlay datagrams received.", "bytes"),
    "bytes_out": ("overlay_sent", "Bytes of overlay datagrams sent.", "bytes"),
    "bans_total": ("overlay_peer_bans", "Peers banned for misbehaviour since start.", ""),
    "rpc_sent": ("overlay_rpc_requests_sent", "Overlay RPC requests sent.", ""),
    "rpc_retransmits": ("overlay_rpc_retransmits", "Overlay RPC requests retransmitted.", ""),
    "rpc_timeouts": ("overlay_rpc_timeouts", "Overlay RPC requests that timed out.", ""),
    "rpc_duplicate_replies": (
        "overlay_rpc_duplicate_replies",
        "Duplicate replies to overlay RPC requests.",
        "",
    ),
    "send_errors": ("overlay_send_errors", "Overlay datagrams that could not be sent.", ""),
    "lookups": ("overlay_lookups", "Node lookups started.", ""),
    "lookups_found": ("overlay_lookups_found", "Node lookups that found their node.", ""),
    "store_refused": ("overlay_store_refused", "DHT STORE requests refused.", ""),
    "values_handed_over": (
        "overlay_values_handed_over",
        "DHT values stored at a node that joined as a replica of their key.",
        "",
    ),
    "rejoins": (
        "overlay_rejoins",
        "Joins again through the seeds by a node that knew few peers and none of its seeds.",
        "",
    ),
    "app_requests_in": (
        "overlay_app_requests_received",
        "Application requests received from peers.",
        "",
    ),
    "app_requests_out": ("overlay_app_requests_sent", "Application requests sent to peers.", ""),
    "announcements": ("overlay_announcements", "Link-local discovery announcements sent.", ""),
    "introductions_sent": (
        "overlay_introductions_sent",
        "Searched nodes told who searches them (INTRODUCE).",
        "",
    ),
    "introductions_limited": (
        "overlay_introductions_limited",
        "Introductions not greeted because of the greeting rate limit.",
        "",
    ),
    "greetings_sent": ("overlay_greetings_sent", "Greetings (HERE) sent to askers.", ""),
    "lookups_greeted": (
        "overlay_lookups_greeted",
        "Node lookups ended by the searched node's greeting.",
        "",
    ),
    "value_lookups": (
        "overlay_value_lookups",
        "DHT value lookups (gets not answered locally).",
        "",
    ),
    "value_lookups_narrow": (
        "overlay_value_lookups_narrow",
        "Value lookups that asked one node near the key first.",
        "",
    ),
    "value_lookup_requests": (
        "overlay_value_lookup_requests",
        "FIND_VALUE requests sent by value lookups.",
        "",
    ),
    "macs_out": ("overlay_datagrams_mac", "Datagrams sent with a pair-key MAC.", ""),
    "signatures_out": ("overlay_datagrams_signed", "Datagrams sent with an Ed25519 signature.", ""),
}

# Overlay node gauges: counter key -> (name, help).
OVERLAY_GAUGES: dict[str, tuple[str, str]] = {
    "banned_peers": ("overlay_banned_peers", "Peers banned right now."),
    "stored_keys": ("overlay_dht_stored_keys", "DHT keys this node stores."),
    "stored_values": ("overlay_dht_stored_values", "DHT values this node stores."),
    "pending_requests": ("overlay_rpc_pending_requests", "Overlay RPC requests awaiting a reply."),
}


def _count(value: Any) -> float:
    """A counter value, 0 for anything that is not a non-negative number."""
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
        return 0.0
    return float(value)


def _node_id_hex(value: Any) -> str:
    if isinstance(value, bytes | bytearray):
        return bytes(value).hex()
    return str(value) if value is not None else ""


class AgentCollector(Collector):
    """Yields the agent's metrics, read from ``agent`` at each scrape.

    ``clock`` gives POSIX time (the agent's reactor, or a ``task.Clock``).
    """

    log = Logger()

    def __init__(self, agent: Any, clock: Any | None = None) -> None:
        self.agent = agent
        self.clock = clock if clock is not None else agent.reactor
        self.collect_errors = 0
        self.scrapes = 0

    def describe(self) -> list[Metric]:
        """No fixed description: families depend on what runs (see ``collect``)."""
        return []

    def collect(self) -> Iterator[Metric]:
        """Every family of every part; a failing part is logged and skipped."""
        self.scrapes += 1
        parts: tuple[Callable[[], Iterator[Metric]], ...] = (
            self._agent_info,
            self._tests,
            self._results,
            self._overlay,
            self._peers,
            self._notifications,
            self._distributed,
            self._xbac,
            self._dts,
            self._control,
        )
        for part in parts:
            try:
                # Materialised first so a part fails whole, never half exposed.
                families = list(part())
            except Exception:
                self.collect_errors += 1
                self.log.failure("collecting metrics ({part}) failed", part=part.__name__)
                continue
            yield from families
        yield CounterMetricFamily(
            PREFIX + "metrics_collect_errors",
            "Parts of the metrics that failed to be collected (see the agent log).",
            value=self.collect_errors,
        )

    # ----------------------------------------------------------------- parts

    def _agent_info(self) -> Iterator[Metric]:
        agent = self.agent
        now = self.clock.seconds()
        overlay = getattr(agent, "overlay", None)
        info = {"version": __version__}
        if overlay is not None:
            info["node_id"] = _node_id_hex(getattr(overlay, "node_id", None))
        yield InfoMetricFamily(PREFIX + "agent", "The agent's version and node ID.", value=info)
        started = getattr(agent, "started_at", None)
        yield GaugeMetricFamily(
            PREFIX + "uptime",
            "Seconds since the agent started (dnaUptime).",
            value=max(0.0, now - started) if started else 0.0,
            unit="seconds",
        )
        if started:
            yield GaugeMetricFamily(
                PREFIX + "start_time",
                "When the agent started, POSIX time.",
                value=started,
                unit="seconds",
            )
        mediator = getattr(agent, "mediator", None)
        if mediator is not None:
            yield CounterMetricFamily(
                PREFIX + "module_runs_completed",
                "Module runs completed since start (dnaRunsCompleted).",
                value=_count(getattr(mediator, "runs_completed", 0)),
            )
            yield GaugeMetricFamily(
                PREFIX + "module_runs_active",
                "Module runs in progress.",
                value=len(list(getattr(mediator, "active", ()))),
            )
        store = getattr(agent, "store", None)
        if store is not None:
            yield GaugeMetricFamily(
                PREFIX + "results_stored",
                "Test results kept in the results store.",
                value=store.count(),
            )
        triggers = getattr(agent, "triggers", None)
        if triggers is not None:
            yield CounterMetricFamily(
                PREFIX + "trigger_events",
                "Trigger events fired (test failed, recovered, threshold crossed, ...).",
                value=_count(getattr(triggers, "fired", 0)),
            )
        scheduler = getattr(agent, "scheduler", None)
        yield GaugeMetricFamily(
            PREFIX + "schedule_enabled",
            "1 when the agent runs its modules on a schedule.",
            value=1 if scheduler is not None else 0,
        )
        if scheduler is not None:
            yield CounterMetricFamily(
                PREFIX + "schedule_runs",
                "Scheduled module runs started.",
                value=_count(getattr(scheduler, "runs", 0)),
            )
            yield CounterMetricFamily(
                PREFIX + "schedule_failures",
                "Scheduled module runs that failed to run.",
                value=_count(getattr(scheduler, "failures", 0)),
            )

    def _tests(self) -> Iterator[Metric]:
        mediator = getattr(self.agent, "mediator", None)
        if mediator is None:
            return
        scheduler = getattr(self.agent, "scheduler", None)
        scheduled = set(getattr(scheduler, "modules", ()) or ()) if scheduler else set()
        interval = float(getattr(scheduler, "interval", 0) or 0) if scheduler else 0.0
        running: set[tuple[str, str]] = set()
        for active in getattr(mediator, "active", ()):
            for name in active.tests:
                if name not in active.finished:
                    running.add((active.module, name))
        labels = ["module", "test"]
        default = GaugeMetricFamily(
            PREFIX + "test_default",
            "1 when the test runs by default with its module (dnaTestDefault).",
            labels=labels,
        )
        enabled = GaugeMetricFamily(
            PREFIX + "test_enabled",
            "1 when the test runs on the schedule (dnaTestEnabled).",
            labels=labels,
        )
        every = GaugeMetricFamily(
            PREFIX + "test_interval",
            "Seconds between scheduled runs, 0 when not scheduled (dnaTestInterval).",
            labels=labels,
            unit="seconds",
        )
        run = GaugeMetricFamily(
            PREFIX + "test_running",
            "1 while the test runs (dnaTestRun).",
            labels=labels,
        )
        for module_name, module in mediator.modules.items():
            for spec in module.tests:
                key = [module_name, spec.name]
                on = module_name in scheduled and spec.default
                default.add_metric(key, 1 if spec.default else 0)
                enabled.add_metric(key, 1 if on else 0)
                every.add_metric(key, interval if on else 0.0)
                run.add_metric(key, 1 if (module_name, spec.name) in running else 0)
        yield from (default, enabled, every, run)

    def _results(self) -> Iterator[Metric]:
        mediator = getattr(self.agent, "mediator", None)
        if mediator is None:
            return
        store = getattr(self.agent, "store", None)
        counters = store.counters() if store is not None else {}
        labels = ["module", "test"]
        status = StateSetMetricFamily(
            PREFIX + "test_status",
            "Status of the test's latest result (dnaResultStatus).",
            labels=labels,
        )
        code = GaugeMetricFamily(
            PREFIX + "test_status_code",
            "Status of the test's latest result as the MIB codes it: "
            "1 ok, 2 warning, 3 error, 4 skipped (dnaResultStatus).",
            labels=labels,
        )
        when = GaugeMetricFamily(
            PREFIX + "test_last_run_timestamp",
            "When the test's latest result started, POSIX time (dnaResultTime).",
            labels=labels,
            unit="seconds",
        )
        duration = GaugeMetricFamily(
            PREFIX + "test_last_duration",
            "How long the test's latest run took (dnaResultDuration).",
            labels=labels,
            unit="seconds",
        )
        count = CounterMetricFamily(
            PREFIX + "test_results",
            "Results recorded for the test (dnaResultCount).",
            labels=labels,
        )
        errors = CounterMetricFamily(
            PREFIX + "test_errors",
            "Error results recorded for the test (dnaResultErrors).",
            labels=labels,
        )
        for r in mediator.latest():
            key = [r.module, r.test]
            value = getattr(r.status, "value", str(r.status))
            status.add_metric(key, {s: s == value for s in STATUSES})
            code.add_metric(key, STATUSES.index(value) + 1 if value in STATUSES else 0)
            when.add_metric(key, float(r.started))
            duration.add_metric(key, float(r.duration))
            n, failed = counters.get((r.module, r.test), (0, 0))
            count.add_metric(key, _count(n))
            errors.add_metric(key, _count(failed))
        yield from (status, code, when, duration, count, errors)

    def _overlay(self) -> Iterator[Metric]:
        overlay = getattr(self.agent, "overlay", None)
        yield GaugeMetricFamily(
            PREFIX + "overlay_enabled",
            "1 when the agent takes part in the overlay.",
            value=1 if overlay is not None else 0,
        )
        if overlay is None:
            return
        raw = getattr(overlay, "counters", None) or {}
        counters: Mapping[str, Any] = raw() if callable(raw) else raw
        peers = list(overlay.peers())
        yield GaugeMetricFamily(
            PREFIX + "overlay_peers",
            "Peers in the routing table (dnaPeerCount).",
            value=len(peers),
        )
        own = getattr(overlay, "node_id", b"")
        ids: list[bytes] = []
        for p in peers:
            try:
                ids.append(bytes.fromhex(str(p.get("node_id", ""))))
            except ValueError:
                continue
        given = getattr(overlay, "size_estimate", None)
        if isinstance(given, int) and not isinstance(given, bool):
            size = given
        else:
            size = estimate_overlay_size(own, ids) if ids else 1
        yield GaugeMetricFamily(
            PREFIX + "overlay_size_estimate",
            "Agents in the overlay, estimated from the closest peer IDs (dnaOverlaySize).",
            value=size,
        )
        for key, (name, text, unit) in OVERLAY_COUNTERS.items():
            yield CounterMetricFamily(
                PREFIX + name, text, value=_count(counters.get(key, 0)), unit=unit
            )
        dropped = CounterMetricFamily(
            PREFIX + "overlay_dropped_messages",
            "Overlay datagrams dropped, by reason; their sum is dnaOverlayInvalidDropped.",
            labels=["reason"],
        )
        for key in sorted(counters):
            if key.startswith(DROPPED_PREFIX):
                dropped.add_metric([key[len(DROPPED_PREFIX) :]], _count(counters[key]))
        yield dropped
        for key, (name, text) in OVERLAY_GAUGES.items():
            if key in counters:
                yield GaugeMetricFamily(PREFIX + name, text, value=_count(counters[key]))

    def _peers(self) -> Iterator[Metric]:
        overlay = getattr(self.agent, "overlay", None)
        if overlay is None:
            return
        labels = ["peer", "address"]
        rtt = GaugeMetricFamily(
            PREFIX + "overlay_peer_rtt",
            "Smoothed round-trip time to the peer (dnaPeerRtt).",
            labels=labels,
            unit="seconds",
        )
        seen = GaugeMetricFamily(
            PREFIX + "overlay_peer_last_seen",
            "Seconds since the peer was last heard from (dnaPeerLastSeen).",
            labels=labels,
            unit="seconds",
        )
        for p in overlay.peers():
            host, port = p.get("host"), p.get("port")
            address = f"[{host}]:{port}" if ":" in str(host) else f"{host}:{port}"
            key = [str(p.get("node_id", "")), address]
            rtt_ms = p.get("rtt_ms")
            if isinstance(rtt_ms, int | float) and not isinstance(rtt_ms, bool) and rtt_ms >= 0:
                rtt.add_metric(key, rtt_ms / 1000.0)
            ago = p.get("last_seen_s")
            if isinstance(ago, int | float) and not isinstance(ago, bool):
                seen.add_metric(key, max(0.0, float(ago)))
        yield from (rtt, seen)

    def _notifications(self) -> Iterator[Metric]:
        service = getattr(self.agent, "notifications", None)
        if service is None:
            return
        counters = service.queue.counters()
        targets = sorted(set(service.targets) | set(counters))
        pending = GaugeMetricFamily(
            PREFIX + "notifications_pending",
            "Notifications waiting to be delivered to the target.",
            labels=["target"],
        )
        for target in targets:
            pending.add_metric([target], service.queue.pending(target))
        yield pending
        for name in NOTIFY_COUNTERS:
            family = CounterMetricFamily(
                PREFIX + f"notifications_{name}",
                f"Notifications {name} for the target (kept across restarts).",
                labels=["target"],
            )
            for target in targets:
                family.add_metric([target], _count(counters.get(target, {}).get(name, 0)))
            yield family
        yield CounterMetricFamily(
            PREFIX + "notification_events_seen",
            "Trigger events the notification service received.",
            value=_count(getattr(service, "events_seen", 0)),
        )
        yield CounterMetricFamily(
            PREFIX + "notification_events_ignored",
            "Trigger events of a kind not configured to notify.",
            value=_count(getattr(service, "events_ignored", 0)),
        )

    def _distributed(self) -> Iterator[Metric]:
        mediator = getattr(self.agent, "mediator", None)
        module = mediator.modules.get("distributed") if mediator is not None else None
        if module is None:
            return
        guard = getattr(module, "guard", None)
        if guard is not None:
            family = CounterMetricFamily(
                PREFIX + "guard_requests",
                "Peer test requests the guard admitted or refused, by outcome and reason.",
                labels=["outcome", "reason"],
            )
            for key, value in sorted(dict(guard.counters).items()):
                outcome, _, reason = key.partition("_")
                if outcome in ("admitted", "refused") and reason:
                    family.add_metric([outcome, reason], _count(value))
            yield family
        packages = getattr(module, "packages", None)
        trust = getattr(packages, "trust", None) if packages is not None else None
        if trust is not None:
            family = CounterMetricFamily(
                PREFIX + "trust_packages",
                "Module packages verified or rejected, by reason.",
                labels=["outcome", "reason"],
            )
            for key, value in sorted(dict(trust.counters).items()):
                if key == "verified":
                    family.add_metric(["verified", ""], _count(value))
                elif key.startswith("rejected_"):
                    family.add_metric(["rejected", key[len("rejected_") :]], _count(value))
            yield family

    def _xbac(self) -> Iterator[Metric]:
        service = getattr(self.agent, "xbac", None)
        if service is None:
            return
        st = service.status()
        yield InfoMetricFamily(
            PREFIX + "xbac",
            "This agent's role and group in RTT prediction (dnaXbacRole, dnaXbacGroup).",
            value={
                "role": str(st.get("role", "")),
                "group": str(st.get("group", "")),
                "mode": str(st.get("mode", "")),
            },
        )
        by_source = CounterMetricFamily(
            PREFIX + "xbac_measurements",
            "RTT measurements the prediction service kept, by source; "
            "their sum is dnaXbacMeasurements.",
            labels=["source"],
        )
        for source, n in sorted((st.get("measurements_by_source") or {}).items()):
            by_source.add_metric([source], _count(n))
        yield by_source
        yield CounterMetricFamily(
            PREFIX + "xbac_measurements_rejected",
            "RTT measurements refused as malformed or out of range.",
            value=_count(st.get("measurements_rejected", 0)),
        )
        predictions = CounterMetricFamily(
            PREFIX + "xbac_predictions",
            "RTT prediction requests, by whether a prediction could be given "
            "(dnaXbacPredictionsAnswered, dnaXbacPredictionsUnanswered).",
            labels=["answered"],
        )
        predictions.add_metric(["true"], _count(st.get("predictions_answered", 0)))
        predictions.add_metric(["false"], _count(st.get("predictions_unanswered", 0)))
        yield predictions
        yield CounterMetricFamily(
            PREFIX + "xbac_quality_reports",
            "Reports comparing a prediction with a later measurement.",
            value=_count(st.get("quality_reports", 0)),
        )
        yield GaugeMetricFamily(
            PREFIX + "xbac_group_members",
            "Members of this agent's prediction group (dnaXbacMembers).",
            value=_count(st.get("members", 0)),
        )
        yield GaugeMetricFamily(
            PREFIX + "xbac_clusters",
            "Clusters of remote hosts this agent keeps (dnaXbacClusters).",
            value=_count(st.get("clusters", 0)),
        )

    def _dts(self) -> Iterator[Metric]:
        service = getattr(self.agent, "dts", None)
        if service is None:
            return
        local = service.local()
        campaigns = list(local.get("campaigns") or [])
        yield CounterMetricFamily(
            PREFIX + "dts_probes_sent",
            "Traceroute probes this agent sent for trace campaigns.",
            value=_count(local.get("probes_sent", 0)),
        )
        yield CounterMetricFamily(
            PREFIX + "dts_probes_refused",
            "Probes refused by the probing limits or the deny list.",
            value=_count(local.get("probes_refused", 0)),
        )
        yield GaugeMetricFamily(
            PREFIX + "dts_campaigns_joined",
            "Trace campaigns this agent takes part in.",
            value=len(campaigns),
        )
        labels = ["campaign"]
        done = CounterMetricFamily(
            PREFIX + "dts_chunks_done", "Chunks of targets this agent traced.", labels=labels
        )
        records = CounterMetricFamily(
            PREFIX + "dts_records", "Traceroute records this agent stored.", labels=labels
        )
        errors = CounterMetricFamily(
            PREFIX + "dts_errors", "Errors of this agent in the campaign.", labels=labels
        )
        for c in campaigns:
            name = [str(c.get("campaign", ""))]
            done.add_metric(name, _count(c.get("chunks_done", 0)))
            records.add_metric(name, _count(c.get("records", 0)))
            errors.add_metric(name, _count(c.get("errors", 0)))
        yield from (done, records, errors)

    def _control(self) -> Iterator[Metric]:
        api = getattr(self.agent, "api", None)
        if api is None:
            return
        yield CounterMetricFamily(
            PREFIX + "control_requests",
            "Control API requests answered (metrics and dashboard files not included).",
            value=_count(getattr(api, "requests", 0)),
        )
        yield CounterMetricFamily(
            PREFIX + "control_errors",
            "Control API requests answered with an error.",
            value=_count(getattr(api, "errors", 0)),
        )


def make_registry(agent: Any, clock: Any | None = None) -> CollectorRegistry:
    """A registry holding only the agent's collector (no process-global state)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(AgentCollector(agent, clock))
    return registry


class MetricsResource(resource.Resource):
    """``GET /metrics``: the registry in the format the client accepts."""

    isLeaf = True
    log = Logger()

    def __init__(self, registry: CollectorRegistry) -> None:
        super().__init__()
        self.registry = registry

    def render(self, request: server.Request) -> bytes:
        """GET and HEAD only."""
        if request.method not in (b"GET", b"HEAD"):
            request.setResponseCode(405)
            request.setHeader(b"allow", b"GET, HEAD")
            request.setHeader(b"content-type", b"text/plain; charset=utf-8")
            return b"only GET and HEAD are allowed here\n"
        return super().render(request)  # type: ignore[no-any-return]

    def render_GET(self, request: server.Request) -> bytes:  # noqa: N802 (Twisted's name)
        """Encode every metric; OpenMetrics when ``Accept`` asks for it."""
        accept = (request.getHeader(b"accept") or b"").decode("latin-1")
        encoder, content_type = choose_encoder(accept)
        try:
            body: bytes = encoder(self.registry)
        except Exception:
            self.log.failure("encoding metrics failed")
            request.setResponseCode(500)
            request.setHeader(b"content-type", b"text/plain; charset=utf-8")
            return b"internal error: encoding metrics failed (see the agent log)\n"
        request.setHeader(b"content-type", content_type.encode("ascii"))
        request.setHeader(b"cache-control", b"no-store")
        request.setHeader(b"x-content-type-options", b"nosniff")
        return body

    def render_HEAD(self, request: server.Request) -> bytes:  # noqa: N802
        """Same headers as GET; Twisted drops the body."""
        return self.render_GET(request)
