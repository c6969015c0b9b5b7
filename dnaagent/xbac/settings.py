"""The ``[xbac]`` configuration section: the RTT prediction service of the agent.

Kept apart from the service so that reading the configuration imports none of
it. The built-in defaults answer predictions and accept measurements from
applications, but send nothing: no active probing and no passive polling until
a configuration turns them on.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from dnaagent import schema
from dnaagent.schema import key
from dnaagent.xbac.group import GroupingParams
from dnaagent.xbac.predictor import PredictorParams


@dataclass
class XbacSection:
    """RTT predictions from shared experience (XBAC), and the measurements that feed them."""

    enabled: bool = key(True, "answer RTT predictions and accept measurements from applications")
    # Passive RTT: the kernel's TCP info of other applications' connections.
    passive: bool = key(
        False, "read the RTT of other applications' TCP connections from the kernel (sock_diag)"
    )
    passive_interval: float = key(
        30.0,
        "seconds between two readings of the kernel's TCP connections",
        schema.between(1, 86400),
    )
    passive_per_destination: float = key(
        60.0,
        "seconds between two passive measurements of one destination",
        schema.between(0, 86400),
    )
    passive_max_sockets: int = key(
        4096,
        "most connections examined per reading (the rest are counted and skipped)",
        schema.between(1, 1_000_000),
    )
    passive_include_loopback: bool = key(
        False, "also take connections to loopback, link-local and own addresses (for tests)"
    )
    # Active RTT: measurements this agent sends itself.
    method: str = key(
        "icmp",
        "how measure_rtt measures: icmp (echo) or tcp (connect time)",
        schema.one_of("icmp", "tcp"),
    )
    tcp_port: int = key(
        80, "TCP port of connect-time measurements (a refusal is an answer too)", schema.port
    )
    probe_timeout: float = key(
        2.0, "seconds to wait for one active measurement", schema.between(0.05, 30)
    )
    active_interval: float = key(
        0.0,
        "seconds between re-measurements of recently predicted targets (0: never probe unasked)",
        schema.between(0, 86400),
    )
    active_targets: int = key(
        16, "most recently predicted targets re-measured per round", schema.between(1, 1024)
    )
    # Prediction (Appendix C: DefaultModelOrder, DefaultPredictionTimeHorizon).
    order: int = key(8, "order p of the AR(p) model", schema.between(1, 64))
    horizon: float = key(60.0, "seconds ahead a prediction is made for", schema.between(0, 86400))
    # Grouping (Appendix C: Bootstrap... thresholds).
    relative_threshold: float = key(
        0.05, "grouping: largest relative difference to the leader's view", schema.between(0, 1)
    )
    absolute_threshold_ms: float = key(
        20.0,
        "grouping: largest absolute difference to the leader's view (ms)",
        schema.between(0, 10000),
    )
    leader_distance_ms: float = key(
        20.0, "grouping: largest RTT to the group leader (ms)", schema.between(0, 10000)
    )
    backups: int = key(
        3, "backup leaders of a group (NumberOfBackupLeaders)", schema.between(0, 16)
    )
    recent: int = key(
        64, "recent predictions kept for the MIB's prediction table", schema.between(1, 4096)
    )
    similar_groups: int = key(
        3,
        "other groups' leaders asked when this host's group has no basis for a prediction "
        "(0: never ask)",
        schema.between(0, 16),
    )

    def predictor_params(self) -> PredictorParams:
        """The predictor's parameters from this section."""
        return PredictorParams(order=self.order)

    def grouping_params(self) -> GroupingParams:
        """The grouping criterion's thresholds from this section (seconds)."""
        return GroupingParams(
            relative=self.relative_threshold,
            absolute=self.absolute_threshold_ms / 1000.0,
            leader_distance=self.leader_distance_ms / 1000.0,
        )

    def node_params(self) -> Any:
        """The group node's parameters (:class:`dnaagent.xbac.params.XbacParams`)."""
        from dnaagent.xbac.params import XbacParams

        return XbacParams(
            grouping=self.grouping_params(),
            predictor=self.predictor_params(),
            backups=self.backups,
            similar_groups=self.similar_groups,
        )


__all__ = ["XbacSection"]
