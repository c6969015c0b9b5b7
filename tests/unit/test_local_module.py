"""The local test module against fakes of the host, the pinger and the DNS client."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest
from twisted.internet import defer
from twisted.internet.task import Clock
from twisted.python.failure import Failure
from zope.interface.verify import verifyObject

from dnaagent.config import LocalSection
from dnaagent.measure.dns import DnsResult
from dnaagent.mediator.interface import (
    InvalidParameters,
    ITestModule,
    ITestRun,
    Outcome,
    Status,
    default_tests,
)
from dnaagent.mediator.mediator import Mediator
from dnaagent.modules.hostinfo import LogEntry, LogScan
from dnaagent.modules.leases import Lease
from dnaagent.modules.local import HARDWARE, LocalModule
from tests.fakes.host import (
    ADDRESS_V4,
    GATEWAY_V4,
    GATEWAY_V6,
    NIC,
    RESOLVER,
    FakeHostInfo,
    FakePinger,
    FakeResolver,
    address,
    link,
    route,
)

NOW = 1_700_000_000.0
HEALTHY_PINGS = (
    "127.0.0.1",
    "::1",
    "192.0.2.10",
    "2001:db8:1::10",
    "fe80::10",
    GATEWAY_V4,
    GATEWAY_V6,
    RESOLVER,
)
DEPENDENTS = ["IPConfiguration", "DNSConfiguration", "DHCPLease", "PingOwnIP", "PingWellKnownHosts"]


class Rig:
    """A LocalModule wired to fakes, with a clock at NOW."""

    def __init__(self, host: FakeHostInfo | None = None, **cfg: Any) -> None:
        self.clock = Clock()
        self.clock.advance(NOW)
        self.host = host or FakeHostInfo.healthy()
        self.pinger = FakePinger().answer(*HEALTHY_PINGS)
        self.dns = FakeResolver().works(RESOLVER, "a.root-servers.net.")
        self.names: dict[str, list[str]] = {}
        self.cfg = LocalSection(**cfg)
        self.module = LocalModule(
            self.cfg,
            self.clock,
            self.host,
            self.pinger,
            self.dns,
            run_blocking=lambda f, *a: defer.maybeDeferred(f, *a),
            resolve_name=self._resolve,
        )

    def _resolve(self, name: str) -> defer.Deferred[list[str]]:
        if name not in self.names:
            return defer.fail(OSError(f"unknown host {name}"))
        return defer.succeed(self.names[name])

    def run(self, test: str, **params: str) -> Outcome:
        """Run one test and return its outcome (the fakes answer at once)."""
        run = self.module.open_run(params)
        results: list[Any] = []
        defer.ensureDeferred(run.run_test(test)).addBoth(results.append)
        assert results, f"{test} did not finish"
        if isinstance(results[0], Failure):
            results[0].raiseException()
        outcome = results[0]
        assert isinstance(outcome, Outcome)
        return outcome


# -- the module's shape ----------------------------------------------------


def test_module_provides_the_interface() -> None:
    """LocalModule and its runs provide ITestModule and ITestRun."""
    rig = Rig()
    assert verifyObject(ITestModule, rig.module)
    assert verifyObject(ITestRun, rig.module.open_run({}))
    assert rig.module.name == "local"
    assert "nic" in rig.module.parameters


def test_default_sequence_and_dependencies() -> None:
    """The eight default tests in the seed's order; five depend on the three hardware tests."""
    module = Rig().module
    assert default_tests(module) == [
        "NICStatus",
        "NetConnectionStatus",
        "PingLocalHost",
        *DEPENDENTS,
    ]
    specs = {s.name: s for s in module.tests}
    for name in DEPENDENTS:
        assert set(specs[name].depends_on) == set(HARDWARE)
    for name in HARDWARE:
        assert specs[name].depends_on == ()
    assert [s.name for s in module.tests if not s.default] == [
        "SystemLog",
        "HostsFile",
        "RoutingTable",
    ]


# -- choosing the NIC ------------------------------------------------------


def test_unknown_nic_parameter_lists_existing_interfaces() -> None:
    """An unknown NIC is refused with the list of existing interfaces."""
    with pytest.raises(InvalidParameters) as info:
        Rig().module.open_run({"nic": "wlan7"})
    assert "wlan7" in str(info.value)
    assert "lo, eth0" in str(info.value)


