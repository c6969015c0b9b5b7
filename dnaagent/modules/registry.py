"""The test modules an agent loads, built from its configuration."""

from __future__ import annotations

from typing import Any, cast

from dnaagent.config import Config
from dnaagent.mediator.interface import ITestModule


def load_modules(cfg: Config, reactor: Any, agent: Any = None) -> list[ITestModule]:
    """Every built-in test module, configured from ``cfg``, and the signed extra ones.

    ``agent`` (the AgentService) lets the distributed module reach the overlay,
    the triggers and the state directory (where signed packages are kept).
    """
    from dnaagent.modules.local import make_local_module

    # zope.interface's @implementer is invisible to mypy without its plugin.
    modules: list[Any] = [make_local_module(cfg.local, reactor)]
    if cfg.distributed.enabled:
        from dnaagent.modules.distributed import make_distributed_module

        distributed = make_distributed_module(cfg.distributed, reactor, agent)
        modules.append(distributed)
        modules.extend(distributed.signed_modules(agent))
    return [cast(ITestModule, m) for m in modules]
