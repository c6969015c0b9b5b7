"""A DNS endpoint on loopback that resolves through peers during an outage.

When this host's resolvers stop answering, the DNSProxy test starts
:class:`DnsProxy` on a loopback address (``[distributed] dns_proxy_address``
and ``dns_proxy_port``). It reads each query with dnspython, asks a peer to
resolve the first question through its own resolver (the ``dns`` request of
the catalogue) and answers with the records the peer returned. It stops when
the resolvers answer again. Only loopback clients are served.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable
from typing import Any

import dns.exception
import dns.flags
import dns.message
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.rrset
from twisted.internet import defer
from twisted.internet.protocol import DatagramProtocol
from twisted.logger import Logger

from dnaagent.guard.catalogue import DNS_RDTYPES

MAX_PENDING = 64
ANSWER_TTL = 30


class DnsProxy(DatagramProtocol):
    """Answers loopback DNS queries by asking peers; see the module docstring.

    ``partners()`` returns the peers to try in order; ``ask(partner, kind,
    body, timeout)`` sends a catalogue request and returns its answer.
    """

    log = Logger()

    def __init__(
        self,
        reactor: Any,
        partners: Callable[[], list[Any]],
        ask: Callable[..., Any],
    ) -> None:
        self.reactor = reactor
        self.partners = partners
        self.ask = ask
        self.listening: Any = None
        self.port = 0
        self.pending = 0
        self.counters = {"queries": 0, "answered": 0, "failed": 0, "dropped": 0}

    def listen(self, address: str, port: int) -> None:
        """Bind ``address:port`` (UDP)."""
        self.listening = self.reactor.listenUDP(port, self, interface=address)
        self.port = int(self.listening.getHost().port)

    def stop(self) -> None:
        """Close the port."""
        if self.listening is not None:
            listening, self.listening = self.listening, None
            listening.stopListening()

    def datagramReceived(self, data: bytes, addr: Any) -> None:  # noqa: N802 (Twisted's name)
        """Read one query and answer it once a peer resolved it."""
        try:
            loopback = ipaddress.ip_address(addr[0]).is_loopback
        except ValueError:
            loopback = False
        if not loopback or self.pending >= MAX_PENDING:
            self.counters["dropped"] += 1
            return
        try:
            query = dns.message.from_wire(data)
        except dns.exception.DNSException:
            self.log.failure("bad DNS query from {a}", a=addr)
            self.counters["dropped"] += 1
            return
        self.counters["queries"] += 1
        self.pending += 1
        d = defer.ensureDeferred(self._answer(query))

        def send(reply: dns.message.Message) -> None:
            self.pending -= 1
            transport: Any = self.transport
            if transport is not None:
                transport.write(reply.to_wire(), addr)

        def failed(f: Any) -> None:
            self.pending -= 1
            self.log.failure("answering a proxied DNS query failed", f)

        d.addCallbacks(send, failed)

    async def _answer(self, query: dns.message.Message) -> dns.message.Message:
        reply = dns.message.make_response(query)
        reply.flags |= dns.flags.RA
        if len(query.question) != 1:
            reply.set_rcode(dns.rcode.FORMERR)
            self.counters["failed"] += 1
            return reply
        question = query.question[0]
        rdtype = dns.rdatatype.to_text(question.rdtype)
        name = question.name.to_text(omit_final_dot=True)
        if rdtype not in DNS_RDTYPES or question.rdclass != dns.rdataclass.IN:
            reply.set_rcode(dns.rcode.NOTIMP)
            self.counters["failed"] += 1
            return reply
        for partner in self.partners():
            try:
                answer = await self.ask(partner, "dns", {"name": name, "rdtype": rdtype}, 6.0)
            except Exception:
                self.log.failure("peer could not resolve {n}", n=name)
                continue
            rcode = answer.get("rcode")
            if rcode is None:
                continue
            reply.set_rcode(dns.rcode.from_text(str(rcode)))
            texts = [str(a) for a in answer.get("answers") or []]
            if texts:
                try:
                    rrset = dns.rrset.from_text_list(
                        question.name, ANSWER_TTL, dns.rdataclass.IN, question.rdtype, texts
                    )
                    reply.answer.append(rrset)
                except (dns.exception.DNSException, ValueError):
                    self.log.failure("a peer's answer for {n} does not parse", n=name)
                    reply.set_rcode(dns.rcode.SERVFAIL)
            self.counters["answered"] += 1
            return reply
        reply.set_rcode(dns.rcode.SERVFAIL)
        self.counters["failed"] += 1
        return reply