def test_unknown_parameter_is_refused() -> None:
    """A parameter the module does not take is refused, naming the ones it takes."""
    with pytest.raises(InvalidParameters, match="colour.*nic"):
        Rig().module.open_run({"colour": "blue"})


def test_default_nic_is_the_default_route_interface() -> None:
    """Without a parameter or config the NIC of the IPv4 default route is tested."""
    host = FakeHostInfo.healthy()
    host.link_list.append(link("eth1", 3))
    host.route_list.insert(0, route("default", "198.51.100.1", "eth1", metric=500))
    host.route_list.insert(0, route("default", "198.51.100.1", "eth1", table=100))
    rig = Rig(host)
    assert rig.module.choose_nic({}) == ("eth0", "default route")
    assert rig.module.choose_nic({"nic": "eth1"}) == ("eth1", "parameter")


def test_default_nic_falls_back_to_ipv6_default_route() -> None:
    """With no IPv4 default route, the IPv6 default route's interface is chosen."""
    host = FakeHostInfo.healthy()
    host.link_list.append(link("wlan0", 3))
    host.route_list = [r for r in host.route_list if not (r.default and r.family == 2)]
    host.route_list = [replace(r, ifname="wlan0") if r.default else r for r in host.route_list]
    assert Rig(host).module.choose_nic({}) == ("wlan0", "default route")


def test_without_default_route_the_only_nic_is_chosen_else_refused() -> None:
    """No default route: the single non-loopback NIC is used; with two the run is refused."""
    host = FakeHostInfo.healthy()
    host.route_list = [r for r in host.route_list if not r.default]
    assert Rig(host).module.choose_nic({}) == ("eth0", "only interface")
    host.link_list.append(link("eth1", 3))
    with pytest.raises(InvalidParameters, match="no default route.*eth0, eth1"):
        Rig(host).module.open_run({})


def test_configured_nic_that_vanished_is_reported_by_nicstatus() -> None:
    """A configured NIC that does not exist is not refused: NICStatus reports it."""
    rig = Rig(nic="usb0")
    outcome = rig.run("NICStatus")
    assert outcome.status is Status.ERROR
    assert "usb0 does not exist" in outcome.message
    assert "configuration" in outcome.message
    assert outcome.details["existing"] == ["lo", "eth0"]


# -- hardware and TCP/IP -----------------------------------------------------


def test_nicstatus_reports_driver_mtu_and_mac() -> None:
    """A healthy NIC: ok, with driver, MTU and MAC in the message and details."""
    outcome = Rig().run("NICStatus")
    assert outcome.status is Status.OK
    assert outcome.message == "eth0 is up: driver e1000e, MTU 1500, MAC 02:00:00:00:00:10"
    assert outcome.details["driver"] == "e1000e"
    assert outcome.details["chosen_by"] == "default route"


def test_nicstatus_admin_down_is_an_error() -> None:
    """An administratively down NIC is an error that says how to bring it up."""
    host = FakeHostInfo.healthy()
    host.set_link(NIC, admin_up=False, oper_state="DOWN")
    outcome = Rig(host).run("NICStatus")
    assert outcome.status is Status.ERROR
    assert "administratively down" in outcome.message
    assert "ip link set eth0 up" in outcome.message


def test_nicstatus_virtual_interface_names_its_kind() -> None:
    """An interface without a driver (veth) is described by its kind."""
    host = FakeHostInfo.healthy()
    host.set_link(NIC, driver=None, kind="veth")
    outcome = Rig(host).run("NICStatus")
    assert outcome.status is Status.OK
    assert "veth interface" in outcome.message


def test_netconnectionstatus_ok_names_speed_and_duplex() -> None:
    """A link with carrier: ok, with speed and duplex."""
    outcome = Rig().run("NetConnectionStatus")
    assert outcome.status is Status.OK
    assert outcome.message == "eth0 is up, carrier present, 1000 Mb/s full duplex"


def test_netconnectionstatus_no_carrier_is_cable_unplugged() -> None:
    """No carrier: an error saying the cable may be unplugged."""
    host = FakeHostInfo.healthy()
    host.set_link(NIC, oper_state="DOWN", carrier=False, speed_mbps=None)
    outcome = Rig(host).run("NetConnectionStatus")
    assert outcome.status is Status.ERROR
    assert "no carrier" in outcome.message and "cable" in outcome.message
    assert outcome.details["carrier"] is False


