"""A dnaagent AgentX subagent serving a test table, run as a process by the AgentX tests.

``python -m tests.integration.agentx_harness --master unix:/tmp/x/agentx.sock``
serves, under :data:`ROOT` (``experimental.9999``, the DNAX-TEST-MIB of
:data:`TEST_MIB`): a writable scalar ``dnaxName.0`` and a table of ``--rows``
rows with four columns (index, label, counter, gauge), i.e. ``4 * rows + 1``
instances. SETs of ``dnaxName.0`` go through a
:class:`~dnaagent.snmp.writable.Writables` handler that updates the tree and
appends ``commit VALUE`` / ``undo VALUE`` lines to ``--set-log``. The process
runs on Twisted's asyncio reactor like the agent, logs to stderr, and ends on
SIGTERM after closing its session.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

from dnaagent.snmp.tree import OID, MibTree, Value
from dnaagent.snmp.writable import NO_ERROR, WRONG_LENGTH, WRONG_TYPE, WRONG_VALUE, Writables

ROOT: OID = (1, 3, 6, 1, 3, 9999)
NAME: OID = ROOT + (1, 1, 0)
TABLE_ENTRY: OID = ROOT + (2, 1)

TEST_MIB = """DNAX-TEST-MIB DEFINITIONS ::= BEGIN

IMPORTS
    MODULE-IDENTITY, OBJECT-TYPE, Integer32, Counter32, Gauge32, experimental
        FROM SNMPv2-SMI
    DisplayString
        FROM SNMPv2-TC;

dnaxTest MODULE-IDENTITY
    LAST-UPDATED "202401010000Z"
    ORGANIZATION "dnaagent"
    CONTACT-INFO "dnaagent tests"
    DESCRIPTION  "Objects served by the AgentX test subagent."
    ::= { experimental 9999 }

dnaxScalars OBJECT IDENTIFIER ::= { dnaxTest 1 }

dnaxName OBJECT-TYPE
    SYNTAX      DisplayString (SIZE (0..64))
    MAX-ACCESS  read-write
    STATUS      current
    DESCRIPTION "A writable name."
    ::= { dnaxScalars 1 }

dnaxTable OBJECT-TYPE
    SYNTAX      SEQUENCE OF DnaxEntry
    MAX-ACCESS  not-accessible
    STATUS      current
    DESCRIPTION "Rows of test data."
    ::= { dnaxTest 2 }

dnaxEntry OBJECT-TYPE
    SYNTAX      DnaxEntry
    MAX-ACCESS  not-accessible
    STATUS      current
    DESCRIPTION "One row."
    INDEX       { dnaxIndex }
    ::= { dnaxTable 1 }

DnaxEntry ::= SEQUENCE {
    dnaxIndex  Integer32,
    dnaxLabel  DisplayString,
    dnaxCount  Counter32,
    dnaxGauge  Gauge32
}

dnaxIndex OBJECT-TYPE
    SYNTAX      Integer32 (1..2147483647)
    MAX-ACCESS  read-only
    STATUS      current
    DESCRIPTION "Row number."
    ::= { dnaxEntry 1 }

dnaxLabel OBJECT-TYPE
    SYNTAX      DisplayString
    MAX-ACCESS  read-only
    STATUS      current
    DESCRIPTION "Row label."
    ::= { dnaxEntry 2 }

dnaxCount OBJECT-TYPE
    SYNTAX      Counter32
    MAX-ACCESS  read-only
    STATUS      current
    DESCRIPTION "A counter."
    ::= { dnaxEntry 3 }

dnaxGauge OBJECT-TYPE
    SYNTAX      Gauge32
    MAX-ACCESS  read-only
    STATUS      current
    DESCRIPTION "A gauge."
    ::= { dnaxEntry 4 }

END
"""


def build_tree(rows: int) -> MibTree:
    """The test tree: ``dnaxName.0`` and ``rows`` rows of four columns."""
    tree = MibTree()
    values = {NAME: Value.octets("initial")}
    for i in range(1, rows + 1):
        values[TABLE_ENTRY + (1, i)] = Value.integer(i)
        values[TABLE_ENTRY + (2, i)] = Value.octets(f"row-{i}")
        values[TABLE_ENTRY + (3, i)] = Value.counter32(i * 1000)
        values[TABLE_ENTRY + (4, i)] = Value.gauge32(i % 100)
    tree.replace_subtree(ROOT, values)
    return tree


class NameHandler:
    """Writes ``dnaxName.0``: 1 to 64 octets, never the text ``forbidden``."""

    def __init__(self, tree: MibTree, log_path: Path | None) -> None:
        self.tree = tree
        self.log_path = log_path
        self._before: Value | None = None

    def _record(self, line: str) -> None:
        if self.log_path is not None:
            with self.log_path.open("a") as f:
                f.write(line + "\n")

    def test(self, oid: OID, value: Value) -> int:
        """Check type, length and value."""
        if value.kind.name != "OCTETS":
            return WRONG_TYPE
        if not 1 <= len(value.value) <= 64:
            return WRONG_LENGTH
        if value.value == b"forbidden":
            return WRONG_VALUE
        return NO_ERROR

    def commit(self, oid: OID, value: Value) -> int:
        """Store the new name in the tree."""
        self._before = self.tree.get(oid)
        self.tree.set(oid, value)
        self._record("commit " + value.value.decode("utf-8", "replace"))
        return NO_ERROR

    def undo(self, oid: OID, value: Value) -> None:
        """Put the previous name back."""
        if self._before is not None:
            self.tree.set(oid, self._before)
        self._record("undo " + value.value.decode("utf-8", "replace"))


def main(argv: list[str] | None = None) -> None:
    """Run the subagent until SIGTERM."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--master", required=True)
    parser.add_argument("--rows", type=int, default=300)
    parser.add_argument("--set-log", type=Path)
    parser.add_argument("--ping-interval", type=float, default=5.0)
    parser.add_argument("--reconnect-max", type=float, default=2.0)
    args = parser.parse_args(argv)

    from twisted.internet import asyncioreactor

    asyncioreactor.install(asyncio.new_event_loop())
    from twisted.internet import reactor
    from twisted.logger import globalLogBeginner, textFileLogObserver

    from dnaagent.snmp.agentx.settings import AgentxSection
    from dnaagent.snmp.agentx.subagent import AgentxSubagent

    globalLogBeginner.beginLoggingTo([textFileLogObserver(sys.stderr)])
    tree = build_tree(args.rows)
    writables = Writables()
    writables.register(NAME, NameHandler(tree, args.set_log))
    section = AgentxSection(
        enabled=True,
        master=args.master,
        subtrees=[".".join(map(str, ROOT))],
        ping_interval=args.ping_interval,
        reconnect_interval=0.2,
        reconnect_max=args.reconnect_max,
        request_timeout=5.0,
    )
    service = AgentxSubagent(section, reactor, tree, writables)
    service.startService()
    reactor.addSystemEventTrigger("before", "shutdown", service.stopService)
    reactor.run()


if __name__ == "__main__":
    main()
