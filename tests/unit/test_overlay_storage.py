"""Tests of the DHT value store and its limits (dnaagent.overlay.storage)."""

from __future__ import annotations

import pytest

from dnaagent.overlay.errors import StoreRefused
from dnaagent.overlay.storage import ValueStore

K1, K2, K3 = b"\x01" * 20, b"\x02" * 20, b"\x03" * 20
P1, P2 = b"\xa1" * 20, b"\xa2" * 20


def test_values_form_a_set_with_expiry() -> None:
    """A key holds several values; storing one again extends its life; expiry drops it."""
    s = ValueStore()
    s.put(K1, b"a", 10, P1, now=0)
    s.put(K1, b"b", 100, P2, now=0)
    s.put(K1, b"a", 50, P1, now=5)
    assert s.get(K1, now=6) == [(b"b", 94), (b"a", 49)]
    assert s.expire(now=54) == 0
    assert s.expire(now=55) == 1
    assert s.get(K1, now=56) == [(b"b", 44)]
    assert s.expire(now=100) == 1
    assert len(s) == 0 and s.values == 0 and s.bytes == 0
    assert s.keys_of(P1) == 0


def test_limits() -> None:
    """Value size, values per key, keys per peer and the totals are enforced."""
    s = ValueStore(
        max_value_size=4, max_values_per_key=2, max_keys_per_peer=2, max_values=4, max_bytes=100
    )
    with pytest.raises(StoreRefused, match="value_too_large"):
        s.put(K1, b"12345", 10, P1, 0)
    s.put(K1, b"a", 10, P1, 0)
    s.put(K1, b"b", 10, P1, 0)
    with pytest.raises(StoreRefused) as info:
        s.put(K1, b"c", 10, P2, 0)
    assert info.value.reason == "too_many_values_for_key"
    s.put(K2, b"a", 10, P1, 0)
    with pytest.raises(StoreRefused) as info:
        s.put(K3, b"a", 10, P1, 0)
    assert info.value.reason == "too_many_keys_for_peer"
    s.put(K3, b"a", 10, P2, 0)
    with pytest.raises(StoreRefused) as info:
        s.put(K3, b"b", 10, P2, 0)
    assert info.value.reason == "store_full"
    s.expire(now=10)
    s.put(K3, b"b", 10, P1, 10)
    assert s.values == 1 and s.keys_of(P1) == 1