def test_netconnectionstatus_dormant_is_authentication_in_progress() -> None:
    """Dormant (802.1X / WPA not done): an error naming authentication."""
    host = FakeHostInfo.healthy()
    host.set_link(NIC, oper_state="DORMANT")
    outcome = Rig(host).run("NetConnectionStatus")
    assert outcome.status is Status.ERROR
    assert "authentication" in outcome.message


def test_netconnectionstatus_unknown_state_with_carrier_is_ok() -> None:
    """Drivers that report no operational state but have a carrier are fine."""
    host = FakeHostInfo.healthy()
    host.set_link(NIC, oper_state="UNKNOWN", speed_mbps=None)
    outcome = Rig(host).run("NetConnectionStatus")
    assert outcome.status is Status.OK
    assert "carrier" in outcome.message and "unknown" in outcome.message


def test_netconnectionstatus_half_duplex_warns() -> None:
    """Half duplex is a warning (a likely duplex mismatch)."""
    host = FakeHostInfo.healthy()
    host.set_link(NIC, duplex="half", speed_mbps=100)
    outcome = Rig(host).run("NetConnectionStatus")
    assert outcome.status is Status.WARNING
    assert "100 Mb/s half duplex" in outcome.message


def test_netconnectionstatus_admin_down_and_lower_layer_down() -> None:
    """Admin down and a lower layer down are both errors."""
    host = FakeHostInfo.healthy()
    host.set_link(NIC, admin_up=False)
    assert Rig(host).run("NetConnectionStatus").status is Status.ERROR
    host.set_link(NIC, admin_up=True, oper_state="LOWERLAYERDOWN")
    outcome = Rig(host).run("NetConnectionStatus")
    assert outcome.status is Status.ERROR
    assert "runs over" in outcome.message


def test_pinglocalhost_pings_both_loopback_addresses() -> None:
    """127.0.0.1 and ::1 are pinged; both answering is ok."""
    rig = Rig()
    outcome = rig.run("PingLocalHost")
    assert outcome.status is Status.OK
    assert [a for a, _ in rig.pinger.sent] == ["127.0.0.1", "::1"]
    assert [p["rtt_ms"] for p in outcome.details["pings"]] == [0.5, 0.5]


def test_pinglocalhost_without_ipv6_pings_only_ipv4() -> None:
    """With IPv6 disabled only 127.0.0.1 is pinged."""
    rig = Rig(FakeHostInfo.healthy(ipv6=False))
    assert rig.run("PingLocalHost").status is Status.OK
    assert rig.pinger.sent == [("127.0.0.1", None)]


def test_pinglocalhost_failure_is_an_error_naming_lo_down() -> None:
    """No answer from loopback is an error; a down lo is named."""
    host = FakeHostInfo.healthy()
    host.set_link("lo", admin_up=False)
    rig = Rig(host)
    del rig.pinger.answers["127.0.0.1"]
    outcome = rig.run("PingLocalHost")
    assert outcome.status is Status.ERROR
    assert "127.0.0.1 did not answer" in outcome.message
    assert "lo is down" in outcome.message


# -- IPConfiguration ----------------------------------------------------------


def test_ipconfiguration_ok_places_both_gateways() -> None:
    """Addresses and gateways in place: ok, naming the subnet of the IPv4 gateway."""
    outcome = Rig().run("IPConfiguration")
    assert outcome.status is Status.OK
    assert "eth0 has 192.0.2.10/24, 2001:db8:1::10/64" in outcome.message
    assert "gateway 192.0.2.1 is in 192.0.2.0/24" in outcome.message
    assert "gateway fe80::1 is link-local" in outcome.message


def test_ipconfiguration_no_address_is_an_error() -> None:
    """No address at all: error."""
    host = FakeHostInfo.healthy()
    host.remove_addresses()
    outcome = Rig(host).run("IPConfiguration")
    assert outcome.status is Status.ERROR
    assert outcome.message == "eth0 has no IP address"


def test_ipconfiguration_only_link_local_is_an_error() -> None:
    """Only an IPv6 link-local address: error naming it."""
    host = FakeHostInfo.healthy()
    host.remove_addresses()
    host.address_list.append(address("fe80::10/64"))
    outcome = Rig(host).run("IPConfiguration")
    assert outcome.status is Status.ERROR
    assert "only the link-local fe80::10/64" in outcome.message


def test_ipconfiguration_apipa_only_is_an_error() -> None:
    """Only 169.254/16: error saying no DHCP server gave an address."""
    host = FakeHostInfo.healthy(ipv6=False)
    host.remove_addresses()
    host.address_list.append(address("169.254.7.7/16", scope="link"))
    outcome = Rig(host).run("IPConfiguration")
    assert outcome.status is Status.ERROR
    assert "self-assigned address 169.254.7.7/16" in outcome.message


