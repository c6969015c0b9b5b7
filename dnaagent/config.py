"""One typed configuration for the whole agent.

The configuration is read from a TOML file (``/etc/dnaagent/dnaagent.toml`` by
default) and every key can be overridden on the command line as
``--SECTION-KEY VALUE`` (for example ``--control-port 4080``). Every value is
validated when the agent starts; a bad one raises :class:`ConfigError` naming
the key, which the command line turns into one clear line for the operator.

The built-in defaults send nothing off the machine: link-local discovery,
scheduled tests and probing are off until a configuration turns them on.
"""

from __future__ import annotations

import dataclasses
import json
import os
import tomllib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from dnaagent import schema
from dnaagent.dts.settings import DtsSection
from dnaagent.errors import ConfigError
from dnaagent.modules.distributed.settings import DistributedSection
from dnaagent.overlay.section import OverlaySection
from dnaagent.schema import Check, key
from dnaagent.snmp.agentx.settings import AgentxSection
from dnaagent.snmp.notify.settings import NotifySection
from dnaagent.snmp.settings import SnmpSection
from dnaagent.xbac.settings import XbacSection

DEFAULT_CONFIG_PATH = "/etc/dnaagent/dnaagent.toml"
DEFAULT_STATE_DIR = "/var/lib/dnaagent"
# In the state directory: where the running agent's control API listens.
CONTROL_FILE = "control.json"


@dataclass
class AgentSection:
    """Where the agent keeps its state."""

    state_dir: str = key(DEFAULT_STATE_DIR, "directory for the results store and keys")


@dataclass
class ControlSection:
    """The local control API used by dnactl."""

    enabled: bool = key(True, "serve the control API")
    host: str = key("127.0.0.1", "loopback address of the control API", schema.loopback)
    port: int = key(4080, "TCP port of the control API (0 picks a free port)", schema.port)


@dataclass
class MediatorSection:
    """How the Mediator runs tests."""

    test_timeout: float = key(
        10.0, "seconds a test may run before it is stopped", schema.between(0.1, 3600)
    )
    max_parallel: int = key(
        0, "most tests of one run going at once (0: no limit)", schema.between(0, 1000)
    )


@dataclass
class ScheduleSection:
    """Autonomous runs of test modules by the Mediator."""

    enabled: bool = key(False, "run the modules below on a schedule (off: nothing is sent unasked)")
    modules: list[str] = key(["local"], "modules run on the schedule", schema.names)
    interval: float = key(
        300.0, "seconds between two scheduled runs of a module", schema.between(1, 86400 * 7)
    )
    jitter: float = key(
        0.1, "random share of the interval added or taken away", schema.between(0, 0.5)
    )


def _thresholds(v: list[str]) -> str | None:
    from dnaagent.mediator.triggers import Threshold

    for text in v:
        try:
            Threshold.parse(text)
        except ValueError as e:
            return str(e)
    return None


@dataclass
class TriggersSection:
    """Rules that turn results into events (and so into SNMP notifications)."""

    thresholds: list[str] = key(
        [],
        "numeric details watched: MODULE.TEST.DETAIL OP NUMBER (local.PingOwnIP.rtt_ms_max > 5)",
        _thresholds,
    )


@dataclass
class StoreSection:
    """The results store (SQLite in the state directory)."""

    retention_days: float = key(30.0, "days of result history kept", schema.between(0.001, 3650))
    max_rows: int = key(200_000, "most result rows kept", schema.between(100, 100_000_000))


@dataclass
class LocalSection:
    """The local test module."""

    nic: str = key("", "network interface tested (empty: the one of the default route)")
    well_known_hosts: list[str] = key(
        [], "hosts pinged by PingWellKnownHosts (empty: the test is skipped)", schema.names
    )
    well_known_failures: int = key(
        1, "unreachable well-known hosts that make PingWellKnownHosts fail", schema.between(1, 1000)
    )
    dns_lookup_name: str = key(
        ".", "name looked up by DNSConfiguration ('.' asks the resolver for the root NS)"
    )
    dns_reverse_lookup: bool = key(
        False, "DNSConfiguration also looks up the NIC's address in reverse"
    )
    ping_timeout: float = key(1.0, "seconds to wait for one ping reply", schema.between(0.05, 60))
    hosts_file: str = key("/etc/hosts", "hosts file checked by HostsFile")
    resolv_conf: str = key("/etc/resolv.conf", "resolver configuration read by DNSConfiguration")


@dataclass
class Config:
    """The agent's whole configuration; one attribute per TOML section."""

    agent: AgentSection = field(default_factory=AgentSection)
    control: ControlSection = field(default_factory=ControlSection)
    mediator: MediatorSection = field(default_factory=MediatorSection)
    schedule: ScheduleSection = field(default_factory=ScheduleSection)
    store: StoreSection = field(default_factory=StoreSection)
    triggers: TriggersSection = field(default_factory=TriggersSection)
    overlay: OverlaySection = field(default_factory=OverlaySection)
    snmp: SnmpSection = field(default_factory=SnmpSection)
    notifications: NotifySection = field(default_factory=NotifySection)
    agentx: AgentxSection = field(default_factory=AgentxSection)
    local: LocalSection = field(default_factory=LocalSection)
    distributed: DistributedSection = field(default_factory=DistributedSection)
    dts: DtsSection = field(default_factory=DtsSection)
    xbac: XbacSection = field(default_factory=XbacSection)

    def as_dict(self) -> dict[str, dict[str, Any]]:
        """Return the configuration as nested plain dictionaries."""
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class KeyInfo:
    """What the schema knows of one key: where it lives, its type and help."""

    section: str
    name: str
    type: type
    default: Any
    help: str
    check: Check | None

    @property
    def dotted(self) -> str:
        """The key as ``section.name``."""
        return f"{self.section}.{self.name}"

    @property
    def option(self) -> str:
        """The command-line option that overrides it, without dashes."""
        return f"{self.section}-{self.name}".replace("_", "-")


