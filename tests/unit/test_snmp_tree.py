"""The MIB tree cache: ordering, GETNEXT, subtree replacement, value checks."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dnaagent.snmp.tree import Kind, MibTree, Value, format_oid, parse_oid

oids = st.lists(st.integers(0, 50), min_size=2, max_size=6).map(tuple)


@given(st.sets(oids, max_size=40), oids)
def test_next_is_the_lexicographic_successor(instances, probe) -> None:
    """next() returns the smallest stored OID strictly greater than the probe."""
    tree = MibTree()
    for oid in instances:
        tree.set(oid, Value.integer(len(oid)))
    expected = min((o for o in instances if o > probe), default=None)
    found = tree.next(probe)
    assert (found[0] if found else None) == expected


def test_walk_and_replace_subtree() -> None:
    """replace_subtree swaps exactly one subtree; walk sees it in order."""
    tree = MibTree()
    tree.set((1, 3, 1), Value.integer(1))
    tree.set((1, 3, 2, 1), Value.integer(2))
    tree.set((1, 3, 2, 2), Value.integer(3))
    tree.set((1, 3, 3), Value.integer(4))
    tree.replace_subtree(
        (1, 3, 2), {(1, 3, 2, 9): Value.octets("x"), (1, 3, 2, 5): Value.integer(5)}
    )
    assert [o for o, _ in tree.walk()] == [(1, 3, 1), (1, 3, 2, 5), (1, 3, 2, 9), (1, 3, 3)]
    assert [o for o, _ in tree.walk((1, 3, 2))] == [(1, 3, 2, 5), (1, 3, 2, 9)]
    with pytest.raises(ValueError):
        tree.replace_subtree((1, 3, 2), {(1, 4): Value.integer(0)})


def test_remove_and_change_listeners() -> None:
    """Writes notify listeners; removing a missing OID is harmless."""
    tree = MibTree()
    seen = []
    tree.on_change(lambda t: seen.append(t.version))
    tree.set((1, 1), Value.integer(1))
    tree.remove((1, 1))
    tree.remove((1, 1))
    assert seen == [1, 2] and len(tree) == 0 and tree.next(()) is None


def test_value_types_are_checked_and_wrap() -> None:
    """Values are range-checked; counters wrap and gauges latch as RFC 2578 says."""
    assert Value.counter32(2**32 + 5).value == 5
    assert Value.gauge32(2**40).value == 2**32 - 1
    assert Value.timeticks(1.5).value == 150
    assert Value.octets("é").value == "é".encode()
    with pytest.raises(ValueError):
        Value(Kind.INTEGER, 2**31)
    with pytest.raises(TypeError):
        Value(Kind.OCTETS, "text")
    with pytest.raises(TypeError):
        Value(Kind.IPADDRESS, b"\x01\x02")


def test_oid_text_round_trip() -> None:
    """Dotted OIDs parse and format, with or without a leading dot."""
    assert parse_oid(".1.3.6.1.2.1") == (1, 3, 6, 1, 2, 1)
    assert format_oid((1, 3, 6)) == "1.3.6"
    for bad in ("1.x", "1", "1.-2"):
        with pytest.raises(ValueError):
            parse_oid(bad)
