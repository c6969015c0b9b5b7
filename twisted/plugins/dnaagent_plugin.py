"""Twisted plugin: makes ``twistd dnaagent`` start the Distributed Network Agent.

Only a lazy service maker lives here, so that loading Twisted's plugin list
imports nothing of the agent.
"""

from twisted.application.service import ServiceMaker

dnaagent = ServiceMaker(
    "Distributed Network Agent",
    "dnaagent.tap",
    "Test the host and the network, alone and with peers, and report to the NMS.",
    "dnaagent",
)
