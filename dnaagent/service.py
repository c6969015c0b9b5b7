"""The agent's service tree: everything ``twistd dnaagent`` runs.

:class:`AgentService` opens the state directory and the results store, loads
the test modules into the Mediator, schedules them when the configuration
says so, and serves the control API on loopback. Everything that can fail
because of the host (state directory not writable, port taken) fails in
:meth:`AgentService.prepare`, before the reactor runs, with one clear line.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Sequence
from typing import Any

from twisted.application.service import MultiService
from twisted.internet import defer
from twisted.internet.error import CannotListenError
from twisted.internet.interfaces import IListeningPort
from twisted.logger import Logger

from dnaagent import __version__
from dnaagent.config import CONTROL_FILE, Config
from dnaagent.control.agent_routes import install_agent_routes
from dnaagent.control.api import JsonApi, make_site
from dnaagent.control.dashboard_routes import control_root, install_dashboard_routes
from dnaagent.control.distributed_routes import install_distributed_routes
from dnaagent.control.overlay_routes import install_overlay_routes
from dnaagent.control.trace_routes import install_trace_routes
from dnaagent.control.xbac_routes import install_xbac_routes
from dnaagent.dts.service import CampaignService, build_campaign_service
from dnaagent.errors import DnaAgentError, StoreError
from dnaagent.mediator.interface import ITestModule
from dnaagent.mediator.mediator import Mediator
from dnaagent.mediator.scheduler import Scheduler
from dnaagent.mediator.store import ResultsStore
from dnaagent.mediator.triggers import StatusChange, Threshold, Triggers
from dnaagent.modules.registry import load_modules
from dnaagent.overlay.node import OverlayNode
from dnaagent.overlay.service import OverlayService
from dnaagent.snmp.agentx.subagent import AgentxSubagent
from dnaagent.snmp.notify.service import NotificationService
from dnaagent.snmp.service import SnmpService
from dnaagent.xbac.service import XbacService, own_address


class AgentService(MultiService):
    """The root service of one agent.

    ``modules`` replaces the built-in test modules (for tests and embedding).
    """

    log = Logger()

    def __init__(
        self, cfg: Config, reactor: Any, modules: Sequence[ITestModule] | None = None
    ) -> None:
        super().__init__()
        self._modules = modules
        self.config = cfg
        self.reactor = reactor
        self.state_dir = os.path.abspath(cfg.agent.state_dir)
        self.started_at: float | None = None
        self.store: ResultsStore | None = None
        self.triggers = Triggers(
            [StatusChange(), *(Threshold.parse(t) for t in cfg.triggers.thresholds)]
        )
        self.mediator: Mediator | None = None
        self.scheduler: Scheduler | None = None
        self.api = JsonApi()
        self.control_port: IListeningPort | None = None
        self.overlay_service: OverlayService | None = None
        self.overlay: OverlayNode | None = None
        self.snmp: SnmpService | None = None
        self.notifications: NotificationService | None = None
        self.agentx: AgentxSubagent | None = None
        self.dts: CampaignService | None = None
        self.xbac: XbacService | None = None

    def prepare(self) -> None:
        """Open state, load modules and build every child service.

        Binds the control port, the overlay's UDP sockets and the SNMP
        agent's sockets before the reactor runs, so that a taken port or an
        unwritable state directory is one clear line at start. Raises
        :class:`DnaAgentError` with an operator-readable message.
        """
        try:
            os.makedirs(self.state_dir, mode=0o750, exist_ok=True)
        except OSError as e:
            raise StoreError(f"cannot create state directory {self.state_dir}: {e.strerror}") from e
        if not os.access(self.state_dir, os.W_OK | os.X_OK):
            raise StoreError(f"state directory {self.state_dir} is not writable")
        self.store = ResultsStore(
            os.path.join(self.state_dir, "results.sqlite"),
            retention_days=self.config.store.retention_days,
            max_rows=self.config.store.max_rows,
        )
        self.mediator = Mediator(
            self.reactor,
            self.store,
            self.triggers,
            default_timeout=self.config.mediator.test_timeout,
            max_parallel=self.config.mediator.max_parallel,
        )
        modules = self._modules
        if modules is None:
            modules = load_modules(self.config, self.reactor, self)
        for module in modules:
            self.mediator.register(module)
        if self.config.schedule.enabled:
            for name in self.config.schedule.modules:
                self.mediator.module(name)  # unknown name: clear error now
            self.scheduler = Scheduler(
                self.mediator,
                self.reactor,
                self.config.schedule.modules,
                self.config.schedule.interval,
                self.config.schedule.jitter,
            )
            self.scheduler.setServiceParent(self)
        # The operator's port first: a second agent started by mistake is
        # told about the control port before anything else.
        if self.config.control.enabled:
            self._listen_control()
        if self.config.overlay.enabled:
            self.overlay_service = OverlayService(self.config.overlay, self.reactor, self.state_dir)
            self.overlay_service.prepare()
            self.overlay_service.setServiceParent(self)
            self.overlay = self.overlay_service.node
            for module in modules:
                attach = getattr(module, "attach", None)
                if attach is not None:
                    attach(self.overlay)  # the distributed module serves its peers
            if self.config.dts.enabled:
                # Trace campaigns live in the overlay DHT; nothing is probed until
                # an operator joins one.
                self.dts = build_campaign_service(self.config, self.reactor, self.overlay)
                self.dts.setServiceParent(self)
        if self.config.xbac.enabled:
            ov = self.config.overlay
            self.xbac = XbacService(
                self.config.xbac,
                self.reactor,
                self.overlay,
                join_wait=30.0 if self.overlay and (ov.seeds or ov.discovery) else 0.0,
                host_id=own_address(ov.listen_ipv4, ov.listen_ipv6) if self.overlay else None,
            )
            self.xbac.setServiceParent(self)
        if self.config.snmp.enabled or self.config.agentx.enabled:
            # One MIB tree and write registry, served by the embedded agent
            # and/or the AgentX subagent.
            self.snmp = SnmpService(self, self.config.snmp)
            self.snmp.prepare()
            self.snmp.setServiceParent(self)
        if self.config.agentx.enabled:
            assert self.snmp is not None
            self.agentx = AgentxSubagent(
                self.config.agentx, self.reactor, self.snmp.tree, self.snmp.writables
            )
            self.agentx.setServiceParent(self)
        engine_id = self.config.snmp.engine_id.lower().removeprefix("0x")
        # Created after SnmpService.prepare(): both read the engine ID it keeps.
        self.notifications = NotificationService(
            self.config.notifications,
            self.reactor,
            self.triggers,
            self.state_dir,
            uptime=lambda: time.time() - (self.started_at or time.time()),
            engine_id=bytes.fromhex(engine_id) if engine_id else None,
        )
        self.notifications.setServiceParent(self)
        install_agent_routes(self.api, self)
        install_overlay_routes(self.api, self)
        install_distributed_routes(self.api, self)
        install_trace_routes(self.api, self)
        install_dashboard_routes(self.api, self)
        install_xbac_routes(self.api, self)

    def _listen_control(self) -> None:
        host, port = self.config.control.host, self.config.control.port
        try:
            # The JSON API, the web dashboard and /metrics share the listener.
            site = make_site(control_root(self.api, self))
            self.control_port = self.reactor.listenTCP(port, site, interface=host)
        except CannotListenError as e:
            reason = getattr(e.socketError, "strerror", None) or str(e.socketError)
            raise DnaAgentError(
                f"control API cannot listen on {host}:{port}: {reason} "
                "(another dnaagent running? choose another with --control-port)"
            ) from None

    def _write_control_file(self, host: str, port: int) -> None:
        """Tell dnactl where the API is (useful with --control-port 0)."""
        path = os.path.join(self.state_dir, CONTROL_FILE)
        tmp = path + ".tmp"
        with open(tmp, "w") as f:
            json.dump({"host": host, "port": port, "pid": os.getpid()}, f)
        os.replace(tmp, path)

    def control_url(self) -> str | None:
        """The base URL of the control API, once it listens."""
        if self.control_port is None:
            return None
        addr = self.control_port.getHost()
        host = f"[{addr.host}]" if ":" in addr.host else addr.host
        return f"http://{host}:{addr.port}"

    def startService(self) -> None:
        """Start the children and say where the agent can be reached."""
        self.started_at = time.time()
        if self.control_port is not None:
            # Written only once everything is bound: a failed start leaves no
            # file pointing at an agent that is not there.
            address = self.control_port.getHost()
            self._write_control_file(self.config.control.host, address.port)
        super().startService()
        self.log.info(
            "dnaagent {version} started: state in {state}, control API at {url}, "
            "schedule {schedule}, overlay {overlay}",
            version=__version__,
            state=self.state_dir,
            url=self.control_url() or "off",
            schedule="on" if self.scheduler else "off",
            overlay=f"UDP {self.config.overlay.port}" if self.overlay else "off",
        )

    @defer.inlineCallbacks
    def stopService(self) -> Any:
        """Stop the children, close the control port and the store."""
        if self.xbac is not None and self.xbac.running:
            # First, while the overlay still runs: leaving the group hands entries over
            # and may withdraw the group's record from the DHT.
            try:
                yield self.xbac.stopService()
            except Exception:
                self.log.failure("XBAC failed to stop")
        try:
            yield super().stopService()
        except Exception:
            self.log.failure("a service failed to stop")
        if self.control_port is not None:
            try:
                yield self.control_port.stopListening()
            except Exception:
                self.log.failure("closing the control API failed")
            try:
                os.unlink(os.path.join(self.state_dir, CONTROL_FILE))
            except OSError:
                pass
        if self.store is not None:
            self.store.close()
            self.store = None

    def status(self) -> dict[str, Any]:
        """What ``dnactl status`` shows."""
        assert self.mediator is not None
        latest = self.mediator.latest()
        summary: dict[str, int] = {"ok": 0, "warning": 0, "error": 0, "skipped": 0}
        for r in latest:
            summary[r.status.value] += 1
        now = time.time()
        schedule: dict[str, Any] = {"enabled": self.scheduler is not None}
        if self.scheduler is not None:
            schedule.update(
                modules=self.scheduler.modules,
                interval=self.scheduler.interval,
                jitter=self.scheduler.jitter,
                next_run_in={
                    m: max(0.0, t - self.reactor.seconds())
                    for m, t in self.scheduler.next_runs().items()
                },
                runs=self.scheduler.runs,
                failures=self.scheduler.failures,
            )
        return {
            "agent": "dnaagent",
            "version": __version__,
            "pid": os.getpid(),
            "started": self.started_at,
            "uptime": now - self.started_at if self.started_at else 0.0,
            "state_dir": self.state_dir,
            "modules": sorted(self.mediator.modules),
            "schedule": schedule,
            "active_runs": [a.to_json() for a in self.mediator.active],
            "runs_completed": self.mediator.runs_completed,
            "latest": summary,
            "failing": [f"{r.module}.{r.test}" for r in latest if r.status.value == "error"],
            "results_stored": self.store.count() if self.store else 0,
            "notifications": self.notifications.status() if self.notifications else None,
            "overlay": self.overlay_service.status()
            if self.overlay_service
            else {"enabled": False},
            "events_fired": self.triggers.fired,
            "xbac": self.xbac.status() if self.xbac else {"enabled": False},
        }
