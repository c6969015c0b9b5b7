"""XBAC on one host alone: a group of one, over the pure :class:`XbacPredictor`.

:class:`LocalXbac` has the interface of the distributed group node
(:class:`dnaagent.xbac.node.XbacNode`): ``start``, ``stop``, ``add_measurement``,
``predict_rtt`` (a Deferred), ``report_prediction_quality`` and ``status``. The
agent uses it when the overlay is off, so that applications still get
predictions from this host's own measurements (warm pairs only: without a
group there is nobody else's experience to draw on).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Hashable
from typing import Any

from twisted.internet import defer

from dnaagent.xbac.predictor import Prediction, PredictorParams, XbacPredictor

#: Quality reports kept (relative errors) for the status.
QUALITY_KEPT = 256


class LocalXbac:
    """A single-host XBAC node: measurements in, predictions out, no group traffic.

    ``measure`` (``address -> Deferred[float | None]``, seconds) is accepted for the
    interface's sake; a group of one never needs to probe anybody.
    """

    def __init__(
        self,
        clock: Any,
        measure: Callable[[str], Any] | None = None,
        params: PredictorParams | None = None,
        host_id: Hashable | None = None,
        horizon: float = 0.0,
    ) -> None:
        self.clock = clock
        self.horizon = horizon
        self.measure = measure
        self.host_id: Hashable = host_id if host_id is not None else "self"
        self.predictor = XbacPredictor(params)
        self.predictor.set_groups({self.host_id: self.host_id})
        self.running = False
        self.measurements = 0
        self.rejected = 0
        self.quality: list[float] = []

    def start(self) -> defer.Deferred[None]:
        """Start (nothing to join)."""
        self.running = True
        return defer.succeed(None)

    def stop(self, graceful: bool = True) -> defer.Deferred[None]:
        """Stop (nothing to hand over)."""
        self.running = False
        return defer.succeed(None)

    def add_measurement(self, target: Hashable, rtt: float, t: float | None = None) -> bool:
        """Record an RTT (seconds) to ``target`` measured at ``t`` (now by default)."""
        when = self.clock.seconds() if t is None else t
        kept = self.predictor.add_measurement(self.host_id, target, rtt, when)
        if kept:
            self.measurements += 1
        else:
            self.rejected += 1
        return kept

    def predict_rtt(self, target: Hashable) -> defer.Deferred[Prediction | None]:
        """The prediction to ``target`` ``horizon`` seconds from now, or None when this
        host has no basis for one."""
        t = self.clock.seconds() + self.horizon
        return defer.succeed(self.predictor.predict_rtt(self.host_id, target, t))

    def report_prediction_quality(
        self, target: Hashable, predicted: float, measured: float
    ) -> None:
        """An application's check: the error is kept, the measured value joins the series."""
        if not (math.isfinite(predicted) and math.isfinite(measured)) or measured <= 0:
            return
        self.quality.append(abs(predicted - measured) / measured)
        del self.quality[:-QUALITY_KEPT]
        self.add_measurement(target, measured)

    def status(self) -> dict[str, Any]:
        """Role, group and counts, in the shape of the group node's status."""
        table = self.predictor.tables.get(self.host_id)
        return {
            "mode": "local",
            "role": "leader",
            "group": str(self.host_id),
            "members": 1,
            "clusters": len(table.clusters) if table is not None else 0,
            "targets": len(self.predictor.targets.get(self.host_id, ())),
            "measurements": self.measurements,
            "rejected": self.rejected,
            "quality_reports": len(self.quality),
        }
