"""AgentX (RFC 2741) subagent: dnaagent serves its MIB through a running ``snmpd``.

:mod:`~dnaagent.snmp.agentx.pdu` encodes and decodes AgentX PDUs (pure
functions, no I/O); :mod:`~dnaagent.snmp.agentx.protocol` answers the master
agent's requests from the :class:`~dnaagent.snmp.tree.MibTree` and sends
Open, Register, Ping, Notify and Close; :mod:`~dnaagent.snmp.agentx.subagent`
is the service that connects to the master, and reconnects when it restarts.
"""
