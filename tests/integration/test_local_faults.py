"""The local test module against real faults made in network namespaces.

Each test builds a healthy LAN (see :mod:`tests.integration.netns`), breaks one
thing for real (a link, an address, a route, the DNS server), runs
``dnactl run local --standalone --json`` inside the host namespace and checks
that exactly the tests that should fail fail, and that their dependents are
skipped naming the failed dependency.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterable, Mapping
from typing import Any

import pytest

from .netns import (
    DEFAULT_TESTS,
    DEPENDENT_TESTS,
    GATEWAY_V4,
    GATEWAY_V6,
    GATEWAY_V6_LL,
    HARDWARE_TESTS,
    SERVER_NAME,
    SERVER_V4,
    UNREACHABLE_V4,
    Lan,
    Namespace,
    explain,
    parse_results,
    statuses,
    unavailable_reason,
)

_reason = unavailable_reason()
if _reason:
    pytest.skip(_reason, allow_module_level=True)

pytestmark = pytest.mark.integration
needs_nft = pytest.mark.skipif(shutil.which("nft") is None, reason="nftables is not installed")

Results = dict[str, dict[str, Any]]

#: A neighbour address on the LAN that nothing answers to.
DEAD_NEIGHBOUR_V4 = "192.0.2.99"
#: A host address the test DNS server has no PTR record for.
NO_PTR_V4 = "192.0.2.11"


def expected(
    base: str = "ok", skipped: Iterable[str] = ("PingWellKnownHosts",), **status: str
) -> dict[str, str]:
    """The status of every default test: ``base``, then ``skipped``, then ``status``."""
    want = dict.fromkeys(DEFAULT_TESTS, base)
    want.update(dict.fromkeys(skipped, "skipped"))
    want.update(status)
    return want


def assert_statuses(results: Results, want: Mapping[str, str]) -> None:
    """Every test has exactly the wanted status (one diff for all of them)."""
    assert statuses(results) == dict(want), "\n" + explain(results)


def assert_skipped_for(results: Results, tests: Iterable[str], dependency: str) -> None:
    """``tests`` are skipped and their messages name ``dependency``."""
    for name in tests:
        result = results[name]
        assert result["status"] == "skipped", explain(results)
        assert dependency in result["message"], f"{name}: {result['message']!r}"


def test_healthy_lan_passes_every_default_test(lan: Lan) -> None:
    """A healthy LAN: the eight default tests run, all ok but PingWellKnownHosts.

    With no well-known hosts configured PingWellKnownHosts is skipped.
    """
    results = lan.run_local()
    assert sorted(results) == sorted(DEFAULT_TESTS)
    assert_statuses(results, expected())
    assert all(r["module"] == "local" for r in results.values())
    assert all(r["duration"] >= 0 for r in results.values())


def test_run_accepts_config_after_the_module_name(lan: Lan) -> None:
    """``dnactl run local --standalone --json --nic IF --config FILE`` (options after the module).

    The configuration given there is used: its DNS name resolves, so DNSConfiguration is ok.
    """
    config = lan.write_config()
    done = lan.dnactl(
        "run", "local", "--standalone", "--json", "--nic", lan.nic, "--config", str(config)
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert_statuses(parse_results(done.stdout, done.stderr), expected())


def test_selected_tests_run_with_their_dependencies(lan: Lan) -> None:
    """``--tests PingOwnIP`` runs PingOwnIP and the three tests it depends on, nothing else."""
    results = lan.run_local(tests=["PingOwnIP"])
    assert statuses(results) == dict.fromkeys([*HARDWARE_TESTS, "PingOwnIP"], "ok"), explain(
        results
    )


def test_reachable_well_known_hosts_are_ok(lan: Lan) -> None:
    """Well-known hosts that answer (gateway and a server behind it) make the test ok."""
    results = lan.run_local(well_known_hosts=[GATEWAY_V4, SERVER_V4])
    assert_statuses(results, expected(skipped=()))


def test_nic_down_fails_nicstatus_and_skips_dependents(lan: Lan) -> None:
    """An administratively down NIC fails NICStatus; the five dependents are skipped.

    A down link has no connection either, so NetConnectionStatus fails with it.
    """
    lan.host.link_up(lan.nic, up=False)
    results = lan.run_local()
    assert_statuses(
        results,
        expected(skipped=DEPENDENT_TESTS, NICStatus="error", NetConnectionStatus="error"),
    )
    assert "administratively down" in results["NICStatus"]["message"]
    assert_skipped_for(results, DEPENDENT_TESTS, "NICStatus")


def test_no_carrier_fails_netconnectionstatus_only(lan: Lan) -> None:
    """The far end of the veth down (no carrier): only NetConnectionStatus fails."""
    lan.router.link_up(lan.peer, up=False)
    results = lan.run_local()
    assert_statuses(
        results,
        expected(base="ok", skipped=DEPENDENT_TESTS, NetConnectionStatus="error"),
    )
    assert_skipped_for(results, DEPENDENT_TESTS, "NetConnectionStatus")


def test_loopback_down_fails_pinglocalhost(lan: Lan) -> None:
    """Loopback down breaks the local TCP/IP check; the dependents are skipped."""
    lan.host.link_up("lo", up=False)
    results = lan.run_local()
    assert_statuses(results, expected(skipped=DEPENDENT_TESTS, PingLocalHost="error"))
    assert_skipped_for(results, DEPENDENT_TESTS, "PingLocalHost")


def test_no_address_fails_ipconfiguration(lan: Lan) -> None:
    """No address on the NIC: IPConfiguration and PingOwnIP fail, DHCPLease is skipped.

    Without an address there is no route to the resolver either, so
    DNSConfiguration fails; DHCPLease skips itself (DHCP is not in use).
    """
    lan.host.ip("addr", "flush", "dev", lan.nic)
    results = lan.run_local()
    assert_statuses(
        results,
        expected(
            IPConfiguration="error",
            PingOwnIP="error",
            DNSConfiguration="error",
            DHCPLease="skipped",
        ),
    )
    assert "no IP address" in results["IPConfiguration"]["message"]


def test_gateway_outside_subnet_fails_ipconfiguration_only(lan: Lan) -> None:
    """A default route via an on-link gateway in another subnet fails IPConfiguration."""
    lan.host.ip("route", "del", "default")
    lan.host.ip("route", "add", "default", "via", "203.0.113.1", "dev", lan.nic, "onlink")
    results = lan.run_local()
    assert_statuses(results, expected(IPConfiguration="error"))
    assert "203.0.113.1" in results["IPConfiguration"]["message"], explain(results)


def test_dead_dns_server_fails_dnsconfiguration_only(lan: Lan) -> None:
    """DNSConfiguration is ok while dnsmasq runs and fails once it is killed."""
    alive = lan.run_local()
    assert alive["DNSConfiguration"]["status"] == "ok", explain(alive)
    assert lan.dns is not None
    lan.dns.kill()
    dead = lan.run_local()
    assert_statuses(dead, expected(DNSConfiguration="error"))


def test_unreachable_well_known_hosts_fail(lan: Lan) -> None:
    """Two unreachable well-known hosts with a threshold of one: PingWellKnownHosts error."""
    results = lan.run_local(well_known_hosts=list(UNREACHABLE_V4[:2]), well_known_failures=1)
    assert_statuses(results, expected(skipped=(), PingWellKnownHosts="error"))


def test_unreachable_well_known_hosts_at_threshold_fail(lan: Lan) -> None:
    """As many unreachable hosts as the threshold: PingWellKnownHosts error."""
    hosts = [SERVER_V4, *UNREACHABLE_V4[:2]]
    results = lan.run_local(well_known_hosts=hosts, well_known_failures=2)
    assert_statuses(results, expected(skipped=(), PingWellKnownHosts="error"))


def test_unreachable_well_known_hosts_below_threshold_warn(lan: Lan) -> None:
    """Fewer unreachable hosts than the threshold: PingWellKnownHosts warning."""
    hosts = [SERVER_V4, GATEWAY_V4, UNREACHABLE_V4[0]]
    results = lan.run_local(well_known_hosts=hosts, well_known_failures=2)
    assert_statuses(results, expected(skipped=(), PingWellKnownHosts="warning"))


def test_link_local_address_only_fails_dhcplease_and_ipconfiguration(lan: Lan) -> None:
    """Only an APIPA address (169.254/16): DHCPLease and IPConfiguration fail.

    The address still answers ping (PingOwnIP ok); the resolver is unreachable.
    """
    lan.host.ip("addr", "flush", "dev", lan.nic)
    lan.host.ip("addr", "add", "169.254.77.10/16", "dev", lan.nic)
    results = lan.run_local()
    assert_statuses(
        results,
        expected(IPConfiguration="error", DHCPLease="error", DNSConfiguration="error"),
    )
    for name in ("IPConfiguration", "DHCPLease"):
        assert "169.254.77.10" in results[name]["message"], explain(results)


def test_ipv6_only_lan_passes_ipconfiguration(lan6: Lan) -> None:
    """An IPv6-only host with a link-local default gateway passes IPConfiguration.

    DNS over IPv6 works too; DHCPLease skips itself (no IPv4, no lease).
    """
    results = lan6.run_local()
    assert_statuses(results, expected(skipped=("PingWellKnownHosts", "DHCPLease")))
    assert "fe80::1" in results["IPConfiguration"]["message"]


def test_ipv6_well_known_hosts_global_and_scoped_link_local(lan6: Lan) -> None:
    """Well-known IPv6 hosts, a global one and a scoped link-local one, answer."""
    results = lan6.run_local(well_known_hosts=[GATEWAY_V6, f"{GATEWAY_V6_LL}%{lan6.nic}"])
    assert_statuses(results, expected(skipped=("DHCPLease",)))


def test_well_known_hosts_by_name_use_the_namespace_resolver(lan: Lan) -> None:
    """A well-known host given by name resolves through resolv.conf; a name that fails is down."""
    ok = lan.run_local(well_known_hosts=[SERVER_NAME])
    assert_statuses(ok, expected(skipped=()))
    bad = lan.run_local(well_known_hosts=[SERVER_NAME, "missing.invalid"], well_known_failures=1)
    assert_statuses(bad, expected(skipped=(), PingWellKnownHosts="error"))
    assert "missing.invalid" in bad["PingWellKnownHosts"]["message"]


def test_reverse_lookup_ok_with_ptr_and_warns_without(lan: Lan) -> None:
    """dns_reverse_lookup: ok when the NIC's address has a PTR record, a warning when not."""
    with_ptr = lan.run_local(tests=["DNSConfiguration"], dns_reverse_lookup=True)
    assert statuses(with_ptr) == dict.fromkeys([*HARDWARE_TESTS, "DNSConfiguration"], "ok")
    lan.host.ip("addr", "flush", "dev", lan.nic)
    lan.host.ip("addr", "add", f"{NO_PTR_V4}/24", "dev", lan.nic)
    without = lan.run_local(tests=["DNSConfiguration"], dns_reverse_lookup=True)
    assert without["DNSConfiguration"]["status"] == "warning", explain(without)
    assert NO_PTR_V4 in without["DNSConfiguration"]["message"]


