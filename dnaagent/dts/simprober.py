"""A simulated prober that replays paths, so that Doubletree runs without a network.

A :class:`SimPath` is what a monitor would see towards one destination: the interface
answering at each TTL below the destination (``None`` for a silent hop) and the TTL at
which the destination itself answers (``None``: unreachable, silent beyond the listed
hops). :class:`ReplayProber` answers ``probe(destination, ttl)`` from a table of them.

Two sources of paths:

* :func:`load_rtrack` -- the RTrack Paris traceroutes (one PlanetLab vantage point per
  AS dataset, text ``Target:`` / ``TTL:`` / ``hop - address`` blocks). The first
  opinion of each target is used; ``Anonymous`` hops are silent; ``[Cycle]`` and other
  annotations are dropped. The destination answers at the ``TTL:`` of the block.
* :class:`ZooTopology` -- a Topology Zoo PoP graph. Every PoP has ``hosts_per_pop``
  destination hosts behind it and monitors are hosts behind chosen PoPs. Routing is
  destination-based shortest paths: a BFS tree rooted at each destination PoP, ties
  broken by the smaller node id, so the path from any router to a destination does not
  depend on the source (the assumption behind the global stop set, as in IP routing).
  **Interfaces** are router interfaces: PoP ``v`` answers from its interface on the
  link it received the probe from, i.e. one address per directed link ``(u, v)``
  (``10.0.0.0/8``), plus one LAN interface per PoP facing its own hosts
  (``192.168.0.0/16``); destination hosts are ``172.16.0.0/12`` addresses.

Simulated RTTs are ``0.5 + 3 * ttl`` ms (RIPE Atlas exports need a number).
"""

from __future__ import annotations

import io
import re
import tarfile
from collections import deque
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dnaagent.dts.doubletree import NO_REPLY, Reply

#: Default location of the evaluation data.
DEFAULT_DATA = Path("/work/shared/data")
RTRACK_ARCHIVE = "rtrack_planetlab_traceroutes.tar.xz"
ZOO_ARCHIVE = "topology_zoo/graphml.tar.gz"


@dataclass(frozen=True)
class SimPath:
    """Hops below the destination (index 0 is TTL 1) and the destination's TTL."""

    hops: tuple[str | None, ...]
    dest_ttl: int | None

    def reply(self, destination: str, ttl: int) -> Reply:
        """What a probe at ``ttl`` gets back."""
        if self.dest_ttl is not None and ttl >= self.dest_ttl:
            return Reply(destination, reached=True, rtt=0.5 + 3.0 * self.dest_ttl)
        if 1 <= ttl <= len(self.hops):
            address = self.hops[ttl - 1]
            if address is not None:
                return Reply(address, rtt=0.5 + 3.0 * ttl)
        return NO_REPLY


class ReplayProber:
    """``probe(destination, ttl) -> Reply`` from a table of paths; counts probes."""

    def __init__(self, paths: dict[str, SimPath]) -> None:
        self.paths = paths
        self.sent = 0

    def __call__(self, destination: str, ttl: int) -> Reply:
        """Answer one probe (a destination without a path is silent)."""
        self.sent += 1
        path = self.paths.get(destination)
        return NO_REPLY if path is None else path.reply(destination, ttl)


# -- RTrack -------------------------------------------------------------------------------

_HOP_RE = re.compile(r"^(\d+)\s+-\s+(\S+)")


def parse_rtrack(text: str) -> dict[str, SimPath]:
    """Parse one RTrack ``.traces`` file: the first opinion of each target."""
    out: dict[str, SimPath] = {}
    for block in text.split("#"):
        lines = [ln.strip() for ln in block.strip().splitlines() if ln.strip()]
        if not lines or not lines[0].startswith("Target:"):
            continue
        head = lines[0][len("Target:") :].strip()
        if "opinion" in head:
            continue
        target = head.split()[0]
        dest_ttl: int | None = None
        hops: dict[int, str | None] = {}
        for line in lines[1:]:
            if line.startswith("TTL:"):
                try:
                    dest_ttl = int(line[4:].strip())
                except ValueError:
                    dest_ttl = None
                continue
            m = _HOP_RE.match(line)
            if m:
                ttl, addr = int(m.group(1)), m.group(2)
                hops[ttl] = None if addr == "Anonymous" else addr
        if dest_ttl is not None:
            hops = {t: a for t, a in hops.items() if t < dest_ttl}
        length = max(hops, default=0)
        if target not in out:
            out[target] = SimPath(tuple(hops.get(t) for t in range(1, length + 1)), dest_ttl)
    return out


