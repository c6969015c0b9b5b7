"""Tests of the simulator's global view of live nodes."""

from __future__ import annotations

import random

from hypothesis import given, settings
from hypothesis import strategies as st

from dnaagent.sim.globalview import GlobalView


def brute(ids: list[int], key: int, k: int, exclude: int | None = None) -> list[int]:
    """The k XOR-closest IDs by scanning all of them."""
    return sorted((x for x in ids if x != exclude), key=lambda x: x ^ key)[:k]


def test_add_remove_contains() -> None:
    """IDs can be added once, removed, and tested for membership."""
    view = GlobalView()
    for x in (5, 1, 5, 9):
        view.add(x)
    assert len(view) == 3 and view.ids() == [1, 5, 9]
    view.remove(5)
    view.remove(42)
    assert 5 not in view and 9 in view and "9" not in view
    assert len(view) == 2


def test_closest_matches_brute_force_on_random_ids() -> None:
    """k-closest agrees with a full scan for random 160-bit IDs and keys."""
    rng = random.Random(1)
    ids = [rng.getrandbits(160) for _ in range(3000)]
    view = GlobalView()
    for x in ids:
        view.add(x)
    for _ in range(200):
        key = rng.getrandbits(160)
        assert view.closest(key, 20) == brute(ids, key, 20)
        me = rng.choice(ids)
        assert view.closest(me, 5, exclude=me) == brute(ids, me, 5, exclude=me)


def test_small_populations() -> None:
    """With fewer IDs than k every other ID comes back; an empty view gives nothing."""
    view = GlobalView()
    assert view.closest(7, 5) == []
    for x in (1, 2, 3):
        view.add(x)
    assert view.closest(2, 5, exclude=2) == [3, 1]
    assert view.closest(0, 0) == []


@settings(max_examples=200, deadline=None)
@given(
    ids=st.sets(st.integers(0, 2**12 - 1), max_size=80),
    key=st.integers(0, 2**12 - 1),
    k=st.integers(1, 25),
    exclude_first=st.booleans(),
)
def test_closest_property(ids: set[int], key: int, k: int, exclude_first: bool) -> None:
    """For any small ID space, k-closest equals the brute-force answer."""
    view = GlobalView(bits=12)
    for x in ids:
        view.add(x)
    exclude = min(ids) if ids and exclude_first else None
    assert view.closest(key, k, exclude) == brute(sorted(ids), key, k, exclude)
