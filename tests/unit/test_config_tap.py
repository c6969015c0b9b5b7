"""Configuration loading and the ``twistd dnaagent`` options."""

from __future__ import annotations

import tomllib

import pytest
from twisted.python import usage

from dnaagent import config
from dnaagent.errors import ConfigError
from dnaagent.tap import AgentOptions, ConfigUsageError, Options


def write(tmp_path, text: str):
    """Write a config file and return its path."""
    path = tmp_path / "dnaagent.toml"
    path.write_text(text)
    return path


def test_defaults_without_file_send_nothing_unasked(tmp_path) -> None:
    """A missing file gives the embedded defaults: no schedule, no probing, loopback API."""
    cfg = config.load(tmp_path / "absent.toml")
    assert cfg.schedule.enabled is False
    assert cfg.local.well_known_hosts == []
    assert cfg.control.host == "127.0.0.1"
    assert cfg.agent.state_dir == "/var/lib/dnaagent"


def test_file_values_are_typed(tmp_path) -> None:
    """Values from TOML arrive with the schema's types."""
    path = write(
        tmp_path,
        '[schedule]\nenabled = true\ninterval = 60\n[local]\nwell_known_hosts = ["192.0.2.1"]\n',
    )
    cfg = config.load(path)
    assert cfg.schedule.enabled is True
    assert cfg.schedule.interval == 60.0 and isinstance(cfg.schedule.interval, float)
    assert cfg.local.well_known_hosts == ["192.0.2.1"]


@pytest.mark.parametrize(
    ("text", "key", "fragment"),
    [
        ("[control]\nport = 70000\n", "control.port", "0 to 65535"),
        ("[control]\nport = 'x'\n", "control.port", "whole number"),
        ("[control]\nhost = '192.0.2.1'\n", "control.host", "loopback"),
        ("[control]\nhost = 'nohost'\n", "control.host", "IPv4 or IPv6"),
        ("[control]\nenabled = 'yes'\n", "control.enabled", "true or false"),
        ("[schedule]\njitter = 0.9\n", "schedule.jitter", "between 0 and 0.5"),
        ("[schedule]\nmodules = 'local'\n", "schedule.modules", "list of strings"),
        ("[local]\nwell_known_hosts = ['']\n", "local.well_known_hosts", "empty"),
        ("[local]\nping_timeout = true\n", "local.ping_timeout", "number"),
        ("[control]\nprot = 1\n", "control.prot", "unknown key"),
        ("[nope]\nx = 1\n", "nope", "unknown section"),
        ("control = 3\n", "control", "table"),
    ],
)
def test_bad_file_values_name_the_key(tmp_path, text, key, fragment) -> None:
    """Every kind of bad value raises ConfigError naming the key and the problem."""
    with pytest.raises(ConfigError) as info:
        config.load(write(tmp_path, text))
    assert info.value.key == key
    assert fragment in str(info.value)


