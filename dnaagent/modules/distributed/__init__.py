"""Distributed tests: tests an agent runs together with other agents (seed 000 §2.3).

:func:`make_distributed_module` builds the :class:`DistributedModule` and the
:class:`PeerHandlers` that serve the other agents' requests, both behind one
:class:`~dnaagent.guard.Guard`. See ``docs/distributed-tests.md``.
"""

from __future__ import annotations

from typing import Any

from dnaagent.modules.distributed.handlers import PeerHandlers
from dnaagent.modules.distributed.module import DistributedModule, DistributedRun
from dnaagent.modules.distributed.settings import DistributedSection

__all__ = [
    "DistributedModule",
    "DistributedRun",
    "DistributedSection",
    "PeerHandlers",
    "make_distributed_module",
]


def make_distributed_module(
    cfg: DistributedSection, reactor: Any, agent: Any = None
) -> DistributedModule:
    """The distributed module with real ping, traceroute and DNS, wired to ``agent``.

    ``agent`` (an :class:`~dnaagent.service.AgentService`, or None) gives the
    overlay node (``agent.overlay``, looked up at each test, so that it may
    be created after the module) and the triggers, to which the
    ``fault-localized`` rule is added. The peer handlers are attached to the
    node with :meth:`DistributedModule.attach` once it exists; when
    ``agent.overlay`` is already set this happens here.
    """
    from dnaagent.measure.dns import UdpDnsClient
    from dnaagent.measure.ping import Pinger
    from dnaagent.measure.traceroute import ProcessTracer
    from dnaagent.modules.distributed import events

    def node() -> Any:
        return getattr(agent, "overlay", None)

    module = DistributedModule(
        cfg, reactor, Pinger(reactor), ProcessTracer(reactor), UdpDnsClient(reactor), node
    )
    if agent is not None:
        from dnaagent.trust.loader import open_store

        events.install(agent.triggers)
        module.packages = open_store(agent.state_dir)
        if agent.overlay is not None:
            module.attach(agent.overlay)
    return module
