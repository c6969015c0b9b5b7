"""``dnactl``: the operator's command line for dnaagent.

It talks to the running agent's control API on loopback, or, with
``dnactl run MODULE --standalone``, runs a test module in-process without a
daemon. Human output is a table (coloured on a terminal); ``--json`` prints
machine output.

Exit status: 0 when everything asked for succeeded, 1 when a test ended in
error, 2 for a usage or configuration error, 3 when the agent cannot be
reached or refused the request.
"""

from __future__ import annotations

import argparse
import datetime
import json
import re
import sys
import time
from collections.abc import Sequence
from typing import Any

from dnaagent import __version__, config
from dnaagent.control import render
from dnaagent.control.client import Client, api_url
from dnaagent.control.module_cli import add_module_parser, cmd_module, rewrite_distributed_run
from dnaagent.control.predict_cli import PredictUsageError, add_predict_parser, cmd_predict
from dnaagent.control.trace_cli import add_trace_parser, cmd_trace
from dnaagent.errors import ConfigError, ControlError, DnaAgentError
from dnaagent.mediator.interface import InvalidParameters

EXIT_OK = 0
EXIT_TEST_FAILED = 1
EXIT_USAGE = 2
EXIT_UNAVAILABLE = 3

_RELATIVE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|m|min|h|d|w)\s*$")
_UNITS = {"s": 1, "m": 60, "min": 60, "h": 3600, "d": 86400, "w": 604800}


class UsageError(DnaAgentError, ValueError):
    """A command-line argument of dnactl is bad."""


def parse_since(text: str, now: float | None = None) -> float:
    """A point in time from ``10m``/``2h``/``1d`` ago, epoch seconds or ISO 8601."""
    now = time.time() if now is None else now
    m = _RELATIVE.match(text)
    if m:
        return now - float(m.group(1)) * _UNITS[m.group(2)]
    try:
        return float(text)
    except ValueError:
        pass
    try:
        when = datetime.datetime.fromisoformat(text.strip())
    except ValueError:
        raise UsageError(
            f"--since {text!r}: give a duration ago (30s, 10m, 2h, 1d), "
            "epoch seconds, or a date like 2026-11-23T08:00"
        ) from None
    if when.tzinfo is None:
        when = when.astimezone()
    return when.timestamp()


def parse_tests(text: str | None) -> list[str] | None:
    """``A,B`` into ``["A", "B"]``; None stays None (the default sequence)."""
    if text is None:
        return None
    names = [t.strip() for t in text.split(",") if t.strip()]
    if not names:
        raise UsageError("--tests needs at least one test name, e.g. --tests NICStatus,PingOwnIP")
    return names


def parse_params(pairs: Sequence[str], nic: str | None) -> dict[str, str]:
    """``--param k=v`` options (and ``--nic``) into a parameter mapping."""
    params: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise UsageError(f"--param {pair!r}: write it as NAME=VALUE")
        params[key.strip()] = value
    if nic is not None:
        params["nic"] = nic
    return params


