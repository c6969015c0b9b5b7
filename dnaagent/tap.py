"""``twistd dnaagent``: command-line options and the service maker.

Every configuration key is also an option ``--SECTION-KEY VALUE`` that
overrides the configuration file, e.g. ``--control-port 4081`` or
``--local-well-known-hosts 192.0.2.1,192.0.2.2``. Values are validated when
the options are parsed; a bad one names its key.

pysnmp 7 is asyncio-only, so the agent runs on Twisted's asyncio reactor:
:func:`makeService` installs it when no reactor is installed yet and refuses
with a clear message when another one already is.
"""

from __future__ import annotations

import sys
from typing import Any

from twisted.application.service import IService
from twisted.python import usage

from dnaagent import __version__, config
from dnaagent.errors import ConfigError, DnaAgentError


class ConfigUsageError(usage.UsageError):
    """A configuration value (file or command line) is bad."""


def _config_parameters() -> list[list[Any]]:
    params: list[list[Any]] = []
    for info in config.keys():
        default = info.default
        if isinstance(default, list):
            shown = ",".join(default) or "(empty)"
        elif isinstance(default, bool):
            shown = "true" if default else "false"
        else:
            shown = str(default) if default != "" else "(empty)"
        params.append([info.option, None, None, f"{info.help} [{info.dotted}, default: {shown}]"])
    return params


class AgentOptions(usage.Options):
    """Options of the agent; raises :class:`ConfigUsageError` on a bad value."""

    synopsis = "[options]"
    longdesc = (
        "Run the Distributed Network Agent. Configuration comes from a TOML file "
        f"(default {config.DEFAULT_CONFIG_PATH}; the embedded defaults are used when it "
        "does not exist), and every key can be overridden here as --SECTION-KEY VALUE. "
        "Lists are comma-separated, booleans true/false. The built-in defaults send "
        "nothing off the machine: scheduled tests and discovery are off until configured."
    )
    optParameters = [
        ["config", "c", None, f"configuration file [default: {config.DEFAULT_CONFIG_PATH}]"],
        ["state-dir", "d", None, "directory for state (same as --agent-state-dir)"],
        *_config_parameters(),
    ]
    optFlags = [["print-config", None, "print the effective configuration as TOML and exit"]]

    def __init__(self) -> None:
        super().__init__()
        self.config: config.Config | None = None

    def opt_version(self) -> None:
        """Print the version and exit."""
        print(f"dnaagent {__version__}")
        raise SystemExit(0)

    def postOptions(self) -> None:
        """Load and validate the configuration, or raise ConfigUsageError."""
        overrides: dict[str, Any] = {}
        for info in config.keys():
            value = self.get(info.option)
            if value is not None:
                overrides[info.dotted] = value
        if self["state-dir"] is not None:
            overrides["agent.state_dir"] = self["state-dir"]
        path = self["config"]
        try:
            self.config = config.load(
                path or config.DEFAULT_CONFIG_PATH, overrides, must_exist=path is not None
            )
        except ConfigError as e:
            raise ConfigUsageError(f"configuration error: {e}") from None
        if self["print-config"]:
            print(config.render(self.config), end="")
            raise SystemExit(0)


class Options(AgentOptions):
    """:class:`AgentOptions` as ``twistd dnaagent`` uses them.

    twistd answers a usage error with its whole help text; a configuration
    error is better served by the one line that names the bad key.
    """

    def postOptions(self) -> None:
        """Like :meth:`AgentOptions.postOptions`, exiting with one line on a bad value."""
        try:
            super().postOptions()
        except ConfigUsageError as e:
            sys.stderr.write(f"dnaagent: {e}\n")
            raise SystemExit(1) from None


def install_reactor() -> Any:
    """Install Twisted's asyncio reactor, or check that it is the one installed.

    Raises :class:`ConfigUsageError` when another reactor is already running.
    """
    if "twisted.internet.reactor" not in sys.modules:
        import asyncio

        from twisted.internet import asyncioreactor

        # The loop the reactor runs must also be the thread's current loop:
        # pysnmp asks asyncio.get_event_loop() for it.
        loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        asyncioreactor.install(loop)
    from twisted.internet import reactor
    from twisted.internet.asyncioreactor import AsyncioSelectorReactor

    if not isinstance(reactor, AsyncioSelectorReactor):
        raise ConfigUsageError(
            f"dnaagent needs Twisted's asyncio reactor but {type(reactor).__name__} is "
            "installed; start it with: twistd --reactor=asyncio dnaagent"
        )
    return reactor


def makeService(options: AgentOptions) -> IService:
    """Build the agent's service tree from parsed options.

    Problems of the host (state directory, control port) end the program with
    one line on stderr and exit status 1, before anything is started.
    """
    try:
        reactor = install_reactor()
    except ConfigUsageError as e:
        sys.stderr.write(f"dnaagent: {e}\n")
        raise SystemExit(1) from None
    from dnaagent.service import AgentService

    assert options.config is not None
    agent = AgentService(options.config, reactor)
    try:
        agent.prepare()
    except DnaAgentError as e:
        sys.stderr.write(f"dnaagent: {e}\n")
        raise SystemExit(1) from None
    return agent
