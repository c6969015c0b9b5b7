"""The embedded SNMP agent: pysnmp 7 on the reactor's asyncio loop.

pysnmp does the message processing (SNMPv2c communities, SNMPv3 USM with
SHA-2 authentication and AES privacy, VACM). The managed objects come from a
:class:`~dnaagent.snmp.tree.MibTree` through :class:`TreeInstrumController`,
a pysnmp MIB instrumentation controller that reads the tree directly instead
of building a pysnmp object per instance; writes go to the
:class:`~dnaagent.snmp.writable.Writables` registry. The system group
(sysDescr, sysObjectID, sysUpTime, sysContact, sysName, sysLocation) is
served by the agent itself.

Access (VACM): SNMPv2c and SNMPv3 ``ro`` users read the system group and
DNA-AGENT-MIB; SNMPv3 ``rw`` users (authPriv only) may also write
dnaTestRun. Nothing else is readable or writable.

Every datagram goes through one guarded call: a packet pysnmp cannot handle
is counted and dropped, never raised into the event loop.
"""

from __future__ import annotations

import asyncio
import bisect
import json
import os
import socket
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from pysnmp.carrier.asyncio.dgram import udp, udp6
from pysnmp.carrier.asyncio.dispatch import AsyncioDispatcher
from pysnmp.entity import config as snmp_config
from pysnmp.entity import engine as snmp_engine
from pysnmp.entity.rfc3413 import cmdrsp, context
from pysnmp.proto import rfc1902, rfc1905
from pysnmp.smi import error as smi_error
from pysnmp.smi.instrum import AbstractMibInstrumController
from twisted.logger import Logger

from dnaagent import __version__
from dnaagent.errors import DnaAgentError
from dnaagent.snmp import mib
from dnaagent.snmp.fastpath import FastResponder
from dnaagent.snmp.settings import SnmpSection, UserSpec
from dnaagent.snmp.tree import OID, Kind, MibTree, Value
from dnaagent.snmp.writable import NO_ERROR, Writables, WriteHandler

log = Logger()

_AUTH = {
    "SHA": snmp_config.USM_AUTH_HMAC96_SHA,
    "SHA-224": snmp_config.USM_AUTH_HMAC128_SHA224,
    "SHA-256": snmp_config.USM_AUTH_HMAC192_SHA256,
    "SHA-384": snmp_config.USM_AUTH_HMAC256_SHA384,
    "SHA-512": snmp_config.USM_AUTH_HMAC384_SHA512,
}
_PRIV = {
    "AES": snmp_config.USM_PRIV_CFB128_AES,
    "AES-128": snmp_config.USM_PRIV_CFB128_AES,
    "AES-192": snmp_config.USM_PRIV_CFB192_AES_BLUMENTHAL,
    "AES-256": snmp_config.USM_PRIV_CFB256_AES_BLUMENTHAL,
}

# SNMP error-status of a write handler -> the pysnmp exception that reports it.
_WRITE_ERRORS: dict[int, type[smi_error.SmiError]] = {
    1: smi_error.TooBigError,
    5: smi_error.GenError,
    6: smi_error.NoAccessError,
    7: smi_error.WrongTypeError,
    8: smi_error.WrongLengthError,
    9: smi_error.WrongEncodingError,
    10: smi_error.WrongValueError,
    11: smi_error.NoCreationError,
    12: smi_error.InconsistentValueError,
    13: smi_error.ResourceUnavailableError,
    14: smi_error.CommitFailedError,
    15: smi_error.UndoFailedError,
    16: smi_error.AuthorizationError,
    17: smi_error.NotWritableError,
    18: smi_error.InconsistentNameError,
}

V2C_SECURITY_NAME = "dna-v2c"
READ_VIEW = "dna-read"
WRITE_VIEW = "dna-write"
# A view that excludes everything. An access entry must never name a view
# without entries: pysnmp 7.1's VACM then grants access instead of denying it.
NO_VIEW = "dna-none"
ENGINE_FILE = "snmp-engine.json"

# What every principal may read (the VACM read view and the fast path's view).
READ_SUBTREES: tuple[OID, ...] = (mib.SYSTEM, mib.DNA_AGENT)