def test_ipconfiguration_tentative_and_duplicate_addresses() -> None:
    """A tentative address is not valid yet; a duplicate one is reported as such."""
    host = FakeHostInfo.healthy(ipv6=False)
    host.remove_addresses()
    host.address_list.append(address("2001:db8:1::10/64", flags=frozenset({"tentative"})))
    outcome = Rig(host).run("IPConfiguration")
    assert outcome.status is Status.ERROR
    assert "tentative" in outcome.message
    host.address_list = [address("2001:db8:1::10/64", flags=frozenset({"dadfailed", "tentative"}))]
    outcome = Rig(host).run("IPConfiguration")
    assert outcome.status is Status.ERROR
    assert "duplicate address" in outcome.message


def test_ipconfiguration_gateway_outside_subnet_is_an_error() -> None:
    """A gateway outside every subnet of the NIC: error naming it and the subnet."""
    host = FakeHostInfo.healthy(ipv6=False)
    host.route_list = [route("default", "203.0.113.1", onlink=True), route("192.0.2.0/24")]
    outcome = Rig(host).run("IPConfiguration")
    assert outcome.status is Status.ERROR
    assert "gateway 203.0.113.1 is outside 192.0.2.10/24" in outcome.message
    assert "onlink" in outcome.message


def test_ipconfiguration_ipv6_global_gateway_outside_prefix() -> None:
    """A global IPv6 gateway must lie in one of the NIC's IPv6 prefixes."""
    host = FakeHostInfo.healthy()
    host.route_list.append(route("default", "2001:db8:99::1", table=100))
    outcome = Rig(host).run("IPConfiguration")
    assert outcome.status is Status.ERROR
    assert "gateway 2001:db8:99::1 is outside 2001:db8:1::10/64" in outcome.message


def test_ipconfiguration_ipv6_only_with_link_local_gateway_is_ok() -> None:
    """IPv6 only, gateway fe80::1: ok."""
    host = FakeHostInfo.healthy()
    host.address_list = [a for a in host.address_list if a.version == 6]
    host.route_list = [r for r in host.route_list if r.family == 10]
    outcome = Rig(host).run("IPConfiguration")
    assert outcome.status is Status.OK
    assert "link-local" in outcome.message


def test_ipconfiguration_without_gateway_warns() -> None:
    """No default route via the NIC: a warning (only local subnets reachable)."""
    host = FakeHostInfo.healthy()
    host.route_list = [r for r in host.route_list if not r.default]
    outcome = Rig(host).run("IPConfiguration", nic="eth0")
    assert outcome.status is Status.WARNING
    assert "no default gateway via eth0" in outcome.message


def test_ipconfiguration_ignores_gateways_of_other_nics() -> None:
    """A bad gateway on another interface does not concern this one."""
    host = FakeHostInfo.healthy()
    host.link_list.append(link("eth1", 3))
    host.route_list.append(route("default", "203.0.113.1", "eth1", metric=900))
    assert Rig(host).run("IPConfiguration").status is Status.OK


# -- DNSConfiguration ---------------------------------------------------------


def test_dnsconfiguration_ok_asks_for_the_root_ns() -> None:
    """The default lookup is the root NS; a NOERROR answer is ok."""
    rig = Rig()
    outcome = rig.run("DNSConfiguration")
    assert outcome.status is Status.OK, outcome.message
    assert rig.dns.queries == [(RESOLVER, ".", "NS")]
    assert (RESOLVER, None) in rig.pinger.sent
    assert outcome.details["resolvers"][0]["lookup"]["rcode"] == "NOERROR"


def test_dnsconfiguration_lookup_works_ping_fails_is_ok_not_warning() -> None:
    """A resolver that drops ping but answers DNS is fine: no warning (seed §2.2)."""
    rig = Rig()
    del rig.pinger.answers[RESOLVER]
    outcome = rig.run("DNSConfiguration")
    assert outcome.status is Status.OK
    assert "does not answer ping, which is fine" in outcome.message


def test_dnsconfiguration_ping_works_lookup_fails_is_an_error() -> None:
    """A single resolver that answers ping but not DNS: error."""
    rig = Rig()
    rig.dns.answers.clear()
    outcome = rig.run("DNSConfiguration")
    assert outcome.status is Status.ERROR
    assert f"{RESOLVER} answers ping but not DNS" in outcome.message


