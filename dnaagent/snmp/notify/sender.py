"""Sending one notification to one target: the small interface and pysnmp.

:class:`Sender` is all the notification service needs: ``send(target,
varbinds)`` returns a Deferred that fires when a trap has been handed to the
network or an inform has been acknowledged, and fails otherwise (no
acknowledgement within the timeout, a refused v3 user, a socket error).
Retries are not the sender's business: the service retries informs from the
persisted queue, so the sender makes exactly one attempt.

:class:`PysnmpSender` implements it with pysnmp 7 on the running asyncio
loop (Twisted's asyncio reactor): SNMPv2c and SNMPv3 (authPriv, SHA-2 and
AES) traps and informs to IPv4 and IPv6 targets. Tests use a fake with the
same interface.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
from collections.abc import Sequence
from typing import Any, Protocol

from twisted.internet.defer import Deferred
from twisted.logger import Logger

from dnaagent.errors import DnaAgentError
from dnaagent.snmp.notify.targets import TRAP, Target
from dnaagent.snmp.notify.varbinds import VarBind
from dnaagent.snmp.tree import Kind, Value, format_oid

# The embedded agent's engine state file (dnaagent.snmp.embedded.ENGINE_FILE).
ENGINE_FILE = "snmp-engine.json"


class SendError(DnaAgentError, RuntimeError):
    """A notification could not be delivered by this attempt."""


class NotAcknowledged(SendError):
    """An inform got no acknowledgement within the timeout."""


class Sender(Protocol):
    """Sends one notification to one target, once."""

    def send(self, target: Target, varbinds: Sequence[VarBind]) -> Deferred[None]:
        """Fire when sent (trap) or acknowledged (inform); fail with :class:`SendError`."""

    def prepare(self) -> None:
        """Do slow one-time work now (at start) rather than at the first send."""

    def close(self) -> None:
        """Release sockets and timers."""


def engine_id_for(state_dir: str) -> bytes:
    """The agent's SNMP engine ID, shared with the embedded agent.

    It is read from ``STATE_DIR/snmp-engine.json``, the file where the
    embedded agent keeps its engine ID and boot counter. When the file does
    not hold one yet, an ID is made (RFC 3411 format 5: enterprise 0, then
    12 random octets) and written there with a boot count of 0, so that the
    embedded agent, started later, uses the same ID.
    """
    path = os.path.join(state_dir, ENGINE_FILE)
    try:
        with open(path) as f:
            data = json.load(f)
        octets = bytes.fromhex(str(data.get("engine_id", "")))
        if 5 <= len(octets) <= 32:
            return octets
    except FileNotFoundError:
        pass
    except (OSError, ValueError, AttributeError):
        Logger().warn("{path} holds no readable engine ID; making a new one", path=path)
    octets = bytes([0x80, 0, 0, 0, 5]) + os.urandom(12)
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump({"engine_id": octets.hex(), "boots": 0}, f)
        f.flush()
        os.fsync(f.fileno())
    os.chmod(tmp, 0o600)
    os.replace(tmp, path)
    return octets


class PysnmpSender:
    """Traps and informs with pysnmp 7 on the reactor's asyncio loop.

    ``engine_id`` is the snmpEngineID of this sender (the authoritative
    engine of its v3 traps: receivers need it in ``createUser -e``).
    ``timeout`` is how long one inform waits for its acknowledgement.
    """

    log = Logger()

    def __init__(self, engine_id: bytes, timeout: float = 5.0) -> None:
        self.engine_id = engine_id
        self.timeout = timeout
        self._engine: Any = None
        # pysnmp's high-level API is imported on first use: it is large.
        self._hlapi: Any = None
        self._timed_out: type[Exception] = Exception

    def _api(self) -> Any:
        if self._hlapi is None:
            from pysnmp.hlapi.v3arch import asyncio as hlapi
            from pysnmp.proto import errind

            self._hlapi = hlapi
            self._timed_out = errind.RequestTimedOut
            self._engine = hlapi.SnmpEngine(snmpEngineID=hlapi.OctetString(self.engine_id))
        return self._hlapi

    def prepare(self) -> None:
        """Load pysnmp and the MIB modules it resolves variable bindings with.

        This takes one to two seconds, once; done at start, it does not delay
        the first notification.
        """
        api = self._api()
        from pysnmp.hlapi.varbinds import NotificationOriginatorVarBinds

        NotificationOriginatorVarBinds().make_varbinds(
            self._engine.cache,
            (api.ObjectType(api.ObjectIdentity("1.3.6.1.2.1.1.3.0"), api.TimeTicks(0)),),
        )

    def send(self, target: Target, varbinds: Sequence[VarBind]) -> Deferred[None]:
        """See :class:`Sender`."""
        future = asyncio.ensure_future(self._send(target, list(varbinds)))
        return Deferred.fromFuture(future)

    def _auth(self, target: Target, tag: str) -> Any:
        api = self._api()
        if target.version == "v2c":
            return api.CommunityData(
                f"c{tag}", target.community, mpModel=1, tag=tag, securityName=f"c{tag}"
            )
        auth = {
            "SHA-224": api.USM_AUTH_HMAC128_SHA224,
            "SHA-256": api.USM_AUTH_HMAC192_SHA256,
            "SHA-384": api.USM_AUTH_HMAC256_SHA384,
            "SHA-512": api.USM_AUTH_HMAC384_SHA512,
        }[target.auth_protocol]
        priv = {
            "AES": api.USM_PRIV_CFB128_AES,
            "AES-192": api.USM_PRIV_CFB192_AES_BLUMENTHAL,
            "AES-256": api.USM_PRIV_CFB256_AES_BLUMENTHAL,
        }[target.priv_protocol]
        return api.UsmUserData(
            target.user,
            target.auth_key,
            target.priv_key,
            authProtocol=auth,
            privProtocol=priv,
        )

    def _value(self, value: Value) -> Any:
        api = self._api()
        kind = value.kind
        if kind is Kind.OCTETS:
            return api.OctetString(value.value)
        if kind is Kind.OPAQUE:
            return api.Opaque(value.value)
        if kind is Kind.OID:
            return api.ObjectIdentifier(value.value)
        if kind is Kind.IPADDRESS:
            return api.IpAddress(value.value)
        if kind is Kind.INTEGER:
            return api.Integer32(value.value)
        if kind is Kind.COUNTER32:
            return api.Counter32(value.value)
        if kind is Kind.GAUGE32:
            return api.Gauge32(value.value)
        if kind is Kind.TIMETICKS:
            return api.TimeTicks(value.value)
        return api.Counter64(value.value)

    async def _send(self, target: Target, varbinds: list[VarBind]) -> None:
        api = self._api()
        # One tag per target keeps pysnmp from pairing a target's parameters
        # with another target's address (a trap and an inform to one host).
        tag = hashlib.sha256(target.key.encode()).hexdigest()[:16]
        cls = api.Udp6TransportTarget if target.family == 6 else api.UdpTransportTarget
        try:
            transport = await cls.create(
                (target.host, target.port), timeout=self.timeout, retries=0, tagList=tag
            )
            objects = [
                api.ObjectType(api.ObjectIdentity(format_oid(oid)), self._value(value))
                for oid, value in varbinds
            ]
            error, status, index, _ = await api.send_notification(
                self._engine,
                self._auth(target, tag),
                transport,
                api.ContextData(),
                target.mode,
                *objects,
                lookupMib=False,
            )
        except SendError:
            raise
        except Exception as e:
            self._forget_peer(target)
            raise SendError(f"{type(e).__name__}: {e}") from e
        if error is not None:
            self._forget_peer(target)
            if isinstance(error, self._timed_out) and target.mode != TRAP:
                raise NotAcknowledged(f"no acknowledgement in {self.timeout:g} s")
            raise SendError(str(error))
        if status:
            raise SendError(f"error-status {status} at {index}")

    def _forget_peer(self, target: Target) -> None:
        """Make the next v3 inform to ``target`` discover its engine ID again.

        pysnmp keeps the engine ID it discovered for an address for 5
        minutes; a manager restarted with a new engine ID answers with
        reports pysnmp cannot read, so until the entry expires every inform
        would go unacknowledged. Forgetting the entry after a failed attempt
        costs one discovery round trip on the next one.
        """
        if target.version != "v3" or target.mode == TRAP or self._engine is None:
            return
        try:
            model = self._engine.message_processing_subsystems.get(3)
            prefix = "_SnmpV3MessageProcessingModel__engineIdCache"
            cache = getattr(model, prefix, None)
            expiry = getattr(model, prefix + "ExpQueue", None)
            if not isinstance(cache, dict) or not isinstance(expiry, dict):
                return
            for k in [k for k in cache if tuple(k[1][:2]) == (target.host, target.port)]:
                # pysnmp deletes expired entries without looking: take the key
                # out of its expiry queue too, or its timer would fail.
                for keys in expiry.values():
                    while k in keys:
                        keys.remove(k)
                del cache[k]
        except Exception:
            self.log.failure("forgetting the engine ID of {target} failed", target=target)

    def close(self) -> None:
        """Close the engine's sockets and its timer."""
        if self._engine is not None:
            try:
                self._engine.close_dispatcher()
            except Exception:
                self.log.failure("closing the SNMP engine failed")
            self._engine = None
            self._hlapi = None
