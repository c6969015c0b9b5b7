"""Writable MIB objects: who handles a SET, in two phases.

Reads come from the :class:`~dnaagent.snmp.tree.MibTree`; writes go to a
:class:`WriteHandler` registered for an OID prefix. Both front ends (the
embedded agent and the AgentX subagent) drive the same handlers with the same
phases, which map onto AgentX TestSet / CommitSet / UndoSet (RFC 2741 §7.2.4)
and onto the pysnmp write phases:

1. ``test(oid, value)`` for every varbind: check type, length, value and
   consistency without side effects; a non-zero SNMP error-status stops the
   request.
2. ``commit(oid, value)`` for every varbind: do it. A non-zero status makes the
   front end call ``undo`` on the varbinds already committed.
3. ``undo(oid, value)``: take back a commit as far as possible.

Whether a request may write at all (SNMPv3 authPriv users only) is decided by
the access control of the front end before a handler is asked.
"""

from __future__ import annotations

import bisect
from typing import Any, Protocol

from twisted.logger import Logger

from dnaagent.snmp import mib
from dnaagent.snmp.tree import OID, Kind, MibTree, Value, format_oid, is_prefix

# SNMPv2 error-status values (RFC 3416 §3) a handler may return.
NO_ERROR = 0
TOO_BIG = 1
GEN_ERR = 5
NO_ACCESS = 6
WRONG_TYPE = 7
WRONG_LENGTH = 8
WRONG_ENCODING = 9
WRONG_VALUE = 10
NO_CREATION = 11
INCONSISTENT_VALUE = 12
RESOURCE_UNAVAILABLE = 13
COMMIT_FAILED = 14
UNDO_FAILED = 15
NOT_WRITABLE = 17
INCONSISTENT_NAME = 18


class WriteHandler(Protocol):
    """The SET phases of one writable object (or a table's writable column)."""

    def test(self, oid: OID, value: Value) -> int:
        """Check a write without doing it; 0 or an SNMP error-status."""

    def commit(self, oid: OID, value: Value) -> int:
        """Do the write; 0 or an SNMP error-status (commitFailed, ...)."""

    def undo(self, oid: OID, value: Value) -> None:
        """Take back a commit of the same request."""


class Writables:
    """Write handlers by OID prefix; the longest registered prefix wins."""

    def __init__(self) -> None:
        self._prefixes: list[OID] = []
        self._handlers: dict[OID, WriteHandler] = {}

    def register(self, prefix: OID, handler: WriteHandler) -> None:
        """Handle SETs of every instance under ``prefix`` (or of ``prefix`` itself)."""
        if not prefix:
            raise ValueError("a write handler needs a non-empty OID prefix")
        if prefix in self._handlers:
            raise ValueError(f"{format_oid(prefix)} already has a write handler")
        bisect.insort(self._prefixes, prefix)
        self._handlers[prefix] = handler

    def unregister(self, prefix: OID) -> None:
        """Remove the handler of ``prefix`` (no error when absent)."""
        if self._handlers.pop(prefix, None) is not None:
            self._prefixes.remove(prefix)

    def find(self, oid: OID) -> WriteHandler | None:
        """The handler of the longest registered prefix of ``oid``, or None."""
        best: OID | None = None
        for prefix in self._prefixes:
            if is_prefix(prefix, oid) and (best is None or len(prefix) > len(best)):
                best = prefix
        return self._handlers[best] if best is not None else None

    def prefixes(self) -> list[OID]:
        """The registered prefixes in OID order."""
        return list(self._prefixes)

    def __len__(self) -> int:
        return len(self._prefixes)


class RunTestHandler:
    """``dnaTestRun.<module>.<test> = run(2)``: the Mediator runs the test now.

    The test phase checks the row exists (noCreation otherwise), the type
    (wrongType) and the value (wrongValue: only run(2) may be written). The
    commit starts the run with origin ``snmp`` and shows running(3) in the
    tree until the updater sees the result. A started run cannot be taken
    back: undo only logs.
    """

    log = Logger()

    def __init__(self, agent: Any, tree: MibTree | None = None) -> None:
        self.agent = agent
        self.tree = tree
        self.started = 0

    def _target(self, oid: OID) -> tuple[str, str] | None:
        if not is_prefix(mib.DNA_TEST_RUN, oid):
            return None
        names = mib.parse_test_index(oid[len(mib.DNA_TEST_RUN) :])
        mediator = getattr(self.agent, "mediator", None)
        if names is None or mediator is None:
            return None
        module = mediator.modules.get(names[0])
        if module is None or names[1] not in {spec.name for spec in module.tests}:
            return None
        return names

    def test(self, oid: OID, value: Value) -> int:
        """Check that the row exists and the value is run(2)."""
        if self._target(oid) is None:
            return NO_CREATION
        if value.kind is not Kind.INTEGER:
            return WRONG_TYPE
        if value.value != mib.RUN_RUN:
            return WRONG_VALUE
        return NO_ERROR

    def commit(self, oid: OID, value: Value) -> int:
        """Start the run; commitFailed if the Mediator refuses it."""
        target = self._target(oid)
        if target is None:
            return COMMIT_FAILED
        module, test = target
        tree = self.tree if self.tree is not None and self.tree.get(oid) is not None else None
        if tree is not None:
            # Before the run: a test that ends at once shows idle(1) again.
            tree.set(oid, Value.integer(mib.RUN_RUNNING))
        try:
            d = self.agent.mediator.run(module, [test], origin="snmp")
        except Exception:
            self.log.failure("starting {module}.{test} from SNMP failed", module=module, test=test)
            if tree is not None:
                tree.set(oid, Value.integer(mib.RUN_IDLE))
            return COMMIT_FAILED
        d.addErrback(
            lambda f: self.log.failure(
                "{module}.{test} started from SNMP failed", f, module=module, test=test
            )
        )
        self.started += 1
        self.log.info("SNMP manager started {module}.{test}", module=module, test=test)
        return NO_ERROR

    def undo(self, oid: OID, value: Value) -> None:
        """A started run goes on; say so in the log."""
        self.log.warn("cannot take back a test run started by SNMP ({oid})", oid=format_oid(oid))
