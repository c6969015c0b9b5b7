"""From pings and traceroutes to a diagnosis a person reads (pure functions).

A DNA that cannot reach a host asks other DNAs to ping it (seed 000 §2.3):

* the host answers from here: no fault;
* it answers some peers but not here: the fault is on the path between this
  host and the target; comparing this host's traceroute with the peers'
  working ones names the first hop where the failing path leaves them;
* it answers nobody, although the peers answer us: the host is down (or
  cut off from everyone);
* neither the host nor any peer answers us: the problem is local.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from dnaagent.mediator.interface import Status

REACHABLE = "reachable"
HOST_DOWN = "host-down"
PATH_PROBLEM = "path-problem"
LOCAL_PROBLEM = "local-problem"
INCONCLUSIVE = "inconclusive"

Path = Sequence[str | None]


@dataclass(frozen=True)
class PeerView:
    """What one peer saw: whether it reached the target, or why it could not tell."""

    peer: str
    reached: bool | None
    rtt_ms: float | None = None
    error: str | None = None
    path: tuple[str | None, ...] | None = None
    path_reached: bool = False


@dataclass(frozen=True)
class Diagnosis:
    """The verdict, its sentence, the suspected location and the evidence."""

    verdict: str
    status: Status
    message: str
    location: str | None = None
    evidence: dict[str, Any] = field(default_factory=dict)


def locate(target: str, own: Path, working: Sequence[Path]) -> tuple[str, dict[str, Any]]:
    """Where the failing path ``own`` leaves the ``working`` paths to ``target``.

    Returns a short location text and the evidence: the last hop of our path
    that answered, and the hop the working paths take after it when they
    pass through it.
    """
    answered = [(i, a) for i, a in enumerate(own) if a is not None and a != target]
    if not answered:
        return (
            "between this host and its first hop (its own link or gateway)",
            {"last_hop": None, "last_hop_ttl": 0, "next_hop": None},
        )
    last = answered[-1][1]
    # A router that answers "unreachable" shows up twice; count its first hop.
    index = list(own).index(last)
    for path in working:
        if last in path:
            at = list(path).index(last)
            after = path[at + 1] if at + 1 < len(path) else target
            if after is not None:
                return (
                    f"between {last} and {after} (hop {index + 1} from here; "
                    f"the peers' working paths continue through {after})",
                    {"last_hop": last, "last_hop_ttl": index + 1, "next_hop": after},
                )
    return (
        f"after {last} (hop {index + 1} from here): the link from {last} towards {target}, "
        "which the peers' working paths do not use",
        {"last_hop": last, "last_hop_ttl": index + 1, "next_hop": None},
    )


def diagnose_ping(
    target: str,
    local: dict[str, Any],
    views: Sequence[PeerView],
    own_path: Path | None = None,
) -> Diagnosis:
    """Combine the local ping and the peers' views into a :class:`Diagnosis`."""
    answered = [v for v in views if v.reached is not None]
    reachers = [v for v in answered if v.reached]
    silent = [v for v in views if v.reached is None]
    evidence: dict[str, Any] = {
        "target": target,
        "local": local,
        "peers_asked": len(views),
        "peers_answered": len(answered),
        "peers_reaching": len(reachers),
        "peers": [
            {"peer": v.peer, "reached": v.reached, "rtt_ms": v.rtt_ms, "error": v.error}
            for v in views
        ],
    }
    tally = f"{len(reachers)} of {len(answered)} peers reach it"
    if local.get("received"):
        rtt = (local.get("rtt_ms") or [None])[0]
        shown = f" in {rtt:.1f} ms" if isinstance(rtt, int | float) else ""
        extra = f"; {tally}" if answered else ""
        return Diagnosis(
            REACHABLE, Status.OK, f"{target} answers from here{shown}{extra}", None, evidence
        )
    if not views:
        return Diagnosis(
            INCONCLUSIVE,
            Status.ERROR,
            f"{target} does not answer from here ({local.get('error')}), and no peer is "
            "known to ask: cannot tell whether the host or the path is at fault",
            None,
            evidence,
        )
    if not answered:
        return Diagnosis(
            LOCAL_PROBLEM,
            Status.ERROR,
            f"local problem: this host reaches neither {target} ({local.get('error')}) "
            f"nor any of the {len(views)} peers it asked; check its link, address and gateway",
            "this host",
            evidence,
        )
    if not reachers:
        names = ", ".join(v.peer for v in answered[:5])
        return Diagnosis(
            HOST_DOWN,
            Status.ERROR,
            f"{target} looks down: it answers neither from here nor from any of the "
            f"{len(answered)} peers that tried ({names})",
            target,
            evidence,
        )
    working = [v.path for v in reachers if v.path is not None and v.path_reached]
    location = "the path between this host and the target"
    if own_path is not None:
        location, found = locate(target, own_path, working)
        evidence.update(found)
        evidence["own_path"] = list(own_path)
        evidence["working_paths"] = [list(p) for p in working]
    if silent:
        evidence["peers_silent"] = [v.peer for v in silent]
    return Diagnosis(
        PATH_PROBLEM,
        Status.ERROR,
        f"{target} is up ({tally}) but does not answer from here: the fault is on the path "
        f"between you and the host; suspected broken link: {location}",
        location,
        evidence,
    )
