"""``dnactl trace campaign create|join|leave|status|export|add|remove|deny``.

Trace campaigns (DTS) live in the overlay DHT; these commands ask the local agent to
create one, to join it (probe its chunks), to show its state, to change its targets and
to export its results as RIPE Atlas traceroute JSON or CSV.

:func:`add_trace_parser` adds the commands to dnactl's parser and :func:`cmd_trace`
runs them; dnactl hooks them in with two lines.

Exit status: 0 done (``status``: the campaign is complete, or ``--wait`` saw it
complete), 1 the campaign is not complete (``status``) or not complete in time
(``--wait``), 2 usage error (bad target file, bad address), 3 the agent cannot be
reached or refused.
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import sys
import time
from typing import Any, TextIO

from dnaagent.control.client import Client
from dnaagent.errors import DnaAgentError


class TraceUsageError(DnaAgentError, ValueError):
    """A bad argument of ``dnactl trace``."""


def add_trace_parser(sub: argparse._SubParsersAction, parents: list | None = None) -> None:  # type: ignore[type-arg]
    """Add ``trace campaign ACTION`` to dnactl's subcommands."""
    parents = parents or []
    p = sub.add_parser(
        "trace",
        parents=parents,
        help="decentralized topology discovery (Doubletree campaigns in the DHT)",
    )
    what = p.add_subparsers(dest="trace_command", metavar="WHAT", required=True)
    c = what.add_parser(
        "campaign",
        parents=parents,
        help="create, join, watch and export trace campaigns",
        description="A campaign's targets are split into chunks kept in the overlay DHT. "
        "Agents that join it claim chunks, trace their targets with Doubletree and share "
        "what they find; chunks of agents that fail are traced again when their lease "
        "runs out.",
    )
    actions = c.add_subparsers(dest="campaign_command", metavar="ACTION", required=True)

    def json_flag(q: argparse.ArgumentParser) -> None:
        q.add_argument("--json", action="store_true", help="print JSON instead of text")

    def targets(q: argparse.ArgumentParser, verb: str) -> None:
        q.add_argument("targets", nargs="*", metavar="ADDRESS", help=f"IP addresses to {verb}")
        q.add_argument(
            "--file",
            "-f",
            metavar="FILE",
            help="also read addresses from FILE (one per line, # comments; - for stdin)",
        )

    q = actions.add_parser(
        "create",
        parents=parents,
        help="create a campaign from a target list",
        description="Create campaign NAME in the DHT. Nothing is probed until agents join "
        "it (--join joins this agent at once).",
    )
    q.add_argument("name", help="campaign name (1-64 letters, digits, . _ -)")
    targets(q, "trace")
    q.add_argument("--chunk-size", type=int, metavar="N", help="targets per chunk ([dts])")
    q.add_argument(
        "--policy",
        choices=("any", "each"),
        help="any: one agent per chunk; each: every agent traces every chunk ([dts])",
    )
    q.add_argument("--lease", type=float, metavar="S", help="lease of a chunk, seconds ([dts])")
    q.add_argument("--max-holders", type=int, metavar="N", help="each: agents per chunk at once")
    q.add_argument("--join", action="store_true", help="also join it on this agent")
    json_flag(q)
    q = actions.add_parser(
        "join", parents=parents, help="trace the campaign's chunks on this agent"
    )
    q.add_argument("name")
    json_flag(q)
    q = actions.add_parser("leave", parents=parents, help="stop tracing it on this agent")
    q.add_argument("name")
    json_flag(q)
    q = actions.add_parser(
        "status",
        parents=parents,
        help="chunks done, claimed and pending; agents; probes",
        description="Exit status 0 when the campaign is complete, 1 while it is not.",
    )
    q.add_argument("name")
    q.add_argument(
        "--wait",
        type=float,
        metavar="S",
        help="poll until the campaign is complete, at most S seconds",
    )
    q.add_argument("--chunks", action="store_true", help="one line per chunk")
    json_flag(q)
    q = actions.add_parser(
        "export",
        parents=parents,
        help="the results as RIPE Atlas traceroute JSON or CSV",
        description="Deduplicated records of every chunk: RIPE Atlas traceroute results "
        "(a JSON list, with a dts member per result; a hop answered by an ICMP "
        "destination unreachable has the Atlas err: N network, H host, A prohibited, "
        "P protocol, p port unreachable, h beyond scope, or the code) or CSV (one row "
        "per probed hop, err in the last column).",
    )
    q.add_argument("name")
    q.add_argument("--format", choices=("atlas", "csv"), default="atlas", help="(atlas)")
    q.add_argument("-o", "--output", metavar="FILE", help="write to FILE instead of stdout")
    for verb, text in (
        ("add", "add targets while the campaign runs"),
        ("remove", "remove targets (their stop-set pairs go too)"),
        ("deny", "remove targets and refuse them for the rest of the campaign"),
    ):
        q = actions.add_parser(verb, parents=parents, help=text)
        q.add_argument("name")
        targets(q, verb)
        json_flag(q)


