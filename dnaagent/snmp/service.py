"""The SNMP side of the agent as one Twisted service.

:class:`SnmpService` owns the :class:`~dnaagent.snmp.tree.MibTree` both SNMP
front ends serve, the :class:`~dnaagent.snmp.writable.Writables` registry
(with the dnaTestRun handler), the :class:`MibUpdater` that fills the tree,
and, when ``[snmp] enabled`` is true, the embedded agent. The AgentX
subagent and the notification service use :attr:`SnmpService.tree` and
:attr:`SnmpService.writables` of the same instance.

Wiring (in :class:`dnaagent.service.AgentService`, after the Mediator exists)::

    self.snmp = SnmpService(self, self.config.snmp)
    self.snmp.prepare()            # binds UDP; DnaAgentError with one clear line
    self.snmp.setServiceParent(self)
"""

from __future__ import annotations

import asyncio
from typing import Any

from twisted.application.service import Service
from twisted.logger import Logger

from dnaagent.snmp import mib
from dnaagent.snmp.embedded import EmbeddedAgent
from dnaagent.snmp.instrumentation import MibUpdater
from dnaagent.snmp.settings import SnmpSection
from dnaagent.snmp.tree import MibTree
from dnaagent.snmp.writable import RunTestHandler, Writables
from dnaagent.snmp.xbac_mib import PredictTargetHandler


def asyncio_loop(reactor: Any) -> asyncio.AbstractEventLoop | None:
    """The asyncio loop driving ``reactor``, or None if it is not the asyncio reactor."""
    loop = getattr(reactor, "_asyncioEventloop", None)
    return loop if isinstance(loop, asyncio.AbstractEventLoop) else None


class SnmpService(Service):
    """MIB tree, updater, write handlers and the embedded SNMP agent of ``agent``.

    ``agent`` is the :class:`~dnaagent.service.AgentService` (its
    ``reactor``, ``state_dir``, ``mediator``, ``store``, ``scheduler``,
    ``started_at`` and, when present, ``overlay`` are read).
    """

    log = Logger()
    name = "snmp"  # type: ignore[assignment]

    def __init__(
        self,
        agent: Any,
        settings: SnmpSection | None = None,
        tree: MibTree | None = None,
        writables: Writables | None = None,
    ) -> None:
        self.agent = agent
        self.settings = settings if settings is not None else SnmpSection()
        self.tree = tree if tree is not None else MibTree()
        self.writables = writables if writables is not None else Writables()
        self.run_handler = RunTestHandler(agent, self.tree)
        self.writables.register(mib.DNA_TEST_RUN, self.run_handler)
        self.predict_handler = PredictTargetHandler(agent, self.tree)
        self.writables.register(mib.DNA_XBAC_PREDICT_TARGET, self.predict_handler)
        self.updater = MibUpdater(
            self.tree, agent, agent.reactor, interval=self.settings.update_interval
        )
        self.embedded: EmbeddedAgent | None = None

    def prepare(self) -> None:
        """Bind the embedded agent's sockets (when enabled); DnaAgentError if it cannot."""
        if not self.settings.enabled:
            return
        loop = asyncio_loop(self.agent.reactor)
        if loop is None:
            self.log.warn(
                "the embedded SNMP agent needs Twisted's asyncio reactor; it is not started"
            )
            return
        self.embedded = EmbeddedAgent(
            self.settings,
            self.tree,
            self.writables,
            self.agent.state_dir,
            self.agent.reactor,
            loop=loop,
        )
        self.embedded.listen()

    @property
    def addresses(self) -> list[tuple[str, int]]:
        """Where the embedded agent listens (empty when it does not)."""
        return list(self.embedded.addresses) if self.embedded is not None else []

    def startService(self) -> None:
        """Start filling the tree."""
        super().startService()
        self.updater.start()

    def stopService(self) -> None:
        """Stop the updater and close the agent's sockets."""
        super().stopService()
        self.updater.stop()
        if self.embedded is not None:
            self.embedded.stop()