_TYPES = {"bool": bool, "int": int, "float": float, "str": str, "list[str]": list}


def keys() -> Iterator[KeyInfo]:
    """Yield every configuration key of the schema in declaration order."""
    for section in dataclasses.fields(Config):
        section_cls = section.default_factory  # type: ignore[misc]
        for f in dataclasses.fields(section_cls):  # type: ignore[arg-type]
            default = f.default if f.default is not dataclasses.MISSING else f.default_factory()  # type: ignore[misc]
            yield KeyInfo(
                section=section.name,
                name=f.name,
                type=_TYPES[str(f.type)],
                default=default,
                help=f.metadata["help"],
                check=f.metadata["check"],
            )


def _coerce(info: KeyInfo, value: Any, from_text: bool) -> Any:
    """Turn ``value`` into the key's type, or raise :class:`ConfigError`."""
    key = info.dotted
    t = info.type
    if from_text and isinstance(value, str):
        text = value.strip()
        if t is bool:
            lowered = text.lower()
            if lowered in ("1", "true", "yes", "on"):
                return True
            if lowered in ("0", "false", "no", "off"):
                return False
            raise ConfigError(key, f"must be true or false, not {value!r}")
        if t is int:
            try:
                return int(text)
            except ValueError:
                raise ConfigError(key, f"must be a whole number, not {value!r}") from None
        if t is float:
            try:
                return float(text)
            except ValueError:
                raise ConfigError(key, f"must be a number, not {value!r}") from None
        if t is list:
            return [part.strip() for part in text.split(",") if part.strip()]
        return value
    if t is bool:
        if not isinstance(value, bool):
            raise ConfigError(key, f"must be true or false, not {value!r}")
        return value
    if t is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(key, f"must be a whole number, not {value!r}")
        return value
    if t is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(key, f"must be a number, not {value!r}")
        return float(value)
    if t is list:
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise ConfigError(key, f"must be a list of strings, not {value!r}")
        return list(value)
    if not isinstance(value, str):
        raise ConfigError(key, f"must be a string, not {value!r}")
    return value


def _apply(config: Config, info: KeyInfo, value: Any, from_text: bool) -> None:
    value = _coerce(info, value, from_text)
    if info.check is not None:
        problem = info.check(value)
        if problem:
            raise ConfigError(info.dotted, problem)
    setattr(getattr(config, info.section), info.name, value)


def load(
    path: str | os.PathLike[str] | None = None,
    overrides: Mapping[str, Any] | None = None,
    *,
    must_exist: bool = False,
) -> Config:
    """Build a validated :class:`Config`.

    ``path`` is a TOML file; when it does not exist the embedded defaults are
    used unless ``must_exist`` is true. ``overrides`` maps ``section.name`` to
    values given on the command line (strings are parsed into the key's type).
    Raises :class:`ConfigError` naming the first bad key.
    """
    by_key = {info.dotted: info for info in keys()}
    sections = {info.section for info in by_key.values()}
    config = Config()
    if path is not None:
        try:
            with open(path, "rb") as f:
                data = tomllib.load(f)
        except FileNotFoundError:
            if must_exist:
                raise ConfigError(
                    "", f"configuration file {os.fspath(path)} does not exist"
                ) from None
            data = {}
        except PermissionError:
            raise ConfigError("", f"configuration file {os.fspath(path)} is not readable") from None
        except tomllib.TOMLDecodeError as e:
            raise ConfigError("", f"{os.fspath(path)} is not valid TOML: {e}") from None
        for section, body in data.items():
            if section not in sections:
                raise ConfigError(
                    section, f"unknown section (known: {', '.join(sorted(sections))})"
                )
            if not isinstance(body, dict):
                raise ConfigError(section, "must be a table ([section])")
            for name, value in body.items():
                info = by_key.get(f"{section}.{name}")
                if info is None:
                    known = sorted(i.name for i in by_key.values() if i.section == section)
                    raise ConfigError(
                        f"{section}.{name}",
                        f"unknown key (known in [{section}]: {', '.join(known)})",
                    )
                _apply(config, info, value, from_text=False)
    for dotted, value in (overrides or {}).items():
        info = by_key.get(dotted)
        if info is None:
            raise ConfigError(dotted, "unknown key")
        _apply(config, info, value, from_text=True)
    return config


def render(cfg: Config | None = None) -> str:
    """Return a commented TOML file with every key (of ``cfg``, else the defaults)."""
    values = (cfg or Config()).as_dict()
    title = "effective configuration" if cfg is not None else "every key with its built-in default"
    lines = [f"# dnaagent configuration: {title}.", ""]
    section = None
    for info in keys():
        if info.section != section:
            if section is not None:
                lines.append("")
            section = info.section
            lines.append(f"[{section}]")
        lines.append(f"# {info.help}")
        lines.append(f"{info.name} = {_toml_value(values[info.section][info.name])}")
    return "\n".join(lines) + "\n"


def dumps(sections: Mapping[str, Mapping[str, Any]]) -> str:
    """Write sections of keys (bool, number, string, list of strings) as TOML."""
    lines: list[str] = []
    for section, body in sections.items():
        lines.append(f"[{section}]")
        lines.extend(f"{name} = {_toml_value(value)}" for name, value in body.items())
        lines.append("")
    return "\n".join(lines)


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, str):
        return json.dumps(value)  # a JSON string is a valid TOML basic string
    raise TypeError(f"cannot write {value!r} as TOML")
