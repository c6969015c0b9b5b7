"""The test modules an agent loads, built from its configuration."""

from __future__ import annotations

from typing import Any

from dnaagent.config import Config
from dnaagent.mediator.interface import ITestModule


def load_modules(cfg: Config, reactor: Any) -> list[ITestModule]:
    """Every built-in test module, configured from ``cfg``."""
    from dnaagent.modules.local import make_local_module

    return [make_local_module(cfg.local, reactor)]