def test_invalid_toml_is_one_clear_error(tmp_path) -> None:
    """A syntax error in the file names the file."""
    path = write(tmp_path, "[control\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        config.load(path)


def test_explicit_missing_file_is_an_error(tmp_path) -> None:
    """A file named by the operator must exist."""
    with pytest.raises(ConfigError, match="does not exist"):
        config.load(tmp_path / "absent.toml", must_exist=True)


def test_overrides_parse_text_and_win_over_file(tmp_path) -> None:
    """Command-line overrides are parsed from text and beat the file."""
    path = write(tmp_path, "[control]\nport = 5000\n")
    cfg = config.load(
        path,
        {
            "control.port": "5001",
            "schedule.enabled": "on",
            "local.well_known_hosts": "192.0.2.1, 192.0.2.2",
            "schedule.interval": "30",
        },
    )
    assert cfg.control.port == 5001
    assert cfg.schedule.enabled is True
    assert cfg.local.well_known_hosts == ["192.0.2.1", "192.0.2.2"]
    assert cfg.schedule.interval == 30.0


def test_render_round_trips() -> None:
    """The rendered TOML of a configuration loads back to the same values."""
    cfg = config.load(None, {"local.well_known_hosts": "192.0.2.9", "control.port": "4999"})
    data = tomllib.loads(config.render(cfg))
    assert data["local"]["well_known_hosts"] == ["192.0.2.9"]
    assert data["control"]["port"] == 4999
    assert tomllib.loads(config.render())["schedule"]["enabled"] is False


def test_every_key_has_an_option() -> None:
    """Each configuration key is an option of twistd dnaagent, with help."""
    opts = AgentOptions()
    names = {long for _, long, *_ in [(o[1], o[0]) for o in opts.optParameters]}
    for info in config.keys():
        assert info.option in names, info.option
        assert info.help


#: Values for keys whose check refuses the generic samples below.
SAMPLES = {
    "control-host": ("::1", "::1"),
    "triggers-thresholds": ("m.t.rtt_ms > 1", ["m.t.rtt_ms > 1"]),
    "overlay-seeds": ("192.0.2.1,[2001:db8::1]:4002", ["192.0.2.1", "[2001:db8::1]:4002"]),
    "overlay-role": ("stub", "stub"),
    "overlay-listen-ipv4": ("127.0.0.1", "127.0.0.1"),
    "overlay-listen-ipv6": ("", ""),
    "snmp-users": ("ops:SHA-256:authpass1:AES:privpass1", ["ops:SHA-256:authpass1:AES:privpass1"]),
    "snmp-engine-id": ("8000dead01", "8000dead01"),
    "snmp-listen": ("::1", ["::1"]),
    "notifications-trap-sinks": ("v2c:public@192.0.2.5", ["v2c:public@192.0.2.5"]),
    "notifications-inform-targets": (
        "v2c:public@[2001:db8::5]:1162",
        ["v2c:public@[2001:db8::5]:1162"],
    ),
    "notifications-events": ("test-failed", ["test-failed"]),
    "agentx-master": ("tcp:127.0.0.1:7050", "tcp:127.0.0.1:7050"),
    "agentx-subtrees": ("1.3.6.1.3.4001.2", ["1.3.6.1.3.4001.2"]),
    "distributed-services": ("tcp/80,udp/53", ["tcp/80", "udp/53"]),
    "distributed-deny": ("192.0.2.0/26,2001:db8:bad::/48", ["192.0.2.0/26", "2001:db8:bad::/48"]),
    "distributed-dns-proxy-address": ("127.0.0.2", "127.0.0.2"),
    "xbac-method": ("tcp", "tcp"),
    "dts-policy": ("each", "each"),
    "dts-protocol": ("icmp", "icmp"),
    "dts-monitor": ("mon-1", "mon-1"),
}


@pytest.mark.parametrize("info", list(config.keys()), ids=lambda i: i.option)
def test_each_option_overrides_its_key(tmp_path, info) -> None:
    """``--SECTION-KEY VALUE`` sets exactly that key."""
    if info.option in SAMPLES:
        text, expected = SAMPLES[info.option]
    elif info.type is bool:
        text, expected = ("false", False) if info.default else ("true", True)
    elif info.type is int:
        expected = info.default + 1
        text = str(expected)
    elif info.type is float:
        expected = info.default * 2
        text = repr(expected)
    elif info.type is list:
        text, expected = "alpha,beta", ["alpha", "beta"]
    else:
        text = expected = "value"
    opts = AgentOptions()
    opts.parseOptions(["--config", str(write(tmp_path, "")), f"--{info.option}", text])
    assert getattr(getattr(opts.config, info.section), info.name) == expected


def test_state_dir_option(tmp_path) -> None:
    """--state-dir sets agent.state_dir."""
    opts = AgentOptions()
    opts.parseOptions(["--config", str(write(tmp_path, "")), "--state-dir", str(tmp_path)])
    assert opts.config.agent.state_dir == str(tmp_path)


def test_bad_option_value_is_a_usage_error(tmp_path) -> None:
    """AgentOptions raise a UsageError naming the key."""
    opts = AgentOptions()
    with pytest.raises(ConfigUsageError, match="control.port"):
        opts.parseOptions(["--config", str(write(tmp_path, "")), "--control-port", "99999"])
    assert issubclass(ConfigUsageError, usage.UsageError)


def test_twistd_options_print_one_line_and_exit(tmp_path, capsys) -> None:
    """The twistd-facing Options exit 1 with one line on stderr naming the key."""
    opts = Options()
    with pytest.raises(SystemExit) as info:
        opts.parseOptions(["--config", str(write(tmp_path, "")), "--schedule-jitter", "abc"])
    assert info.value.code == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert "schedule.jitter" in err and "Traceback" not in err


def test_print_config_exits_with_toml(tmp_path, capsys) -> None:
    """--print-config prints the effective configuration and exits 0."""
    opts = AgentOptions()
    with pytest.raises(SystemExit) as info:
        opts.parseOptions(
            ["--config", str(write(tmp_path, "")), "--control-port", "4555", "--print-config"]
        )
    assert info.value.code == 0
    assert tomllib.loads(capsys.readouterr().out)["control"]["port"] == 4555


def test_version_option(capsys) -> None:
    """--version prints the version and exits 0."""
    with pytest.raises(SystemExit) as info:
        AgentOptions().parseOptions(["--version"])
    assert info.value.code == 0
    assert capsys.readouterr().out.startswith("dnaagent ")