def read_targets(args: argparse.Namespace, stdin: TextIO = sys.stdin) -> list[str]:
    """Addresses from the command line and ``--file``; ``TraceUsageError`` on a bad one."""
    words = list(args.targets)
    if getattr(args, "file", None):
        try:
            if args.file == "-":
                text = stdin.read()
            else:
                with open(args.file) as f:
                    text = f.read()
        except OSError as e:
            raise TraceUsageError(f"cannot read {args.file}: {e.strerror}") from None
        for line in text.splitlines():
            line = line.split("#", 1)[0].strip()
            if line:
                words.extend(line.split())
    out = []
    for w in words:
        try:
            out.append(str(ipaddress.ip_address(w)))
        except ValueError:
            raise TraceUsageError(f"{w!r} is not an IP address") from None
    if not out:
        raise TraceUsageError("no targets given (addresses or --file)")
    return out


def _print_status(data: dict[str, Any], chunks: bool, out: TextIO) -> None:
    monitors = data.get("monitors", {})
    alive = sorted(m for m, i in monitors.items() if i.get("alive"))
    print(
        f"campaign {data['campaign']} ({data['policy']}, chunks of {data['chunk_size']}, "
        f"lease {data['lease_seconds']:g} s): "
        f"{'complete' if data['complete'] else 'running'}",
        file=out,
    )
    print(
        f"  chunks: {data['chunks_done']} done, {data['chunks_claimed']} claimed, "
        f"{data['chunks_pending']} pending of {data['chunk_count']}",
        file=out,
    )
    print(f"  targets: {data['targets']}, probes: {data['probes']}", file=out)
    print(
        f"  monitors: {len(monitors)} joined, {len(alive)} alive"
        + (f" ({', '.join(alive)})" if alive else ""),
        file=out,
    )
    if data.get("denied"):
        print(f"  denied: {', '.join(data['denied'])}", file=out)
    local = data.get("local")
    if local:
        print(
            f"  here ({local['monitor']}): {local['state']}, {local['chunks_done']} chunks, "
            f"{local['records']} records"
            + (f", last error: {local['last_error']}" if local.get("last_error") else ""),
            file=out,
        )
    if chunks:
        for c in data["chunks"]:
            print(
                f"  chunk {c['chunk']:>4}: {c['targets']:>3} targets, done by "
                f"{','.join(c['done']) or '-'}; held by {','.join(c['holders']) or '-'}; "
                f"{c['probes']} probes",
                file=out,
            )


def cmd_trace(client: Client, args: argparse.Namespace, out: TextIO = sys.stdout) -> int:
    """Run one ``dnactl trace campaign`` action; returns the exit status."""
    action = args.campaign_command
    name = args.name
    as_json = getattr(args, "json", False)
    if action == "create":
        body: dict[str, Any] = {"campaign": name, "targets": read_targets(args)}
        for key, value in (
            ("chunk_size", args.chunk_size),
            ("policy", args.policy),
            ("lease_seconds", args.lease),
            ("max_holders", args.max_holders),
        ):
            if value is not None:
                body[key] = value
        if args.join:
            body["join"] = True
        data = client.post("/api/v1/trace/campaigns", body)
        if as_json:
            print(json.dumps(data, indent=2), file=out)
        else:
            print(
                f"campaign {data['campaign']}: {data['targets']} targets in {data['chunks']} "
                f"chunks ({data['policy']}, lease {data['lease_seconds']:g} s)"
                + ("; joined here" if "joined" in data else ""),
                file=out,
            )
        return 0
    if action in ("join", "leave"):
        data = client.post(f"/api/v1/trace/campaign/{action}", {"campaign": name})
        if as_json:
            print(json.dumps(data, indent=2), file=out)
        elif action == "join":
            print(f"joined {name} as {data['monitor']} ({data['state']})", file=out)
        else:
            print(f"left {name}", file=out)
        return 0
    if action == "status":
        deadline = None if args.wait is None else time.monotonic() + args.wait
        while True:
            data = client.get("/api/v1/trace/campaign", campaign=name)
            if data["complete"] or deadline is None or time.monotonic() >= deadline:
                break
            time.sleep(min(2.0, max(0.1, deadline - time.monotonic())))
        if as_json:
            print(json.dumps(data, indent=2), file=out)
        else:
            _print_status(data, args.chunks, out)
        return 0 if data["complete"] else 1
    if action == "export":
        data = client.get("/api/v1/trace/campaign/export", campaign=name, format=args.format)
        text = data["data"] if args.format == "csv" else json.dumps(data["data"]) + "\n"
        if args.output:
            try:
                with open(args.output, "w") as f:
                    f.write(text)
            except OSError as e:
                raise TraceUsageError(f"cannot write {args.output}: {e.strerror}") from None
            print(
                f"{data['records']} records of {name} -> {args.output} "
                f"({data['duplicates']} duplicates dropped, {data['missing_parts']} parts "
                "missing)",
                file=sys.stderr,
            )
        else:
            out.write(text)
        return 0
    field = {"add": "add", "remove": "remove", "deny": "deny"}[action]
    data = client.post(
        "/api/v1/trace/campaign/targets", {"campaign": name, field: read_targets(args)}
    )
    if as_json:
        print(json.dumps(data, indent=2), file=out)
    elif action == "add":
        refused = data.get("refused", {})
        print(
            f"added to chunks {data.get('chunks_changed', [])}"
            + (f"; refused {len(refused)}: {', '.join(refused)}" if refused else ""),
            file=out,
        )
    elif action == "remove":
        print(f"removed {', '.join(data.get('removed', [])) or 'nothing'}", file=out)
    else:
        print(f"denied: {', '.join(data.get('denied', []))}", file=out)
    return 0


__all__ = ["add_trace_parser", "cmd_trace", "read_targets"]
