"""``dnactl predict ...``: the RTT prediction service (XBAC) from the command line.

* ``rtt HOST``: the predicted RTT, its interval and what it rests on; exit 1
  with "no prediction possible" when neither this host nor its group has any
  experience of HOST;
* ``measure HOST``: one active measurement now (ICMP echo or TCP connect, as
  configured), recorded for later predictions;
* ``add HOST RTT_MS...``: RTTs an application measured itself;
* ``report HOST --predicted MS --measured MS``: how good a prediction was;
* ``connect HOST[:PORT]``: join the agents' overlay through that agent;
* ``status``: role, group, measurements and predictions so far.

:func:`add_predict_parser` adds them to dnactl's parser and :func:`cmd_predict`
runs them against the control API.
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import socket
import sys
from typing import Any, TextIO

EXIT_OK = 0
EXIT_NO_ANSWER = 1
EXIT_USAGE = 2

#: What a prediction's basis means, for people.
SOURCES = {
    "series": "this host's own measurements of it",
    "group": "measurements of it by members of this host's group",
    "cluster": "measurements of hosts of its cluster",
    "similar": "measurements of it by another group that sees the network as this host does",
}


class PredictUsageError(ValueError):
    """A bad argument of ``dnactl predict``."""


def add_predict_parser(sub: argparse._SubParsersAction, parents: list | None = None) -> None:  # type: ignore[type-arg]
    """Add ``predict`` and its actions to dnactl's subcommands."""
    parents = parents or []
    p = sub.add_parser(
        "predict",
        parents=parents,
        help="RTT predictions from shared experience (XBAC)",
        description="Predict round-trip times from this host's and its group's experience, "
        "and feed the prediction service. HOST is an address or a name (resolved here).",
    )
    actions = p.add_subparsers(dest="predict_command", metavar="ACTION", required=True)

    def json_flag(q: argparse.ArgumentParser) -> None:
        q.add_argument("--json", action="store_true", help="print JSON instead of text")

    q = actions.add_parser(
        "rtt",
        parents=parents,
        help="predict the RTT to HOST (exit 1: no prediction possible)",
    )
    q.add_argument("host")
    json_flag(q)
    q = actions.add_parser(
        "measure",
        parents=parents,
        help="measure the RTT to HOST now (ICMP or TCP, as configured) and record it",
    )
    q.add_argument("host")
    json_flag(q)
    q = actions.add_parser(
        "add", parents=parents, help="record RTTs to HOST measured by an application"
    )
    q.add_argument("host")
    q.add_argument("rtt_ms", nargs="+", type=float, metavar="RTT_MS", help="RTTs, oldest first")
    q.add_argument(
        "--interval",
        type=float,
        default=1.0,
        metavar="S",
        help="seconds between the values given (1)",
    )
    json_flag(q)
    q = actions.add_parser(
        "report", parents=parents, help="report how good a prediction to HOST was"
    )
    q.add_argument("host")
    q.add_argument("--predicted", type=float, required=True, metavar="MS", help="predicted RTT")
    q.add_argument("--measured", type=float, required=True, metavar="MS", help="measured RTT")
    json_flag(q)
    q = actions.add_parser(
        "connect", parents=parents, help="join the agents' overlay through the agent at ADDRESS"
    )
    q.add_argument("address", help="HOST or HOST:PORT of another agent (port 4001 by default)")
    json_flag(q)
    q = actions.add_parser(
        "status", parents=parents, help="role, group, measurements and predictions so far"
    )
    json_flag(q)