def test_dnsconfiguration_refused_counts_as_dead() -> None:
    """REFUSED is an answer but not a working lookup."""
    rig = Rig()
    rig.dns.answers[RESOLVER] = "REFUSED"
    outcome = rig.run("DNSConfiguration")
    assert outcome.status is Status.ERROR
    assert "answered REFUSED" in outcome.message


def test_dnsconfiguration_some_dead_warns_all_dead_errors() -> None:
    """One of two resolvers dead: warning; both dead: error."""
    host = FakeHostInfo.healthy()
    host.files["/etc/resolv.conf"] = f"nameserver {RESOLVER}\nnameserver 192.0.2.54\n"
    rig = Rig(host)
    outcome = rig.run("DNSConfiguration")
    assert outcome.status is Status.WARNING
    assert "1 of 2 DNS servers do not work: 192.0.2.54 answers neither" in outcome.message
    rig.dns.answers.clear()
    assert rig.run("DNSConfiguration").status is Status.ERROR


def test_dnsconfiguration_without_resolvers_is_an_error() -> None:
    """No resolv.conf, or one without nameserver lines: error."""
    host = FakeHostInfo.healthy()
    host.files["/etc/resolv.conf"] = "search example.test\nnameserver not-an-ip\n"
    outcome = Rig(host).run("DNSConfiguration")
    assert outcome.status is Status.ERROR
    assert "names no DNS server" in outcome.message
    assert "line 2" in outcome.message
    del host.files["/etc/resolv.conf"]
    outcome = Rig(host).run("DNSConfiguration")
    assert outcome.status is Status.ERROR
    assert "does not exist" in outcome.message


def test_dnsconfiguration_named_lookup_and_reverse_lookup() -> None:
    """A configured name is asked as A; the reverse lookup of the NIC address follows."""
    rig = Rig(dns_lookup_name="www.example.test", dns_reverse_lookup=True)
    rig.dns.answers[(RESOLVER, "10.2.0.192.in-addr.arpa.")] = "NXDOMAIN"
    outcome = rig.run("DNSConfiguration")
    assert (RESOLVER, "www.example.test", "A") in rig.dns.queries
    assert (RESOLVER, "10.2.0.192.in-addr.arpa.", "PTR") in rig.dns.queries
    assert outcome.status is Status.WARNING
    assert "in reverse (NXDOMAIN)" in outcome.message
    rig.dns.answers[(RESOLVER, "10.2.0.192.in-addr.arpa.")] = DnsResult(
        RESOLVER, "", "", rcode="NOERROR", answers=("host.example.test.",)
    )
    assert rig.run("DNSConfiguration").status is Status.OK


def test_dnsconfiguration_scopes_link_local_resolvers() -> None:
    """A link-local IPv6 resolver is pinged through the NIC."""
    host = FakeHostInfo.healthy()
    host.files["/etc/resolv.conf"] = "nameserver fe80::53%eth0\n"
    rig = Rig(host)
    rig.dns.works("fe80::53%eth0")
    assert rig.run("DNSConfiguration").status is Status.OK
    assert ("fe80::53%eth0", "eth0") in rig.pinger.sent


# -- DHCPLease ------------------------------------------------------------------


def _lease(**changes: Any) -> Lease:
    base = Lease(
        source="dhclient",
        path="/var/lib/dhcp/dhclient.eth0.leases",
        interface=NIC,
        address="192.0.2.10",
        server="192.0.2.1",
        expires=NOW + 3 * 3600,
    )
    return replace(base, **changes)


def test_dhcplease_static_address_needs_no_lease() -> None:
    """A permanent address without a lease file: ok, static."""
    outcome = Rig().run("DHCPLease")
    assert outcome.status is Status.OK
    assert outcome.message == "192.0.2.10/24 is a static address, no lease needed"


def test_dhcplease_valid_lease_reports_expiry() -> None:
    """An unexpired lease: ok with the server and the expiry."""
    host = FakeHostInfo.healthy()
    host.lease_list = [_lease(expires=NOW - 86400), _lease()]
    outcome = Rig(host).run("DHCPLease")
    assert outcome.status is Status.OK
    assert "192.0.2.10/24 is leased from 192.0.2.1 until" in outcome.message
    assert "(in 3 h)" in outcome.message