def _leaf_objects() -> frozenset[OID]:
    """Scalars and columns: a GET of a missing instance under one of these
    answers noSuchInstance, anything else noSuchObject (RFC 3416 §4.2.1)."""
    oids = set(mib.OBJECTS.values())
    skip = (mib.DNA_NOTIFICATIONS, mib.DNA_CONFORMANCE, mib.DNA_PREDICTIONS, mib.DNA_TRACES)
    leaves = {
        o
        for o in oids
        if not any(p != o and p[: len(o)] == o for p in oids)
        and not any(o[: len(s)] == s for s in skip)
    }
    system = (mib.SYS_DESCR, mib.SYS_OBJECT_ID, mib.SYS_UP_TIME)
    return frozenset(leaves | set(system) | {mib.SYS_CONTACT, mib.SYS_NAME, mib.SYS_LOCATION})


_OBJECTS = _leaf_objects()


def to_asn1(value: Value) -> Any:
    """The pysnmp (pyasn1) object of a tree value."""
    kind, v = value.kind, value.value
    if kind is Kind.INTEGER:
        return rfc1902.Integer32(v)
    if kind is Kind.OCTETS:
        return rfc1902.OctetString(v)
    if kind is Kind.OID:
        return rfc1902.ObjectIdentifier(v)
    if kind is Kind.COUNTER32:
        return rfc1902.Counter32(v)
    if kind is Kind.GAUGE32:
        return rfc1902.Gauge32(v)
    if kind is Kind.TIMETICKS:
        return rfc1902.TimeTicks(v)
    if kind is Kind.COUNTER64:
        return rfc1902.Counter64(v)
    if kind is Kind.IPADDRESS:
        return rfc1902.IpAddress(v)
    return rfc1902.Opaque(v)


_TAGS: list[tuple[Any, Callable[[Any], Value]]] = [
    (rfc1902.Counter32.tagSet, lambda x: Value.counter32(int(x))),
    (rfc1902.Gauge32.tagSet, lambda x: Value.gauge32(int(x))),
    (rfc1902.TimeTicks.tagSet, lambda x: Value(Kind.TIMETICKS, int(x))),
    (rfc1902.Counter64.tagSet, lambda x: Value.counter64(int(x))),
    (rfc1902.IpAddress.tagSet, lambda x: Value.ipaddress(x.asOctets())),
    (rfc1902.Opaque.tagSet, lambda x: Value(Kind.OPAQUE, x.asOctets())),
    (rfc1902.Integer32.tagSet, lambda x: Value.integer(int(x))),
    (rfc1902.OctetString.tagSet, lambda x: Value.octets(x.asOctets())),
    (rfc1902.ObjectIdentifier.tagSet, lambda x: Value.oid(tuple(x))),
]


def from_asn1(value: Any) -> Value | None:
    """The tree value of a pysnmp object from a SET, or None if it has no SMI type."""
    tag = getattr(value, "tagSet", None)
    for known, make in _TAGS:
        if tag == known:
            try:
                return make(value)
            except (TypeError, ValueError):
                return None
    return None


class SystemGroup:
    """The SNMPv2-MIB system group of the agent, in OID order."""

    def __init__(
        self,
        uptime: Callable[[], float],
        *,
        name: str = "",
        contact: str = "",
        location: str = "",
        descr: str | None = None,
    ) -> None:
        self.uptime = uptime
        uname = os.uname()
        descr = descr or (
            f"dnaagent {__version__} Distributed Network Agent on "
            f"{uname.sysname} {uname.release} {uname.machine}"
        )
        self._static: dict[OID, Value] = {
            mib.SYS_DESCR + (0,): Value.octets(mib.display_string(descr)),
            mib.SYS_OBJECT_ID + (0,): Value.oid(mib.DNA_AGENT),
            mib.SYS_CONTACT + (0,): Value.octets(mib.display_string(contact)),
            mib.SYS_NAME + (0,): Value.octets(mib.display_string(name or socket.gethostname())),
            mib.SYS_LOCATION + (0,): Value.octets(mib.display_string(location)),
        }
        self._oids = sorted([*self._static, mib.SYS_UP_TIME + (0,)])

    def get(self, oid: OID) -> Value | None:
        """The value of one instance of the group, or None."""
        if oid == mib.SYS_UP_TIME + (0,):
            return Value.timeticks(max(0.0, self.uptime()))
        return self._static.get(oid)

    def next(self, oid: OID) -> tuple[OID, Value] | None:
        """The first instance of the group after ``oid``, or None."""
        i = bisect.bisect_right(self._oids, oid)
        if i == len(self._oids):
            return None
        found = self._oids[i]
        value = self.get(found)
        assert value is not None
        return found, value


