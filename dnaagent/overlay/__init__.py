"""The Kademlia overlay that connects the agents.

160-bit node IDs derived from Ed25519 keys, k-buckets with replacement caches,
asynchronous iterative lookups, DHT storage and application RPC on one UDP
port. :class:`~dnaagent.overlay.node.OverlayNode` is the entry point; see
``docs/overlay.md``.

The names below are imported on first use, so that reading the overlay's
configuration section (as ``dnactl`` does) does not load the overlay itself.
"""

from __future__ import annotations

import importlib
from typing import Any

_WHERE = {
    "Contact": "contact",
    "Peer": "contact",
    "JoinError": "errors",
    "NotRunning": "errors",
    "OverlayError": "errors",
    "PeerNotFound": "errors",
    "RemoteError": "errors",
    "RequestTimeout": "errors",
    "StoreRefused": "errors",
    "Identity": "identity",
    "load_or_create_identity": "identity",
    "OverlayNode": "node",
    "OverlayConfig": "settings",
}

__all__ = sorted(_WHERE)


def __getattr__(name: str) -> Any:
    try:
        module = _WHERE[name]
    except KeyError:
        raise AttributeError(f"module 'dnaagent.overlay' has no attribute {name!r}") from None
    return getattr(importlib.import_module(f"dnaagent.overlay.{module}"), name)