def test_dhcplease_expired_lease_is_an_error() -> None:
    """An expired lease while the address stays (permanent in the kernel): error."""
    host = FakeHostInfo.healthy()
    host.lease_list = [_lease(expires=NOW - 7200)]
    outcome = Rig(host).run("DHCPLease")
    assert outcome.status is Status.ERROR
    assert "expired at" in outcome.message and "(2 h ago)" in outcome.message


def test_dhcplease_kernel_lifetime_outranks_stale_lease_file() -> None:
    """A stale file does not fail an address the kernel still holds as dynamic."""
    host = FakeHostInfo.healthy()
    host.address_list = [
        replace(a, flags=frozenset(), valid_lft=600.0) if str(a) == ADDRESS_V4 else a
        for a in host.address_list
    ]
    host.lease_list = [_lease(expires=NOW - 7200)]
    assert Rig(host).run("DHCPLease").status is Status.OK


def test_dhcplease_dynamic_address_without_lease_file() -> None:
    """A dynamic address without a lease file is ok, with its remaining lifetime."""
    host = FakeHostInfo.healthy()
    host.address_list = [
        replace(a, flags=frozenset(), valid_lft=1200.0) if str(a) == ADDRESS_V4 else a
        for a in host.address_list
    ]
    outcome = Rig(host).run("DHCPLease")
    assert outcome.status is Status.OK
    assert "dynamic address valid for 1200 s more" in outcome.message


def test_dhcplease_apipa_is_an_error() -> None:
    """Only a 169.254/16 address: the APIPA-style failure, an error."""
    host = FakeHostInfo.healthy()
    host.address_list = [a for a in host.address_list if str(a) != ADDRESS_V4]
    host.address_list.append(address("169.254.77.10/16", scope="link"))
    outcome = Rig(host).run("DHCPLease")
    assert outcome.status is Status.ERROR
    assert "self-assigned address 169.254.77.10/16" in outcome.message
    assert "no DHCP server answered" in outcome.message


def test_dhcplease_apipa_beside_a_real_address_warns() -> None:
    """A 169.254 address beside a real one: warning."""
    host = FakeHostInfo.healthy()
    host.address_list.append(address("169.254.77.10/16", scope="link"))
    assert Rig(host).run("DHCPLease").status is Status.WARNING


def test_dhcplease_no_ipv4_without_lease_is_skipped_with_lease_is_an_error() -> None:
    """No IPv4 and no lease: DHCP is not in use (skipped); with a lease file: error."""
    host = FakeHostInfo.healthy()
    host.address_list = [a for a in host.address_list if a.version == 6]
    outcome = Rig(host).run("DHCPLease")
    assert outcome.status is Status.SKIPPED
    host.lease_list = [_lease(expires=NOW - 60)]
    outcome = Rig(host).run("DHCPLease")
    assert outcome.status is Status.ERROR
    assert "no IPv4 address although it uses DHCP" in outcome.message


# -- PingOwnIP and PingWellKnownHosts --------------------------------------------


def test_pingownip_pings_every_address_with_scope() -> None:
    """Every address of the NIC is pinged; link-local ones through the NIC."""
    rig = Rig()
    outcome = rig.run("PingOwnIP")
    assert outcome.status is Status.OK
    assert rig.pinger.sent == [("192.0.2.10", None), ("2001:db8:1::10", None), ("fe80::10", NIC)]


def test_pingownip_silent_address_is_an_error() -> None:
    """An own address that does not answer: error naming it."""
    rig = Rig()
    del rig.pinger.answers["2001:db8:1::10"]
    outcome = rig.run("PingOwnIP")
    assert outcome.status is Status.ERROR
    assert "2001:db8:1::10 did not answer" in outcome.message


def test_pingownip_without_address_is_an_error() -> None:
    """No address to ping: error."""
    host = FakeHostInfo.healthy()
    host.remove_addresses()
    rig = Rig(host)
    assert rig.run("PingOwnIP").status is Status.ERROR
    assert rig.pinger.sent == []


def test_pingwellknownhosts_empty_list_is_skipped_with_advice() -> None:
    """No hosts configured: skipped, telling how to configure them; nothing is pinged."""
    rig = Rig()
    outcome = rig.run("PingWellKnownHosts")
    assert outcome.status is Status.SKIPPED
    assert "[local] well_known_hosts" in outcome.message
    assert "/etc/dnaagent/dnaagent.toml" in outcome.message
    assert "--local-well-known-hosts" in outcome.message
    assert rig.pinger.sent == []