def test_routing_table_pings_every_gateway(lan: Lan) -> None:
    """RoutingTable (optional, after PingLocalHost): ok, then error for a dead gateway."""
    healthy = lan.run_local(tests=["RoutingTable"])
    assert statuses(healthy) == {"PingLocalHost": "ok", "RoutingTable": "ok"}, explain(healthy)
    lan.host.ip("route", "add", "198.51.100.0/24", "via", DEAD_NEIGHBOUR_V4)
    broken = lan.run_local(tests=["RoutingTable"])
    assert statuses(broken) == {"PingLocalHost": "ok", "RoutingTable": "error"}, explain(broken)
    assert DEAD_NEIGHBOUR_V4 in broken["RoutingTable"]["message"]


@pytest.mark.parametrize(
    ("lines", "status"),
    [
        (["127.0.0.1 localhost", f"{SERVER_V4} {SERVER_NAME}"], "ok"),
        (["127.0.0.1 localhost", f"{UNREACHABLE_V4[0]} gone.example.test"], "warning"),
        (["127.0.0.1 localhost", "192.0.2.300 broken.example.test"], "error"),
    ],
    ids=["answering", "unreachable-entry", "bad-line"],
)
def test_hosts_file(lan: Lan, lines: list[str], status: str) -> None:
    """HostsFile: well-formed answering entries ok, a silent entry warns, a bad line fails."""
    hosts = lan.lab.workdir / "hosts"
    hosts.write_text("\n".join(lines) + "\n")
    results = lan.run_local(tests=["HostsFile"], hosts_file=str(hosts))
    assert statuses(results) == {"PingLocalHost": "ok", "HostsFile": status}, explain(results)