class TreeInstrumController(AbstractMibInstrumController):
    """pysnmp instrumentation reading a :class:`MibTree` (and the system group).

    pysnmp calls ``read_variables`` (GET), ``read_next_variables`` (GETNEXT
    and each GETBULK repetition) and ``write_variables`` (SET) with the
    varbinds of the request and a context holding ``acFun``, the VACM check
    of the request's principal. ``acFun`` returns True when an OID is not in
    the view and raises ``AuthorizationError`` when the principal may not
    use the view at all.
    """

    def __init__(self, tree: MibTree, system: SystemGroup, writables: Writables) -> None:
        self.tree = tree
        self.system = system
        self.writables = writables
        self._asn1: dict[Value, Any] = {}

    def _encode(self, value: Value) -> Any:
        cached = self._asn1.get(value)
        if cached is None:
            if len(self._asn1) > 50_000:
                self._asn1.clear()
            cached = self._asn1[value] = to_asn1(value)
        return cached

    def read(self, oid: OID) -> Value | None:
        """The value of one instance (system group or tree), or None."""
        if oid[:7] == mib.SYSTEM:
            return self.system.get(oid)
        return self.tree.get(oid)

    def read_next(self, oid: OID) -> tuple[OID, Value] | None:
        """The first instance after ``oid`` (system group or tree), or None."""
        found = self.system.next(oid)
        if found is not None:
            return found
        return self.tree.next(oid)

    def read_variables(self, *varBinds: Any, **ctx: Any) -> list[tuple[Any, Any]]:  # noqa: N803
        """GET: the value of each instance, or noSuchObject / noSuchInstance."""
        ac = ctx.get("acFun")
        out = []
        for idx, (name, val) in enumerate(varBinds):
            oid = tuple(name)
            value = self.read(oid)
            if ac is not None and ac("read", (name, val), idx=idx, **ctx):
                out.append((name, rfc1905.noSuchObject))
            elif value is not None:
                out.append((name, self._encode(value)))
            elif any(oid[:k] in _OBJECTS for k in range(len(oid) - 1, 6, -1)):
                out.append((name, rfc1905.noSuchInstance))
            else:
                out.append((name, rfc1905.noSuchObject))
        return out

    def read_next_variables(self, *varBinds: Any, **ctx: Any) -> list[tuple[Any, Any]]:  # noqa: N803
        """GETNEXT: the next instance in the view after each name, or endOfMibView."""
        ac = ctx.get("acFun")
        out: list[tuple[Any, Any]] = []
        for idx, (name, _val) in enumerate(varBinds):
            oid = tuple(name)
            while True:
                found = self.read_next(oid)
                if found is None:
                    out.append((name, rfc1905.endOfMibView))
                    break
                oid, value = found
                encoded = self._encode(value)
                if ac is not None:
                    try:
                        if ac("read", (oid, encoded), idx=idx, **ctx):
                            continue
                    except smi_error.NoAccessError:
                        continue  # e.g. Counter64 to SNMPv1
                out.append((rfc1902.ObjectName(oid), encoded))
                break
        return out

    def write_variables(self, *varBinds: Any, **ctx: Any) -> list[tuple[Any, Any]]:  # noqa: N803
        """SET: access check, then test, commit (undo on failure) through the handlers."""
        ac = ctx.get("acFun")
        if ac is None:
            raise smi_error.NoAccessError(name=varBinds[0][0] if varBinds else None, idx=0)
        plan: list[tuple[int, Any, OID, Value, WriteHandler]] = []
        for idx, (name, val) in enumerate(varBinds):
            oid = tuple(name)
            if ac("write", (name, val), idx=idx, **ctx):
                raise smi_error.NoAccessError(name=name, idx=idx)
            handler = self.writables.find(oid)
            if handler is None:
                if self.read(oid) is not None:
                    raise smi_error.NotWritableError(name=name, idx=idx)
                raise smi_error.NoAccessError(name=name, idx=idx)
            value = from_asn1(val)
            if value is None:
                raise smi_error.WrongTypeError(name=name, idx=idx)
            status = _guarded(handler.test, oid, value)
            if status != NO_ERROR:
                raise _WRITE_ERRORS.get(status, smi_error.GenError)(name=name, idx=idx)
            plan.append((idx, name, oid, value, handler))
        done: list[tuple[int, Any, OID, Value, WriteHandler]] = []
        for idx, name, oid, value, handler in plan:
            status = _guarded(handler.commit, oid, value, on_error=14)
            if status != NO_ERROR:
                for _, _, o, v, h in reversed(done):
                    try:
                        h.undo(o, v)
                    except Exception:
                        log.failure("undoing a SET of {oid} failed", oid=o)
                raise _WRITE_ERRORS.get(status, smi_error.CommitFailedError)(name=name, idx=idx)
            done.append((idx, name, oid, value, handler))
        return [(name, val) for name, val in varBinds]