def test_pingwellknownhosts_pings_only_the_named_hosts() -> None:
    """All named hosts answer: ok; names are resolved; nothing else is pinged."""
    rig = Rig(well_known_hosts=["198.51.100.1", "mirror.example.test"])
    rig.names["mirror.example.test"] = ["203.0.113.5"]
    rig.pinger.answer("198.51.100.1", "203.0.113.5")
    outcome = rig.run("PingWellKnownHosts")
    assert outcome.status is Status.OK
    assert rig.pinger.sent == [("198.51.100.1", None), ("203.0.113.5", None)]
    assert "2 well-known hosts answer: 198.51.100.1 in 0.5 ms" in outcome.message


def test_pingwellknownhosts_threshold() -> None:
    """Below the threshold: warning; at it: error. An unresolvable name counts as down."""
    hosts = ["198.51.100.1", "198.51.100.2", "nowhere.example.test"]
    rig = Rig(well_known_hosts=hosts, well_known_failures=2)
    rig.pinger.answer("198.51.100.1", "198.51.100.2")
    outcome = rig.run("PingWellKnownHosts")
    assert outcome.status is Status.WARNING
    assert "nowhere.example.test (cannot resolve the name" in outcome.message
    del rig.pinger.answers["198.51.100.2"]
    outcome = rig.run("PingWellKnownHosts")
    assert outcome.status is Status.ERROR
    assert "2 of 3 well-known hosts do not answer" in outcome.message


def test_ping_tests_give_flat_figures_for_thresholds() -> None:
    """Ping tests report rtt_ms_max, rtt_ms_avg and unreachable at the top of details."""
    rig = Rig(well_known_hosts=["198.51.100.1", "198.51.100.2", "198.51.100.3"])
    rig.pinger.answer("198.51.100.1", "198.51.100.2")
    details = rig.run("PingWellKnownHosts").details
    assert details["unreachable"] == 1
    assert details["rtt_ms_max"] == 0.5 and details["rtt_ms_avg"] == 0.5
    rig.pinger.answers.clear()
    details = rig.run("PingWellKnownHosts").details
    assert details["unreachable"] == 3 and details["rtt_ms_max"] is None
    own = Rig().run("PingOwnIP").details
    assert own["unreachable"] == 0 and own["rtt_ms_max"] is not None


# -- optional tests ---------------------------------------------------------------


def test_systemlog_without_any_log_is_skipped() -> None:
    """Neither journal nor syslog: skipped with the reason."""
    host = FakeHostInfo.healthy()
    host.log = LogScan(None, reason="neither journalctl nor /var/log/syslog is available")
    outcome = Rig(host).run("SystemLog")
    assert outcome.status is Status.SKIPPED
    assert "journalctl" in outcome.message


def test_systemlog_reports_recent_entries_of_the_last_hour() -> None:
    """Entries found: a warning quoting the latest; the search covers the last hour."""
    host = FakeHostInfo.healthy()
    host.log = LogScan(
        "journal",
        [
            LogEntry(NOW - 100, "dhclient", "No DHCPOFFERS received."),
            LogEntry(NOW - 50, "kernel", "e1000e: eth0 NIC Link is Down"),
        ],
    )
    outcome = Rig(host).run("SystemLog")
    assert outcome.status is Status.WARNING
    assert outcome.message.endswith("latest: kernel: e1000e: eth0 NIC Link is Down")
    assert host.log_requests == [(NIC, NOW - 3600)]
    host.log = LogScan("/var/log/syslog", [])
    assert Rig(host).run("SystemLog").status is Status.OK


def test_hostsfile_reports_bad_lines_with_numbers() -> None:
    """Bad lines are an error naming their line numbers; valid entries are pinged."""
    host = FakeHostInfo.healthy()
    host.files["/etc/hosts"] = (
        "127.0.0.1 localhost\n"
        "# a comment\n"
        "192.0.2.300 broken\n"
        "198.51.100.7\n"
        "198.51.100.8 bad_name! ok\n"
        "ff02::1 ip6-allnodes\n"
        "198.51.100.9 files.example.test files\n"
    )
    rig = Rig(host)
    rig.pinger.answer("198.51.100.9")
    outcome = rig.run("HostsFile")
    assert outcome.status is Status.ERROR
    assert "3 bad lines" in outcome.message
    assert "line 3: '192.0.2.300' is not an IP address" in outcome.message
    assert "line 4: 198.51.100.7 has no host name" in outcome.message
    assert "line 5: 'bad_name!' is not a valid host name" in outcome.message
    assert [a for a, _ in rig.pinger.sent] == ["127.0.0.1", "198.51.100.9"]