def _drop_echo_to(ns: Namespace, address: str) -> None:
    """In ``ns``, drop ICMP echo requests addressed to ``address`` (nftables)."""
    ns.run("nft", "add", "table", "inet", "dnatest")
    ns.run(
        "nft",
        "add chain inet dnatest input { type filter hook input priority 0 ; policy accept ; }",
    )
    ns.run("nft", f"add rule inet dnatest input ip daddr {address} icmp type echo-request drop")


@needs_nft
def test_resolver_that_drops_ping_but_answers_is_ok(lan: Lan) -> None:
    """A resolver that drops ping but answers the lookup is ok, without a warning."""
    _drop_echo_to(lan.router, GATEWAY_V4)
    assert not lan.host.ping(GATEWAY_V4, timeout=0.5)
    results = lan.run_local()
    assert_statuses(results, expected())
    assert "does not answer ping" in results["DNSConfiguration"]["message"], explain(results)


def test_one_dead_resolver_of_two_warns(lan: Lan) -> None:
    """Of two resolvers one has no DNS server: DNSConfiguration warns and names it."""
    lan.lab.resolv_conf(lan.host, [GATEWAY_V4, SERVER_V4])
    results = lan.run_local()
    assert_statuses(results, expected(DNSConfiguration="warning"))
    assert SERVER_V4 in results["DNSConfiguration"]["message"], explain(results)


@needs_nft
def test_firewall_dropping_echo_to_own_address_fails_pingownip(lan: Lan) -> None:
    """A local firewall dropping echo to the NIC's address: only PingOwnIP fails."""
    _drop_echo_to(lan.host, lan.host_address)
    results = lan.run_local()
    assert_statuses(results, expected(PingOwnIP="error"))
    assert lan.host_address in results["PingOwnIP"]["message"], explain(results)
