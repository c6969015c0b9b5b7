"""Vivaldi network coordinates (Dabek et al., SIGCOMM 2004): the baseline for cold pairs.

Each node has a 2-D Euclidean position plus a non-negative height (the access link) and a
local error estimate. A measured RTT moves the node along the spring force, with the
adaptive timestep ``delta = c_c * w`` where ``w = e_i / (e_i + e_j)`` weighs the node's
confidence against the peer's, and the error is an exponentially weighted moving average of
the relative sample error with weight ``c_e * w``.
"""

from __future__ import annotations

import math
import random
from collections.abc import Hashable
from dataclasses import dataclass

import numpy as np


@dataclass
class Coordinate:
    """A Vivaldi coordinate: position in the plane, height and local error."""

    pos: np.ndarray
    height: float = 0.0
    error: float = 1.0


class Vivaldi:
    """Vivaldi coordinates of a set of nodes, updated one RTT sample at a time."""

    def __init__(
        self,
        cc: float = 0.25,
        ce: float = 0.25,
        dims: int = 2,
        seed: int = 0,
        min_height: float = 1e-5,
    ) -> None:
        self.cc = cc
        self.ce = ce
        self.dims = dims
        self.min_height = min_height
        self._rng = random.Random(seed)
        self.coords: dict[Hashable, Coordinate] = {}

    def coordinate(self, node: Hashable) -> Coordinate:
        """The coordinate of ``node`` (created at the origin with error 1 on first use)."""
        c = self.coords.get(node)
        if c is None:
            c = Coordinate(pos=np.zeros(self.dims), height=self.min_height)
            self.coords[node] = c
        return c

    def distance(self, a: Hashable, b: Hashable) -> float:
        """Predicted RTT between ``a`` and ``b``: plane distance plus both heights."""
        ca, cb = self.coordinate(a), self.coordinate(b)
        return float(np.linalg.norm(ca.pos - cb.pos)) + ca.height + cb.height

    def update(self, node: Hashable, peer: Hashable, rtt: float) -> None:
        """``node`` measured ``rtt`` to ``peer``: move ``node`` toward agreement."""
        if node == peer or not math.isfinite(rtt) or rtt <= 0:
            return
        ci, cj = self.coordinate(node), self.coordinate(peer)
        w = ci.error / (ci.error + cj.error) if ci.error + cj.error > 0 else 0.5
        diff = ci.pos - cj.pos
        plane = float(np.linalg.norm(diff))
        dist = plane + ci.height + cj.height
        es = abs(dist - rtt) / rtt
        ci.error = min(es * self.ce * w + ci.error * (1.0 - self.ce * w), 2.0)
        delta = self.cc * w
        if plane > 1e-12:
            unit = diff / plane
        else:
            v = np.array([self._rng.uniform(-1, 1) for _ in range(self.dims)])
            unit = v / (np.linalg.norm(v) or 1.0)
        force = delta * (rtt - dist)
        # Height vectors: the plane part moves along the unit vector, the height by its share
        # of the whole distance (the access link takes its part of the error).
        ci.pos = ci.pos + force * unit
        if dist > 0:
            ci.height = max(self.min_height, ci.height + force * (ci.height + cj.height) / dist)
