"""The guard in front of the peer-side handlers: catalogue, deny list, rate limits.

Every request from a peer goes through :meth:`Guard.admit` before anything is
sent on its behalf. The checks run cheapest first: the catalogue and its
bounds, the target deny list, the peer's token bucket, the cap on probes to
the target, and the number of requests of the kind already running. A
refusal raises :class:`~dnaagent.guard.catalogue.Refused` and is counted
per reason (``counters``), so that an operator sees who is being refused
and why. An admitted request must be handed back with :meth:`Guard.release`
when it is over.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

from dnaagent.guard.catalogue import Refused, Request, validate
from dnaagent.guard.denylist import DenyList
from dnaagent.guard.limits import TargetCap, TokenBuckets


@dataclass(frozen=True)
class GuardLimits:
    """The limits one agent applies to its peers' requests."""

    #: Requests per second a peer may make on average, and how many at once.
    peer_rate: float = 1.0
    peer_burst: int = 10
    #: Probes to any one target per minute, whoever asks.
    target_per_minute: int = 60
    #: Ceiling of the rate of a throughput test (Mbit/s).
    max_rate_mbit: float = 100.0
    #: Requests running at once, in total and for throughput tests.
    max_concurrent: int = 16
    max_concurrent_throughput: int = 1
    #: CIDR prefixes never probed, besides the special ranges.
    deny: tuple[str, ...] = field(default_factory=tuple)
    #: Refuse loopback, link-local, multicast and unspecified targets of remote requests.
    deny_special: bool = True


class Guard:
    """Admits or refuses peers' requests; see the module docstring."""

    log = Logger()

    def __init__(self, limits: GuardLimits, clock: IReactorTime) -> None:
        self.limits = limits
        self.clock: Any = clock
        self.deny = DenyList(limits.deny, deny_special=limits.deny_special)
        self.peers: TokenBuckets[bytes] = TokenBuckets(limits.peer_rate, limits.peer_burst)
        self.targets: TargetCap[str] = TargetCap(limits.target_per_minute, 60.0)
        self.active: Counter[str] = Counter()
        self.counters: Counter[str] = Counter()

    def _refuse(self, refusal: Refused, peer: str) -> Refused:
        self.counters["refused"] += 1
        self.counters[f"refused_{refusal.reason}"] += 1
        self.log.info("refused a request from {peer}: {why}", peer=peer, why=refusal.text)
        return refusal

    def admit(
        self, kind: Any, body: Any, peer_id: bytes, requester: str, *, remote: bool = True
    ) -> Request:
        """Validate and account for one request; raises :class:`Refused`.

        ``peer_id`` keys the peer's token bucket; ``requester`` is the IP
        address the request came from; ``remote`` is False for requests this
        agent makes itself (the special ranges of the deny list then allow).
        """
        who = f"{peer_id.hex()[:12]}@{requester}"
        now = self.clock.seconds()
        try:
            request = validate(kind, body, requester, self.limits.max_rate_mbit)
        except Refused as refusal:
            raise self._refuse(refusal, who) from None
        if request.target:
            why = self.deny.reason(request.target, remote=remote)
            if why is not None:
                raise self._refuse(Refused("denied_target", why), who)
        if remote and not self.peers.take(peer_id, now):
            wait = self.peers.wait(peer_id, now)
            raise self._refuse(
                Refused("peer_rate", f"too many requests from this peer; retry in {wait:.1f} s"),
                who,
            )
        if request.target and not self.targets.take(request.target, now, request.probes):
            raise self._refuse(
                Refused(
                    "target_rate",
                    f"{request.target} already got {self.targets.used(request.target, now)} "
                    f"probes this minute (cap {self.limits.target_per_minute})",
                ),
                who,
            )
        cap = (
            self.limits.max_concurrent_throughput
            if request.kind == "throughput"
            else self.limits.max_concurrent
        )
        if self.active[request.kind] >= cap or sum(self.active.values()) >= (
            self.limits.max_concurrent
        ):
            raise self._refuse(Refused("busy", f"too many {request.kind} requests running"), who)
        self.active[request.kind] += 1
        self.counters["admitted"] += 1
        self.counters[f"admitted_{request.kind}"] += 1
        return request

    def release(self, request: Request) -> None:
        """Say that an admitted request is over."""
        if self.active[request.kind] > 0:
            self.active[request.kind] -= 1

    def busiest(self, count: int = 10) -> list[list[Any]]:
        """The targets with the most probes this minute, as ``[target, probes]``."""
        now = self.clock.seconds()
        used = [(self.targets.used(t, now), t) for t in list(self.targets.keys())]
        return [[t, n] for n, t in sorted(used, reverse=True)[:count] if n]

    def status(self) -> dict[str, Any]:
        """Counters and running requests, for the control API."""
        return {
            "counters": dict(self.counters),
            "active": {k: v for k, v in self.active.items() if v},
            "busiest_targets": self.busiest(),
            "limits": {
                "peer_rate": self.limits.peer_rate,
                "peer_burst": self.limits.peer_burst,
                "target_per_minute": self.limits.target_per_minute,
                "max_rate_mbit": self.limits.max_rate_mbit,
                "deny": [str(p) for p in self.deny.prefixes],
                "deny_special": self.deny.deny_special,
            },
        }
