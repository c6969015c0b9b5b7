"""The Kademlia overlay that connects the agents.

160-bit node IDs derived from Ed25519 keys, k-buckets with replacement caches,
asynchronous iterative lookups, DHT storage and application RPC on one UDP
port. :class:`~dnaagent.overlay.node.OverlayNode` is the entry point; see
``docs/overlay.md``.
"""

from dnaagent.overlay.contact import Contact, Peer
from dnaagent.overlay.errors import (
    JoinError,
    NotRunning,
    OverlayError,
    PeerNotFound,
    RemoteError,
    RequestTimeout,
    StoreRefused,
)
from dnaagent.overlay.identity import Identity, load_or_create_identity
from dnaagent.overlay.node import OverlayNode
from dnaagent.overlay.settings import OverlayConfig

__all__ = [
    "Contact",
    "Identity",
    "JoinError",
    "NotRunning",
    "OverlayConfig",
    "OverlayError",
    "OverlayNode",
    "Peer",
    "PeerNotFound",
    "RemoteError",
    "RequestTimeout",
    "StoreRefused",
    "load_or_create_identity",
]
