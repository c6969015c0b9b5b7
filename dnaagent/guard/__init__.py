"""Keeping the agent from becoming an abuse amplifier (DESIGN principle 5).

A peer may ask this agent only for the request kinds of the catalogue
(:mod:`~dnaagent.guard.catalogue`), with bounded parameters, within
per-peer and per-target rate limits (:mod:`~dnaagent.guard.limits`), and
never towards a denied target (:mod:`~dnaagent.guard.denylist`).
:class:`~dnaagent.guard.guard.Guard` puts the three together. Everything
here is pure: time comes from an injected clock.
"""

from dnaagent.guard.catalogue import CATALOGUE, Refused, Request, validate
from dnaagent.guard.denylist import DenyList
from dnaagent.guard.guard import Guard, GuardLimits
from dnaagent.guard.limits import TargetCap, TokenBucket, TokenBuckets

__all__ = [
    "CATALOGUE",
    "DenyList",
    "Guard",
    "GuardLimits",
    "Refused",
    "Request",
    "TargetCap",
    "TokenBucket",
    "TokenBuckets",
    "validate",
]