def test_hostsfile_unreachable_entry_warns_and_pings_are_bounded() -> None:
    """A silent entry is a warning; at most 16 addresses are pinged."""
    host = FakeHostInfo.healthy()
    host.files["/etc/hosts"] = "".join(f"198.51.100.{i} h{i}\n" for i in range(1, 21))
    rig = Rig(host)
    rig.pinger.answer(*(f"198.51.100.{i}" for i in range(1, 16)))
    outcome = rig.run("HostsFile")
    assert len(rig.pinger.sent) == 16
    assert outcome.status is Status.WARNING
    assert "198.51.100.16 (h16)" in outcome.message
    assert outcome.details["not_pinged"] == 4


def test_routingtable_pings_gateways_of_every_table_but_local() -> None:
    """Gateways of main and of table 100 are pinged; an unreachable one is an error."""
    host = FakeHostInfo.healthy()
    host.route_list.append(route("10.0.0.0/8", "192.0.2.254", table=100))
    host.route_list.append(route("127.0.0.0/8", "127.0.0.9", "lo", table=255))
    rig = Rig(host)
    outcome = rig.run("RoutingTable")
    assert [a for a, _ in rig.pinger.sent] == [GATEWAY_V4, GATEWAY_V6, "192.0.2.254"]
    assert ("fe80::1", NIC) in rig.pinger.sent
    assert outcome.status is Status.ERROR
    assert "192.0.2.254 dev eth0 (table 100, route 10.0.0.0/8)" in outcome.message
    rig.pinger.answer("192.0.2.254")
    assert rig.run("RoutingTable").status is Status.OK


def test_routingtable_without_gateways_is_ok() -> None:
    """Only directly connected routes: ok, nothing pinged."""
    host = FakeHostInfo.healthy()
    host.route_list = [r for r in host.route_list if r.gateway is None]
    rig = Rig(host)
    assert rig.run("RoutingTable").status is Status.OK
    assert rig.pinger.sent == []


# -- through the Mediator ---------------------------------------------------------


def _mediator_run(rig: Rig, tests: list[str] | None = None) -> dict[str, Any]:
    mediator = Mediator(rig.clock)
    mediator.register(rig.module)
    done: list[Any] = []
    mediator.run("local", tests).addBoth(done.append)
    return {"done": done, "mediator": mediator}


def test_mediator_runs_healthy_default_sequence() -> None:
    """A healthy host: every default test ok, PingWellKnownHosts skipped (none named)."""
    rig = Rig()
    done = _mediator_run(rig)["done"]
    assert len(done) == 1
    statuses = {r.test: r.status for r in done[0]}
    assert statuses == {
        **dict.fromkeys(default_tests(rig.module), Status.OK),
        "PingWellKnownHosts": Status.SKIPPED,
    }


def test_mediator_skips_dependents_when_nic_is_down() -> None:
    """Admin down: NICStatus and NetConnectionStatus fail; the five dependents are skipped."""
    host = FakeHostInfo.healthy()
    host.set_link(NIC, admin_up=False, oper_state="DOWN")
    rig = Rig(host)
    (results,) = _mediator_run(rig)["done"]
    by_test = {r.test: r for r in results}
    assert by_test["NICStatus"].status is Status.ERROR
    assert by_test["NetConnectionStatus"].status is Status.ERROR
    assert by_test["PingLocalHost"].status is Status.OK
    for name in DEPENDENTS:
        assert by_test[name].status is Status.SKIPPED
        assert "NICStatus" in by_test[name].message
    assert rig.dns.queries == []
    assert [a for a, _ in rig.pinger.sent] == ["127.0.0.1", "::1"]


def test_mediator_timeout_cancels_a_hanging_ping() -> None:
    """A ping that never answers is cancelled when the test times out."""
    rig = Rig()
    rig.pinger.hang.add("192.0.2.254")
    rig.host.route_list.append(route("10.0.0.0/8", "192.0.2.254", table=100))
    run = _mediator_run(rig, ["RoutingTable"])
    assert run["done"] == []
    rig.clock.advance(10)
    (results,) = run["done"]
    routing = next(r for r in results if r.test == "RoutingTable")
    assert routing.status is Status.ERROR
    assert "no answer within 10 s" in routing.message
    assert rig.pinger.cancelled == ["192.0.2.254"]
