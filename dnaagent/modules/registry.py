"""The test modules an agent loads, built from its configuration."""

from __future__ import annotations

from typing import Any, cast

from dnaagent.config import Config
from dnaagent.mediator.interface import ITestModule


def load_modules(cfg: Config, reactor: Any) -> list[ITestModule]:
    """Every built-in test module, configured from ``cfg``."""
    from dnaagent.modules.local import make_local_module

    # zope.interface's @implementer is invisible to mypy without its plugin.
    return [cast(ITestModule, make_local_module(cfg.local, reactor))]