def _add_connection_options(parser: argparse.ArgumentParser, *, top: bool) -> None:
    """Options naming the agent; on a command they override the ones before it."""
    # Below a command, defaults are suppressed so they do not overwrite what
    # was given before the command.
    default: Any = None if top else argparse.SUPPRESS
    parser.add_argument(
        "--config",
        metavar="FILE",
        default=default,
        help=f"agent configuration file (default {config.DEFAULT_CONFIG_PATH})",
    )
    parser.add_argument(
        "--state-dir", metavar="DIR", default=default, help="the agent's state directory"
    )
    parser.add_argument(
        "--api",
        metavar="URL",
        default=default,
        help="control API URL, e.g. http://127.0.0.1:4080",
    )
    parser.add_argument(
        "--timeout",
        type=float,
        default=60.0 if top else argparse.SUPPRESS,
        metavar="S",
        help="seconds to wait for the agent (60)",
    )


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of dnactl, with every command and its help."""
    parser = argparse.ArgumentParser(
        prog="dnactl",
        description="Control a dnaagent: show its state, run tests, read results.",
        epilog=(
            "The agent is found through --api, the DNACTL_API variable, the control.json "
            "file in its state directory, or the [control] section of the configuration. "
            "Exit status: 0 success, 1 a test failed, 2 usage error, 3 agent unreachable."
        ),
    )
    parser.add_argument("--version", action="version", version=f"dnactl {__version__}")
    _add_connection_options(parser, top=True)
    common = argparse.ArgumentParser(add_help=False)
    _add_connection_options(common, top=False)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    # Every command accepts the connection options after its name too.
    parents = [common]

    def json_flag(p: argparse.ArgumentParser) -> None:
        p.add_argument("--json", action="store_true", help="print JSON instead of a table")

    p = sub.add_parser("status", parents=parents, help="is the agent running; what it did last")
    json_flag(p)
    p = sub.add_parser(
        "modules", parents=parents, help="the test modules, their tests and dependencies"
    )
    json_flag(p)
    p = sub.add_parser(
        "run",
        parents=parents,
        help="run a test module now and show its results",
        description=(
            "Run the default sequence of MODULE (or the tests named with --tests; their "
            "dependencies are added) and print the results. A test runs only when all the "
            "tests it depends on succeeded; otherwise it is shown as skipped."
        ),
    )
    p.add_argument("module", help="module name, e.g. local (see dnactl modules)")
    p.add_argument(
        "--tests", metavar="A,B", help="comma-separated tests instead of the default sequence"
    )
    p.add_argument("--nic", metavar="IF", help="network interface to test (local module)")
    p.add_argument(
        "--param", action="append", default=[], metavar="NAME=VALUE", help="a module parameter"
    )
    p.add_argument(
        "--standalone",
        action="store_true",
        help="run in this process without a daemon (results are not stored)",
    )
    json_flag(p)
    p = sub.add_parser("results", parents=parents, help="result history kept by the agent")
    p.add_argument(
        "--since", metavar="T", help="only newer results: 10m, 2h, 1d, epoch or ISO date"
    )
    p.add_argument("--module", metavar="M", help="only this module")
    p.add_argument("--test", metavar="T", help="only this test")
    p.add_argument("--limit", type=int, default=200, metavar="N", help="at most N results (200)")
    p.add_argument("--latest", action="store_true", help="only the latest result of every test")
    json_flag(p)
    p = sub.add_parser(
        "peers", parents=parents, help="the overlay routing table: peers, addresses, RTT"
    )
    json_flag(p)
    p = sub.add_parser(
        "lookup",
        parents=parents,
        help="find an agent in the overlay by node ID",
        description="Look NODE_ID up in the overlay: whether that agent answers, and "
        "the agents closest to it.",
    )
    p.add_argument("node_id", help="40 hex digits (see dnactl status or dnactl peers)")
    json_flag(p)
    p = sub.add_parser(
        "dht",
        parents=parents,
        help="read or write a value in the overlay's DHT",
        description="Keys are names (hashed with SHA-1 into the 160-bit key space) or, "
        "with --hex, 40 hex digits. Values are text, or hex with --hex.",
    )
    dht = p.add_subparsers(dest="dht_command", metavar="ACTION", required=True)
    q = dht.add_parser("get", parents=parents, help="the values stored under KEY")
    q.add_argument("key")
    q.add_argument("--hex", action="store_true", help="KEY is 40 hex digits")
    json_flag(q)
    q = dht.add_parser("put", parents=parents, help="store VALUE under KEY")
    q.add_argument("key")
    q.add_argument("value")
    q.add_argument("--hex", action="store_true", help="KEY and VALUE are hex digits")
    q.add_argument("--ttl", type=float, metavar="S", help="seconds the value lives (default 1 day)")
    json_flag(q)
    add_module_parser(sub, parents)
    add_predict_parser(sub, parents)
    add_trace_parser(sub, parents)
    p = sub.add_parser("config", parents=parents, help="print the effective configuration as TOML")
    p.add_argument("--defaults", action="store_true", help="print the built-in defaults instead")
    return parser


def _load_config(args: argparse.Namespace) -> config.Config:
    overrides = {"agent.state_dir": args.state_dir} if args.state_dir else {}
    path = args.config or config.DEFAULT_CONFIG_PATH
    return config.load(path, overrides, must_exist=args.config is not None)


def _print_json(value: Any) -> None:
    json.dump(value, sys.stdout, indent=2)
    sys.stdout.write("\n")


def _exit_for(results: Sequence[dict[str, Any]]) -> int:
    return EXIT_TEST_FAILED if any(r["status"] == "error" for r in results) else EXIT_OK


def cmd_status(client: Client, args: argparse.Namespace) -> int:
    """``dnactl status``."""
    st = client.get("/api/v1/status")
    if args.json:
        _print_json(st)
        return EXIT_OK
    colour = render.use_colour(sys.stdout)
    latest = st["latest"]
    print(f"dnaagent {st['version']} running (pid {st['pid']}), up {render.duration(st['uptime'])}")
    print(f"  state directory  {st['state_dir']}")
    print(f"  modules          {', '.join(st['modules']) or '(none)'}")
    sched = st["schedule"]
    if sched["enabled"]:
        nxt = ", ".join(f"{m} in {render.duration(t)}" for m, t in sched["next_run_in"].items())
        print(
            f"  schedule         every {render.duration(sched['interval'])} "
            f"(±{sched['jitter'] * 100:.0f} %): {nxt or 'running'}"
        )
    else:
        print("  schedule         off (set [schedule] enabled = true to test autonomously)")
    counts = ", ".join(
        render.paint(f"{latest[s]} {s}", s, colour) for s in ("ok", "warning", "error", "skipped")
    )
    print(f"  latest results   {counts}")
    if st["failing"]:
        print(f"  failing          {render.paint(', '.join(st['failing']), 'error', colour)}")
    ov = st.get("overlay", {})
    if ov.get("enabled"):
        print(
            f"  overlay          node {ov['node_id']} ({ov['role']}), UDP {ov['port']}, "
            f"{ov['peers']} peer{'' if ov['peers'] == 1 else 's'} known"
        )
    else:
        print("  overlay          off")
    nt = st.get("notifications")
    if nt is not None:
        if not nt["targets"]:
            print("  notifications    none sent ([notifications] trap_sinks / inform_targets)")
        else:
            dropped = sum(t.get("dropped", 0) for t in nt["targets"])
            print(
                f"  notifications    {len(nt['targets'])} targets, {nt['pending']} pending, "
                f"{dropped} dropped"
            )
    print(f"  runs             {st['runs_completed']} completed, {len(st['active_runs'])} running")
    print(f"  stored results   {st['results_stored']}, events fired {st['events_fired']}")
    return EXIT_OK


def cmd_modules(client: Client, args: argparse.Namespace) -> int:
    """``dnactl modules``."""
    data = client.get("/api/v1/modules")
    if args.json:
        _print_json(data)
        return EXIT_OK
    for i, mod in enumerate(data["modules"]):
        if i:
            print()
        print(f"{mod['name']}: {mod['description']}")
        rows = [
            [
                t["name"],
                "default" if t["default"] else "optional",
                ", ".join(t["depends_on"]) or "-",
                t["description"],
            ]
            for t in mod["tests"]
        ]
        print(render.table(rows, ["TEST", "KIND", "DEPENDS ON", "CHECKS"]))
        if mod["parameters"]:
            print("parameters: " + "; ".join(f"{k}: {v}" for k, v in mod["parameters"].items()))
    return EXIT_OK


def _show_results(results: list[dict[str, Any]], as_json: bool, when: bool = False) -> None:
    if as_json:
        _print_json(results)
        return
    colour = render.use_colour(sys.stdout)
    if not results:
        print("no results")
        return
    print(render.results_table(results, colour, when=when))
    print(render.summary_line(results, colour))


def cmd_run(cfg: config.Config, args: argparse.Namespace) -> int:
    """``dnactl run MODULE``."""
    tests = parse_tests(args.tests)
    params = parse_params(args.param, args.nic)
    if args.standalone:
        results = run_standalone(cfg, args.module, tests, params)
    else:
        client = Client(api_url(cfg, args.api), args.timeout)
        body: dict[str, Any] = {"module": args.module, "params": params}
        if tests is not None:
            body["tests"] = tests
        results = client.post("/api/v1/run", body)["results"]
    _show_results(results, args.json)
    return _exit_for(results)


def cmd_results(client: Client, args: argparse.Namespace) -> int:
    """``dnactl results``."""
    if args.latest:
        data = client.get("/api/v1/results/latest", module=args.module)
        results = [r for r in data["results"] if not args.test or r["test"] == args.test]
    else:
        since = parse_since(args.since) if args.since else None
        if not 1 <= args.limit <= 100_000:
            raise UsageError("--limit must be between 1 and 100000")
        data = client.get(
            "/api/v1/results", since=since, module=args.module, test=args.test, limit=args.limit
        )
        results = data["results"]
    _show_results(results, args.json, when=True)
    return EXIT_OK


def cmd_peers(client: Client, args: argparse.Namespace) -> int:
    """``dnactl peers``."""
    data = client.get("/api/v1/peers")
    if args.json:
        _print_json(data)
        return EXIT_OK
    print(f"this agent: {data['node_id']}")
    if not data["peers"]:
        print("no peers known (configure [overlay] seeds, or turn on discovery)")
        return EXIT_OK
    rows = [
        [
            p["node_id"],
            f"[{p['host']}]:{p['port']}" if ":" in p["host"] else f"{p['host']}:{p['port']}",
            "-" if p["rtt_ms"] is None else f"{p['rtt_ms']:.1f} ms",
            render.duration(p["last_seen_s"]) + " ago",
            str(p.get("bucket", "")),
        ]
        for p in data["peers"]
    ]
    print(render.table(rows, ["NODE ID", "ADDRESS", "RTT", "LAST SEEN", "BUCKET"]))
    print(f"{len(rows)} peer" + ("" if len(rows) == 1 else "s"))
    return EXIT_OK


def cmd_lookup(client: Client, args: argparse.Namespace) -> int:
    """``dnactl lookup NODE_ID``."""
    data = client.post("/api/v1/lookup", {"node_id": args.node_id})
    if args.json:
        _print_json(data)
        return EXIT_OK if data["found"] else EXIT_TEST_FAILED
    found = data["found"]
    if found:
        print(
            f"{data['node_id']} is alive at {found['host']}:{found['port']} "
            f"(lookup took {data['elapsed_ms']:.0f} ms)"
        )
    else:
        print(f"{data['node_id']} did not answer; the closest agents known:")
    for c in data["closest"][: 5 if found else 20]:
        print(f"  {c['node_id']}  {c['host']}:{c['port']}")
    return EXIT_OK if found else EXIT_TEST_FAILED


def cmd_dht(client: Client, args: argparse.Namespace) -> int:
    """``dnactl dht get|put``."""
    key = {"key_hex": args.key} if args.hex else {"key": args.key}
    if args.dht_command == "put":
        body: dict[str, Any] = dict(key)
        body["value_hex" if args.hex else "value"] = args.value
        if args.ttl is not None:
            body["ttl"] = args.ttl
        data = client.post("/api/v1/dht", body)
        if args.json:
            _print_json(data)
        else:
            print(f"stored under {data['key_hex']} on {data['stored_on']} agents")
        return EXIT_OK if data["stored_on"] else EXIT_TEST_FAILED
    data = client.get("/api/v1/dht", **key)
    if args.json:
        _print_json(data)
        return EXIT_OK
    if not data["values"]:
        print(f"no value under {data['key_hex']}")
        return EXIT_TEST_FAILED
    for v in data["values"]:
        print(v["text"] if v["text"] is not None and v["text"].isprintable() else v["hex"])
    return EXIT_OK


def run_standalone(
    cfg: config.Config, module: str, tests: list[str] | None, params: dict[str, str]
) -> list[dict[str, Any]]:
    """Run a module in this process, with no daemon and no store."""
    from twisted.internet import defer

    from dnaagent.mediator.mediator import Mediator
    from dnaagent.modules.registry import load_modules
    from dnaagent.tap import install_reactor

    reactor = install_reactor()
    mediator = Mediator(
        reactor,
        default_timeout=cfg.mediator.test_timeout,
        max_parallel=cfg.mediator.max_parallel,
    )
    for mod in load_modules(cfg, reactor):
        mediator.register(mod)
    outcome: dict[str, Any] = {}

    def start() -> None:
        d = defer.maybeDeferred(mediator.run, module, tests, params, origin="standalone")
        d.addCallbacks(
            lambda results: outcome.__setitem__("results", results),
            lambda failure: outcome.__setitem__("failure", failure),
        )
        d.addBoth(lambda _: reactor.stop())

    reactor.callWhenRunning(start)
    reactor.run(installSignalHandlers=False)
    if "failure" in outcome:
        outcome["failure"].raiseException()
    return [r.to_json() for r in outcome["results"]]


def _fail(message: str, code: int) -> int:
    sys.stderr.write(f"dnactl: {message}\n")
    return code


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``dnactl`` command."""
    parser = build_parser()
    args = parser.parse_args(rewrite_distributed_run(list(sys.argv[1:] if argv is None else argv)))
    if args.command is None:
        parser.print_help()
        return EXIT_USAGE
    try:
        cfg = _load_config(args)
        if args.command == "config":
            sys.stdout.write(config.render(None if args.defaults else cfg))
            return EXIT_OK
        if args.command == "run":
            return cmd_run(cfg, args)
        if args.command == "module":
            return cmd_module(args, default_state_dir=cfg.agent.state_dir)
        client = Client(api_url(cfg, args.api), args.timeout)
        handlers = {
            "status": cmd_status,
            "modules": cmd_modules,
            "results": cmd_results,
            "peers": cmd_peers,
            "lookup": cmd_lookup,
            "dht": cmd_dht,
            "predict": cmd_predict,
            "trace": cmd_trace,
        }
        return handlers[args.command](client, args)
    except ControlError as e:
        return _fail(str(e), EXIT_UNAVAILABLE)
    except ConfigError as e:
        return _fail(f"configuration error: {e}", EXIT_USAGE)
    except (DnaAgentError, InvalidParameters, PredictUsageError) as e:
        return _fail(str(e), EXIT_USAGE)
    except BrokenPipeError:
        return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