def resolve(host: str) -> str:
    """An address literal as is; a name resolved to its first address."""
    text = host.strip().strip("[]")
    try:
        return str(ipaddress.ip_address(text.split("%")[0]))
    except ValueError:
        pass
    try:
        infos = socket.getaddrinfo(text, None, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as e:
        raise PredictUsageError(f"cannot resolve {host!r}: {e}") from None
    return str(infos[0][4][0])


def _ms(v: float | None) -> str:
    return "-" if v is None else f"{v:.1f} ms"


def show_prediction(data: dict[str, Any], out: TextIO) -> int:
    """Print one prediction answer; return 0 when predicted, 1 when not."""
    if not data.get("predicted"):
        print(data.get("reason") or f"no prediction possible for {data.get('target')}", file=out)
        print(
            f"  (give it experience: dnactl predict measure {data.get('target')}, "
            f"or dnactl predict add {data.get('target')} RTT_MS)",
            file=out,
        )
        return EXIT_NO_ANSWER
    basis = data["basis"]
    print(
        f"{data['target']}: {_ms(data['rtt_ms'])} "
        f"(interval {data['low_ms']:.1f}-{data['high_ms']:.1f} ms)",
        file=out,
    )
    print(
        f"  basis: {SOURCES.get(basis['source'], basis['source'])}: "
        f"{basis['series']} series, {basis['measurements']} measurements",
        file=out,
    )
    print(f"  answered in {data['elapsed_ms']:.1f} ms", file=out)
    return EXIT_OK


def cmd_predict(client: Any, args: argparse.Namespace, out: TextIO = sys.stdout) -> int:
    """Run one ``dnactl predict`` action; returns the exit status."""
    action = args.predict_command

    def emit(data: Any) -> bool:
        if args.json:
            json.dump(data, out, indent=2)
            out.write("\n")
        return bool(args.json)

    if action == "status":
        st = client.get("/api/v1/xbac")
        if emit(st):
            return EXIT_OK
        by = st["measurements_by_source"]
        print(
            f"XBAC {st['mode']}: {st['role']} of group {st['group'] or '-'} "
            f"({st['members']} member{'' if st['members'] == 1 else 's'}), "
            f"{st['clusters']} cluster{'' if st['clusters'] == 1 else 's'}",
            file=out,
        )
        print(
            f"  measurements  {st['measurements']} (applications {by['api']}, active "
            f"{by['active']}, passive {by['passive']}, reports {by['report']}), "
            f"{st['measurements_rejected']} rejected",
            file=out,
        )
        print(
            f"  predictions   {st['predictions_answered']} answered, "
            f"{st['predictions_unanswered']} without basis, "
            f"{st['quality_reports']} quality reports",
            file=out,
        )
        ec = (st.get("engine") or {}).get("counters") or {}
        if "similar_requests" in ec:
            print(
                f"  other groups  {ec['similar_requests']} asked, {ec['similar_answers']} "
                f"answers, {ec['similar_predictions']} predictions; for them "
                f"{ec['similar_served']} answered, {ec['similar_no_basis']} without basis",
                file=out,
            )
        act = st["active"]
        probing = f"every {act['interval']:g} s" if act["interval"] else "only when asked"
        method = (
            "ICMP echo" if act["method"] == "icmp" else f"TCP connect to port {act['tcp_port']}"
        )
        print(f"  active        {method}, {probing}", file=out)
        pas = st["passive"]
        if pas.get("running"):
            c = pas.get("counters", {})
            print(
                f"  passive       every {pas['interval']:g} s: {c.get('fed', 0)} fed, "
                f"{c.get('records', 0)} connections read",
                file=out,
            )
        else:
            print("  passive       off ([xbac] passive = true to use other traffic)", file=out)
        return EXIT_OK
    if action == "connect":
        data = client.post("/api/v1/xbac/connect", {"address": args.address})
        if not emit(data):
            print(f"joined through {data['address']}: {data['peers']} peers known", file=out)
        return EXIT_OK if data["peers"] else EXIT_NO_ANSWER
    host = resolve(args.host)
    if action == "rtt":
        data = client.post("/api/v1/xbac/predict/rtt", {"host": host})
        emit(data)
        if args.json:
            return EXIT_OK if data["predicted"] else EXIT_NO_ANSWER
        return show_prediction(data, out)
    if action == "measure":
        data = client.post("/api/v1/xbac/measure", {"host": host})
        if not emit(data):
            how = "ICMP echo" if data["method"] == "icmp" else f"TCP port {data['port']}"
            if data["rtt_ms"] is None:
                print(f"{host} did not answer ({how}: {data.get('error') or 'no reply'})", file=out)
            else:
                refused = " (refused: the RST is the answer)" if data.get("refused") else ""
                print(f"{host}: {_ms(data['rtt_ms'])} by {how}{refused}, recorded", file=out)
        return EXIT_OK if data["rtt_ms"] is not None else EXIT_NO_ANSWER
    if action == "add":
        body = {"host": host, "rtts_ms": list(args.rtt_ms), "interval_s": args.interval}
        data = client.post("/api/v1/xbac/measurements", body)
        if not emit(data):
            print(f"{host}: {data['kept']} of {data['given']} measurements recorded", file=out)
        return EXIT_OK
    if action == "report":
        body = {"host": host, "predicted_ms": args.predicted, "measured_ms": args.measured}
        data = client.post("/api/v1/xbac/quality", body)
        if not emit(data):
            rel = data["relative_error"]
            err = "-" if rel is None else f"{rel * 100:.1f} %"
            print(f"{host}: relative error {err}; the measured value joins the series", file=out)
        return EXIT_OK
    raise PredictUsageError(f"unknown predict action {action!r}")