def _guarded(phase: Callable[[OID, Value], int], oid: OID, value: Value, on_error: int = 5) -> int:
    """Run a write-handler phase; a crash becomes ``on_error`` (genErr by default)."""
    try:
        status = phase(oid, value)
    except Exception:
        log.failure("a write handler failed")
        return on_error
    return status if isinstance(status, int) else on_error


class _GuardedUdp(udp.UdpAsyncioTransport):
    """UDP transport that hands each datagram to pysnmp at once and contains failures."""

    owner: EmbeddedAgent

    def datagram_received(self, datagram: bytes, transportAddress: Any) -> None:  # noqa: N803
        """Process one request; any exception is counted, never raised."""
        self.owner._received(self, datagram, transportAddress)


class _GuardedUdp6(udp6.Udp6AsyncioTransport):
    """The IPv6 flavour of :class:`_GuardedUdp`."""

    owner: EmbeddedAgent

    def datagram_received(self, datagram: bytes, transportAddress: Any) -> None:  # noqa: N803
        """Process one request; any exception is counted, never raised."""
        self.owner._received(self, datagram, transportAddress[:2])


@dataclass
class AgentCounters:
    """What the embedded agent counts (shown in logs and tests)."""

    datagrams: int = 0
    not_snmp: int = 0
    failures: int = 0
    last_failure: str = ""
    by_type: dict[str, int] = field(default_factory=dict)


def load_engine_state(state_dir: str, configured: str) -> tuple[bytes, int]:
    """The engine ID and the boot count of this start (RFC 3414 §2.2).

    The ID comes from the configuration or is generated once and kept in
    ``STATE_DIR/snmp-engine.json`` with the boot counter, which grows by one
    at every start so that SNMPv3 managers see a restart.
    """
    path = os.path.join(state_dir, ENGINE_FILE)
    data: dict[str, Any] = {}
    try:
        with open(path) as f:
            data = json.load(f)
    except (OSError, ValueError):
        data = {}
    if configured:
        engine_id = bytes.fromhex(configured.lower().removeprefix("0x"))
    else:
        try:
            engine_id = bytes.fromhex(str(data.get("engine_id", "")))
        except ValueError:
            engine_id = b""
        if not 5 <= len(engine_id) <= 32:
            # RFC 3411 format 5 (octets): enterprise 0 (no PEN), then random octets.
            engine_id = bytes([0x80, 0, 0, 0, 5]) + os.urandom(12)
    boots = data.get("boots", 0) if data.get("engine_id") == engine_id.hex() else 0
    if not isinstance(boots, int) or not 0 <= boots < 2**31 - 1:
        boots = 0
    boots += 1
    tmp = path + ".tmp"
    try:
        with open(tmp, "w") as f:
            json.dump({"engine_id": engine_id.hex(), "boots": boots}, f)
        os.chmod(tmp, 0o600)
        os.replace(tmp, path)
    except OSError as e:
        log.warn("cannot keep the SNMP engine state in {path}: {e}", path=path, e=e)
    return engine_id, boots