def load_rtrack(data_dir: Path = DEFAULT_DATA) -> dict[str, dict[str, SimPath]]:
    """Paths per vantage point (named by its ``VP.txt``) from the RTrack archive."""
    archive = Path(data_dir) / RTRACK_ARCHIVE
    out: dict[str, dict[str, SimPath]] = {}
    with tarfile.open(archive) as tar:
        members = {m.name: m for m in tar.getmembers() if m.isfile()}
        for name in sorted(members):
            if not name.endswith(".traces"):
                continue
            vp_name = str(Path(name).parent / "VP.txt")
            vp = name
            if vp_name in members:
                f = tar.extractfile(members[vp_name])
                if f is not None:
                    vp = f.read().decode().strip() or name
            f = tar.extractfile(members[name])
            if f is None:
                continue
            out[vp] = parse_rtrack(f.read().decode("utf-8", "replace"))
    return out


# -- Topology Zoo -------------------------------------------------------------------------


def load_zoo(data_dir: Path = DEFAULT_DATA, names: Sequence[str] | None = None) -> Iterator[Any]:
    """Yield ``(name, networkx.Graph)`` for the Topology Zoo graphs (all, or ``names``)."""
    import networkx as nx

    archive = Path(data_dir) / ZOO_ARCHIVE
    with tarfile.open(archive) as tar:
        for member in tar.getmembers():
            if not member.isfile() or not member.name.endswith(".graphml"):
                continue
            name = Path(member.name).stem
            if names is not None and name not in names:
                continue
            f = tar.extractfile(member)
            if f is None:
                continue
            yield name, nx.Graph(nx.read_graphml(io.BytesIO(f.read())))


def _ip(prefix: tuple[int, int], index: int) -> str:
    base = (prefix[0] << 24) + (prefix[1] << 16) + index + 1
    return f"{base >> 24 & 255}.{base >> 16 & 255}.{base >> 8 & 255}.{base & 255}"


class ZooTopology:
    """A PoP graph (its largest connected part) with hosts and destination-based routing."""

    def __init__(self, graph: Any, hosts_per_pop: int = 4) -> None:
        import networkx as nx

        if len(graph) == 0:
            raise ValueError("empty graph")
        part = max(nx.connected_components(graph), key=lambda c: (len(c), sorted(c)))
        self.nodes: list[str] = sorted(part, key=_node_key)
        self.index = {n: i for i, n in enumerate(self.nodes)}
        self.adj: dict[str, list[str]] = {
            n: sorted((m for m in graph.neighbors(n) if m in self.index), key=_node_key)
            for n in self.nodes
        }
        self.hosts_per_pop = hosts_per_pop
        self._iface: dict[tuple[str, str], str] = {}
        for u in self.nodes:
            for v in self.adj[u]:
                self._iface[(u, v)] = _ip((10, 0), len(self._iface))
        self._next_hop: dict[str, dict[str, str]] = {}

    def lan(self, pop: str) -> str:
        """Address of ``pop``'s interface facing its own hosts."""
        return _ip((192, 168), self.index[pop])

    def interface(self, upstream: str, pop: str) -> str:
        """Address of ``pop``'s interface on the link from ``upstream``."""
        return self._iface[(upstream, pop)]

    def host(self, pop: str, k: int) -> str:
        """Address of destination host ``k`` behind ``pop``."""
        return _ip((172, 16), self.index[pop] * self.hosts_per_pop + k)

    def destinations(self) -> list[str]:
        """Every destination host, PoP by PoP."""
        return [self.host(p, k) for p in self.nodes for k in range(self.hosts_per_pop)]

    def pop_of(self, host: str) -> str:
        """The PoP a destination host is behind."""
        a, b, c, d = (int(x) for x in host.split("."))
        index = ((a << 24) + (b << 16) + (c << 8) + d) - ((172 << 24) + (16 << 16) + 1)
        return self.nodes[index // self.hosts_per_pop]

    def _tree(self, root: str) -> dict[str, str]:
        tree = self._next_hop.get(root)
        if tree is None:
            tree = {}
            seen = {root}
            queue = deque([root])
            while queue:
                u = queue.popleft()
                for v in self.adj[u]:
                    if v not in seen:
                        seen.add(v)
                        tree[v] = u
                        queue.append(v)
            self._next_hop[root] = tree
        return tree

    def pop_path(self, src: str, dst: str) -> list[str]:
        """PoPs from ``src`` to ``dst`` along ``dst``'s routing tree."""
        tree = self._tree(dst)
        path = [src]
        while path[-1] != dst:
            path.append(tree[path[-1]])
        return path

    def path(self, monitor_pop: str, destination: str) -> SimPath:
        """What a monitor behind ``monitor_pop`` sees towards a destination host."""
        pops = self.pop_path(monitor_pop, self.pop_of(destination))
        hops: list[str | None] = [self.lan(monitor_pop)]
        for u, v in zip(pops, pops[1:], strict=False):
            hops.append(self.interface(u, v))
        return SimPath(tuple(hops), len(hops) + 1)

    def prober(self, monitor_pop: str, destinations: Sequence[str]) -> ReplayProber:
        """A prober for a monitor behind ``monitor_pop``."""
        return ReplayProber({d: self.path(monitor_pop, d) for d in destinations})


def _node_key(node: str) -> tuple[int, str]:
    try:
        return (int(node), "")
    except ValueError:
        return (1 << 30, node)
