"""The write-handler registry: longest prefix wins, registration rules."""

from __future__ import annotations

import pytest

from dnaagent.snmp.tree import OID, Value
from dnaagent.snmp.writable import NO_ERROR, NOT_WRITABLE, Writables


class _Recorder:
    """A handler that remembers what it was asked."""

    def __init__(self, answer: int = NO_ERROR) -> None:
        self.answer = answer
        self.calls: list[tuple[str, OID]] = []

    def test(self, oid: OID, value: Value) -> int:
        self.calls.append(("test", oid))
        return self.answer

    def commit(self, oid: OID, value: Value) -> int:
        self.calls.append(("commit", oid))
        return self.answer

    def undo(self, oid: OID, value: Value) -> None:
        self.calls.append(("undo", oid))


def test_longest_prefix_wins() -> None:
    """find() picks the handler of the longest registered prefix of the OID."""
    reg = Writables()
    outer, inner = _Recorder(), _Recorder(NOT_WRITABLE)
    reg.register((1, 3, 6, 1, 3), outer)
    reg.register((1, 3, 6, 1, 3, 7, 2), inner)
    assert reg.find((1, 3, 6, 1, 3, 7, 2, 1, 0)) is inner
    assert reg.find((1, 3, 6, 1, 3, 7, 2)) is inner
    assert reg.find((1, 3, 6, 1, 3, 7, 3, 0)) is outer
    assert reg.find((1, 3, 6, 1, 2)) is None
    assert reg.prefixes() == [(1, 3, 6, 1, 3), (1, 3, 6, 1, 3, 7, 2)]


def test_register_rules() -> None:
    """An empty or duplicate prefix is refused; unregister removes the handler."""
    reg = Writables()
    with pytest.raises(ValueError):
        reg.register((), _Recorder())
    reg.register((1, 3), _Recorder())
    with pytest.raises(ValueError):
        reg.register((1, 3), _Recorder())
    reg.unregister((1, 3))
    reg.unregister((1, 3))
    assert reg.find((1, 3, 1)) is None
    assert len(reg) == 0