class EmbeddedAgent:
    """The SNMP agent serving ``tree`` on the addresses of ``settings``.

    :meth:`listen` binds the sockets (raising :class:`DnaAgentError` with one
    clear line when it cannot); :meth:`stop` closes them. ``clock`` gives the
    time for sysUpTime.
    """

    def __init__(
        self,
        settings: SnmpSection,
        tree: MibTree,
        writables: Writables,
        state_dir: str,
        clock: Any,
        loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        self.settings = settings
        self.tree = tree
        self.writables = writables
        self.state_dir = state_dir
        self.clock = clock
        self._loop = loop
        self.counters = AgentCounters()
        self.engine: snmp_engine.SnmpEngine | None = None
        self.addresses: list[tuple[str, int]] = []
        self._transports: list[Any] = []
        self._started = clock.seconds()
        self.system = SystemGroup(
            self.uptime,
            name=settings.sys_name,
            contact=settings.sys_contact,
            location=settings.sys_location,
        )
        self.instrum = TreeInstrumController(tree, self.system, writables)
        self.fast: FastResponder | None = None
        if settings.community:
            self.fast = FastResponder(
                settings.community.encode("utf-8"),
                self.instrum.read,
                self.instrum.read_next,
                READ_SUBTREES,
                _OBJECTS,
            )

    def uptime(self) -> float:
        """Seconds since the agent started (sysUpTime)."""
        return self.clock.seconds() - self._started

    def listen(self) -> None:
        """Build the SNMP engine and bind every configured address."""
        loop = self._loop or asyncio.get_event_loop()
        engine_id, boots = load_engine_state(self.state_dir, self.settings.engine_id)
        eng = snmp_engine.SnmpEngine()
        builder = eng.get_mib_builder()
        (mib_engine_id,) = builder.import_symbols("__SNMP-FRAMEWORK-MIB", "snmpEngineID")
        mib_engine_id.syntax = mib_engine_id.syntax.clone(engine_id)
        eng.snmpEngineID = mib_engine_id.syntax
        (mib_boots,) = builder.import_symbols("__SNMP-FRAMEWORK-MIB", "snmpEngineBoots")
        mib_boots.syntax = mib_boots.syntax.clone(boots)
        dispatcher = AsyncioDispatcher(loop=loop)
        dispatcher.set_timer_resolution(0.5)
        eng.register_transport_dispatcher(dispatcher)
        self._configure_access(eng)
        try:
            for i, host in enumerate(self.settings.listen):
                self._bind(eng, loop, host, i)
        except BaseException:
            self._close(eng)
            raise
        ctx = context.SnmpContext(eng)
        ctx.unregister_context_name(b"")
        ctx.register_context_name(b"", self.instrum)
        for responder in (
            cmdrsp.GetCommandResponder,
            cmdrsp.NextCommandResponder,
            cmdrsp.BulkCommandResponder,
            cmdrsp.SetCommandResponder,
        ):
            responder(eng, ctx)
        self.engine = eng
        log.info(
            "SNMP agent on {addresses} (SNMPv2c {v2c}, {users} SNMPv3 users, engine ID {eid})",
            addresses=", ".join(_show(h, p) for h, p in self.addresses),
            v2c="on" if self.settings.community else "off",
            users=len(self.settings.users),
            eid=engine_id.hex(),
        )

    def _configure_access(self, eng: snmp_engine.SnmpEngine) -> None:
        snmp_config.add_context(eng, "")
        for subtree in READ_SUBTREES:
            snmp_config.add_vacm_view(eng, READ_VIEW, "included", subtree, "")
        snmp_config.add_vacm_view(eng, WRITE_VIEW, "included", mib.DNA_TEST_RUN, "")
        snmp_config.add_vacm_view(eng, WRITE_VIEW, "included", mib.DNA_XBAC_PREDICT_TARGET, "")
        snmp_config.add_vacm_view(eng, NO_VIEW, "excluded", (1, 3, 6, 1), "")
        if self.settings.community:
            snmp_config.add_v1_system(
                eng, V2C_SECURITY_NAME, self.settings.community, securityName=V2C_SECURITY_NAME
            )
            snmp_config.add_vacm_group(eng, "dna-v2c-ro", 2, V2C_SECURITY_NAME)
            snmp_config.add_vacm_access(
                eng, "dna-v2c-ro", "", 2, "noAuthNoPriv", "exact", READ_VIEW, NO_VIEW, NO_VIEW
            )
        snmp_config.add_vacm_access(
            eng, "dna-v3-ro", "", 3, "authPriv", "exact", READ_VIEW, NO_VIEW, NO_VIEW
        )
        snmp_config.add_vacm_access(
            eng, "dna-v3-rw", "", 3, "authPriv", "exact", READ_VIEW, WRITE_VIEW, NO_VIEW
        )
        for user in self.settings.parsed_users():
            self._add_user(eng, user)

    @staticmethod
    def _add_user(eng: snmp_engine.SnmpEngine, user: UserSpec) -> None:
        snmp_config.add_v3_user(
            eng,
            user.name,
            _AUTH[user.auth],
            user.auth_key,
            _PRIV[user.priv],
            user.priv_key,
        )
        snmp_config.add_vacm_group(eng, "dna-v3-rw" if user.writable else "dna-v3-ro", 3, user.name)

    def _bind(
        self, eng: snmp_engine.SnmpEngine, loop: asyncio.AbstractEventLoop, host: str, n: int
    ) -> None:
        port = self.settings.port
        v6 = ":" in host
        family = socket.AF_INET6 if v6 else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_DGRAM)
        try:
            if v6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            sock.bind((host, port))
        except OSError as e:
            sock.close()
            hint = " (ports below 1024 need root or CAP_NET_BIND_SERVICE)" if port < 1024 else ""
            raise DnaAgentError(
                f"SNMP agent cannot listen on {_show(host, port)}: {e.strerror or e}{hint} "
                "(choose another with --snmp-port or turn it off with --snmp-enabled false)"
            ) from None
        sock.setblocking(False)
        transport = (_GuardedUdp6 if v6 else _GuardedUdp)(loop=loop)
        transport.owner = self
        base = udp6.DOMAIN_NAME if v6 else udp.DOMAIN_NAME
        snmp_config.add_transport(eng, base + (n + 1,), transport.open_server_mode(sock=sock))
        self._transports.append(transport)
        self.addresses.append(sock.getsockname()[:2])

    def _received(self, transport: Any, datagram: bytes, address: Any) -> None:
        counters = self.counters
        counters.datagrams += 1
        if not datagram or datagram[0] != 0x30:
            counters.not_snmp += 1  # every SNMP message is a BER SEQUENCE
            return
        try:
            if self.fast is not None:
                reply = self.fast.respond(datagram)
                if reply is not None:
                    if transport.transport is not None:
                        transport.transport.sendto(reply, address)
                    return
            callback = transport._callback_function
            if callback is not None:
                callback(transport, address, datagram)
        except Exception as e:
            counters.failures += 1
            name = type(e).__name__
            counters.by_type[name] = counters.by_type.get(name, 0) + 1
            counters.last_failure = f"{name}: {e}"[:200]
            if counters.failures & (counters.failures - 1) == 0:  # 1, 2, 4, 8, ...
                log.warn(
                    "dropped an SNMP datagram pysnmp could not handle ({n} so far, last {last})",
                    n=counters.failures,
                    last=counters.last_failure,
                )

    def stop(self) -> None:
        """Close the sockets and the engine."""
        if self.engine is not None:
            self._close(self.engine)
            self.engine = None
        self.addresses = []

    def _close(self, eng: snmp_engine.SnmpEngine) -> None:
        try:
            if eng.transport_dispatcher is not None:
                eng.transport_dispatcher.close_dispatcher()
        except Exception:
            log.failure("closing the SNMP engine failed")
        for transport in self._transports:
            try:
                transport.close_transport()
            except Exception:
                log.failure("closing an SNMP socket failed")
        self._transports = []


def _show(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
