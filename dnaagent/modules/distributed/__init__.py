"""Distributed tests: tests an agent runs together with other agents (seed 000 §2.3).

:func:`make_distributed_module` builds the
:class:`~dnaagent.modules.distributed.module.DistributedModule` and the
:class:`~dnaagent.modules.distributed.handlers.PeerHandlers` that serve the
other agents' requests, both behind one :class:`~dnaagent.guard.Guard`.
Nothing is imported here at package import, so that the configuration can
read :mod:`~dnaagent.modules.distributed.settings` alone. See
``docs/distributed-tests.md``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from dnaagent.modules.distributed.module import DistributedModule
    from dnaagent.modules.distributed.settings import DistributedSection


def make_distributed_module(
    cfg: DistributedSection, reactor: Any, agent: Any = None
) -> DistributedModule:
    """The distributed module with real ping, traceroute and DNS, wired to ``agent``.

    ``agent`` (an :class:`~dnaagent.service.AgentService`, or None) gives the
    overlay node (``agent.overlay``, looked up at each test, so that it may
    be created after the module), the triggers, to which the
    ``fault-localized`` rule is added, and the state directory, where signed
    module packages are kept. The peer handlers are attached to the node
    with :meth:`DistributedModule.attach` once it exists; when
    ``agent.overlay`` is already set this happens here.
    """
    from dnaagent.measure.dns import UdpDnsClient
    from dnaagent.measure.ping import Pinger
    from dnaagent.measure.traceroute import ProcessTracer
    from dnaagent.modules.distributed import events
    from dnaagent.modules.distributed.module import DistributedModule
    from dnaagent.trust.loader import open_store

    def node() -> Any:
        return getattr(agent, "overlay", None)

    module = DistributedModule(
        cfg, reactor, Pinger(reactor), ProcessTracer(reactor), UdpDnsClient(reactor), node
    )
    if agent is not None:
        module.agent = agent
        events.install(agent.triggers)
        module.packages = open_store(agent.state_dir)
        if getattr(agent, "overlay", None) is not None:
            module.attach(agent.overlay)
    return module
