"""Parameters of the XBAC group protocol (thesis Appendix C names in the comments).

Times are seconds, distances seconds (RTT), traffic bytes. The grouping thresholds and the
cluster detection parameters live in :class:`~dnaagent.xbac.group.GroupingParams` and
:class:`~dnaagent.xbac.cluster.ClusterParams`; :class:`XbacParams` holds them together with
the protocol's timers so that one object configures an agent's XBAC node.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from dnaagent.xbac.cluster import ClusterParams
from dnaagent.xbac.group import GroupingParams
from dnaagent.xbac.predictor import PredictorParams


@dataclass(frozen=True)
class XbacParams:
    """Everything an :class:`~dnaagent.xbac.node.XbacNode` can be tuned with."""

    grouping: GroupingParams = field(default_factory=GroupingParams)
    clusters: ClusterParams = field(default_factory=ClusterParams)
    predictor: PredictorParams = field(default_factory=PredictorParams)
    #: Meridian acceptance threshold beta and peers kept per ring.
    beta: float = 0.5
    per_ring: int = 8
    #: Leaders tried with the grouping criterion before founding a group (thesis §4.4 remedy).
    attempts: int = 3
    #: Most Meridian hops of one closest-leader search.
    max_hops: int = 8
    #: NumberOfBackupLeaders
    backups: int = 3
    #: DefaultLeaderAliveInterval: the leader's state broadcast (and member check) period.
    alive_interval: float = 15.0
    #: A backup leader that heard nothing from the leader this long asks it, then takes over.
    leader_timeout: float = 45.0
    #: State broadcasts a member may miss before the leader drops it.
    member_misses: int = 3
    #: A plain member that heard nothing from a leader this long bootstraps again.
    orphan_timeout: float = 300.0
    #: A leader alone in its group (it founded one because the overlay or the other leaders
    #: were not reachable yet) looks for a group to join this often (jittered by +-25 %).
    regroup_interval: float = 600.0
    #: Measurements peers may ask this node for (Meridian probes): per second and burst.
    probe_rate: float = 5.0
    probe_burst: int = 50
    #: How long a leader keeps sending its state to members it dropped for silence.
    lost_memory: float = 3600.0
    #: Further tries of a group request that timed out (they are idempotent).
    retries: int = 1
    #: DefaultRPCTimeout-like timeout of group requests.
    rpc_timeout: float = 2.0
    #: How long "is the target an XBAC host?" may take before a prediction gives up.
    info_timeout: float = 1.0
    #: DefaultBackupInterval: each primary entry is re-sent to its backup member this often.
    backup_interval: float = 300.0
    #: MaxClusterBackupInterval: a cluster whose hosts stay the same is copied to its backup
    #: at an interval doubling from backup_interval up to this.
    cluster_backup_max: float = 3600.0
    #: A backup copy not refreshed within this time expires (then promoted or dropped).
    backup_ttl: float = 900.0
    #: TimedEntryTimeout: a stored mapping or cluster not refreshed this long is dropped.
    entry_ttl: float = 86400.0
    #: ClusterInfoTimeStep: first summary broadcast delay, doubled after each broadcast.
    summary_step: float = 60.0
    #: ClusterInfoDuration: no more scheduled summary broadcasts for a cluster older than this.
    summary_duration: float = 3600.0
    #: MergeRequestWaitTime: the broadcaster collects merge requests this long.
    merge_wait: float = 10.0
    #: ClusterDetectionTimeStep-like period of the split pass and of the level reports.
    report_interval: float = 60.0
    split_interval: float = 600.0
    #: An unchanged level is reported again after this long (keeps the cluster entry alive).
    report_refresh: float = 1800.0
    #: A level or profile bin that moved by no more than this share (ClusterDetectionBandwidth)
    #: or by no more than ``report_floor`` seconds counts as unchanged: it is not reported.
    report_change: float = 0.02
    report_floor: float = 0.001
    #: Profile grid: ``points`` bins over ``span`` seconds (aligned on absolute time).
    span: float = 3600.0
    points: int = 8
    #: Byte budget per second for summary broadcasts of one node (token bucket) and its burst.
    budget: float = 200.0
    burst: float = 4000.0
    #: Group requests off the prediction path (store, delete, observe, report, summary) wait
    #: up to this long and travel together, one datagram per member (0: each alone).
    batch_delay: float = 5.0
    #: Leader records in the DHT live this long; the leader re-announces at half of it.
    announce_ttl: float = 600.0
    #: Largest group the protocol accepts (bounds every member list on the wire).
    max_members: int = 256
    #: Most hosts of one cluster carried in one message.
    max_cluster_hosts: int = 64
    #: Most (host, member) level records a cluster keeps (the newest): bounds its size.
    max_levels: int = 64
    #: Default overlay port of other agents, used to ask a target host for its group.
    port: int = 4001
    #: Cross-group predictions (thesis §7.1.1, :mod:`~dnaagent.xbac.similar`): other
    #: groups' leaders asked when the own group has no basis (0: never ask), the requester's
    #: hosts whose levels the request carries, how long it waits, how long a target no group
    #: could answer for is not asked about again, and answers given per second.
    similar_groups: int = 3
    similar_hosts: int = 16
    similar_timeout: float = 0.5
    similar_negative_ttl: float = 300.0
    similar_rate: float = 10.0

    def validate(self) -> None:
        """Raise ValueError when a value is out of range."""
        positive = (
            "alive_interval leader_timeout orphan_timeout regroup_interval lost_memory "
            "probe_rate rpc_timeout "
            "info_timeout backup_interval "
            "backup_ttl entry_ttl summary_step summary_duration merge_wait report_interval "
            "split_interval report_refresh span budget burst announce_ttl "
            "similar_timeout similar_negative_ttl similar_rate"
        ).split()
        for name in positive:
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be positive")
        if not 0 < self.beta < 1:
            raise ValueError("beta must be in (0, 1)")
        for name in ("per_ring", "attempts", "max_hops", "member_misses", "points"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1")
        if self.backups < 0:
            raise ValueError("backups must not be negative")
        if not 0 <= self.report_change < 1 or not 0 <= self.report_floor <= 1:
            raise ValueError("report_change must be in [0, 1) and report_floor in [0, 1] s")
        if not 0 <= self.batch_delay <= 30:
            raise ValueError("batch_delay must be between 0 and 30 seconds")
        if not 0 <= self.retries <= 5:
            raise ValueError("retries must be between 0 and 5")
        if self.probe_burst < 1:
            raise ValueError("probe_burst must be at least 1")
        if self.orphan_timeout <= self.leader_timeout:
            raise ValueError("orphan_timeout must exceed leader_timeout")
        if self.leader_timeout <= self.alive_interval:
            raise ValueError("leader_timeout must exceed alive_interval")
        if self.cluster_backup_max < self.backup_interval:
            raise ValueError("cluster_backup_max must be at least backup_interval")
        if self.backup_ttl <= self.backup_interval:
            raise ValueError("backup_ttl must exceed backup_interval")
        if not 0 <= self.similar_groups <= 16 or not 1 <= self.similar_hosts <= 64:
            raise ValueError("similar_groups in [0, 16] and similar_hosts in [1, 64]")
        if not 1 <= self.max_levels <= 1024:
            raise ValueError("max_levels must be between 1 and 1024")
        if not 2 <= self.max_members <= 4096 or not 1 <= self.max_cluster_hosts <= 512:
            raise ValueError("max_members in [2, 4096] and max_cluster_hosts in [1, 512]")
