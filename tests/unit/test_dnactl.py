"""dnactl: argument parsing, output, exit codes and errors."""

from __future__ import annotations

import datetime
import json
import socket
import tomllib

import pytest

from dnaagent.control import render
from dnaagent.control.dnactl import (
    EXIT_TEST_FAILED,
    EXIT_UNAVAILABLE,
    EXIT_USAGE,
    UsageError,
    _exit_for,
    main,
    parse_params,
    parse_since,
    parse_tests,
)


@pytest.mark.parametrize(
    ("text", "ago"), [("30s", 30), ("10m", 600), ("2h", 7200), ("1d", 86400), ("1.5 h", 5400)]
)
def test_since_relative(text, ago) -> None:
    """Durations are taken as 'that long ago'."""
    assert parse_since(text, now=1_000_000) == 1_000_000 - ago


def test_since_absolute() -> None:
    """Epoch seconds and ISO dates are accepted."""
    assert parse_since("12345.5") == 12345.5
    when = datetime.datetime(2026, 11, 23, 8, 0, tzinfo=datetime.UTC)
    assert parse_since("2026-11-23T08:00+00:00") == when.timestamp()


def test_since_rejects_nonsense() -> None:
    """An unreadable --since is a usage error that shows accepted forms."""
    with pytest.raises(UsageError, match="10m"):
        parse_since("yesterday-ish")


def test_tests_and_params() -> None:
    """--tests splits on commas; --param and --nic build the parameters."""
    assert parse_tests("NICStatus, PingOwnIP,") == ["NICStatus", "PingOwnIP"]
    assert parse_tests(None) is None
    with pytest.raises(UsageError):
        parse_tests(" , ")
    assert parse_params(["a=1", "b=x=y"], "eth0") == {"a": "1", "b": "x=y", "nic": "eth0"}
    with pytest.raises(UsageError):
        parse_params(["novalue"], None)


def test_exit_code_reflects_errors() -> None:
    """A run with an error result exits 1; warnings and skips do not."""
    assert _exit_for([{"status": "ok"}, {"status": "skipped"}, {"status": "warning"}]) == 0
    assert _exit_for([{"status": "ok"}, {"status": "error"}]) == EXIT_TEST_FAILED


def free_port() -> int:
    """A loopback TCP port nobody listens on."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("command", [["status"], ["modules"], ["results"], ["run", "local"]])
def test_agent_not_running_is_one_clear_line(command, capsys, tmp_path) -> None:
    """With no agent listening, dnactl says so in one line and exits 3."""
    api = f"http://127.0.0.1:{free_port()}"
    code = main(["--state-dir", str(tmp_path), "--api", api, *command])
    err = capsys.readouterr().err
    assert code == EXIT_UNAVAILABLE
    assert "not running" in err and err.count("\n") == 1 and "Traceback" not in err


def test_bad_config_file_exits_2(tmp_path, capsys) -> None:
    """A bad configuration file is a usage error naming the key."""
    cfg = tmp_path / "c.toml"
    cfg.write_text("[control]\nport = -1\n")
    assert main(["--config", str(cfg), "status"]) == EXIT_USAGE
    assert "control.port" in capsys.readouterr().err


def test_config_defaults_prints_toml(capsys) -> None:
    """dnactl config --defaults prints loadable TOML."""
    assert main(["config", "--defaults"]) == 0
    assert tomllib.loads(capsys.readouterr().out)["control"]["port"] == 4080


def test_no_command_prints_help(capsys) -> None:
    """dnactl alone shows the commands and exits 2."""
    assert main([]) == EXIT_USAGE
    assert "run" in capsys.readouterr().out


def test_results_table_aligns_and_wraps() -> None:
    """The results table has a header, one row per test, and a summary line."""
    results = [
        {
            "test": "NICStatus",
            "status": "ok",
            "duration": 0.004,
            "message": "eth0 is up",
            "started": 0,
        },
        {
            "test": "IPConfiguration",
            "status": "error",
            "duration": 1.5,
            "message": "no address " * 30,
            "started": 0,
        },
    ]
    text = render.results_table(results, colour=False)
    lines = text.splitlines()
    assert lines[0].split() == ["TEST", "STATUS", "TIME", "MESSAGE"]
    assert lines[1].startswith("NICStatus") and "OK" in lines[1] and "4 ms" in lines[1]
    assert len(lines) > 3  # the long message wrapped
    assert "\x1b[" not in text
    assert "\x1b[31;1mERROR" in render.results_table(results, colour=True)
    assert render.summary_line(results, colour=False) == "2 tests: 1 ok, 1 error"


def test_duration_format() -> None:
    """Durations read naturally at every scale."""
    assert [render.duration(s) for s in (0.0123, 1.25, 125, 7300, 200000)] == [
        "12 ms",
        "1.2 s",
        "2 min",
        "2 h 1 min",
        "2 d 7 h",
    ]


def test_json_flag_is_machine_output(capsys, monkeypatch) -> None:
    """--json prints the API's data as JSON, not a table."""
    from dnaagent.control import dnactl

    class FakeClient:
        def __init__(self, base, timeout):
            pass

        def get(self, path, **query):
            return {
                "results": [
                    {"test": "A", "status": "ok", "message": "m", "duration": 0, "started": 0}
                ]
            }

    monkeypatch.setattr(dnactl, "Client", FakeClient)
    assert main(["--api", "http://127.0.0.1:1", "results", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)[0]["test"] == "A"


def test_connection_options_after_the_command() -> None:
    """--config, --state-dir, --api and --timeout work before or after the command."""
    from dnaagent.control.dnactl import build_parser

    parser = build_parser()
    after = parser.parse_args(
        ["run", "local", "--config", "c.toml", "--api", "http://x", "--timeout", "5"]
    )
    assert (after.config, after.api, after.timeout) == ("c.toml", "http://x", 5.0)
    before = parser.parse_args(["--state-dir", "/s", "--timeout", "7", "status"])
    assert (before.state_dir, before.timeout, before.config) == ("/s", 7.0, None)
    both = parser.parse_args(["--api", "http://a", "results", "--api", "http://b"])
    assert both.api == "http://b"
