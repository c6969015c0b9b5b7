"""dnaagent: a Distributed Network Agent.

Every host of a network runs the agent (``twistd dnaagent``). The agents test
their host and the network, alone and together, and hand the results to the
network management system through SNMP.
"""

__version__ = "0.1.0"
