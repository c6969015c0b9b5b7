"""Lease files, resolv.conf and hosts parsers, and the HostInfo interface contract."""

from __future__ import annotations

import ipaddress
import os
import socket
import struct
from pathlib import Path

import pytest

from dnaagent.modules.hostinfo import HostInfo, HostInfoAPI
from dnaagent.modules.leases import (
    Lease,
    describe_expiry,
    parse_dhclient,
    parse_dhcp_message,
    parse_networkd,
)
from dnaagent.modules.sysfiles import parse_hosts, parse_resolv_conf, valid_hostname
from tests.fakes.host import FakeHostInfo

DHCLIENT = """\
default-duid "\\000\\001\\000\\001";
lease {
  interface "eth0";
  fixed-address 192.0.2.10;
  option subnet-mask 255.255.255.0;
  option dhcp-lease-time 3600;
  option dhcp-server-identifier 192.0.2.1;
  renew 2 2023/11/14 22:43:20;
  expire 2 2023/11/14 23:13:20;
}
lease {
  interface "eth0";
  fixed-address 192.0.2.11;
  option dhcp-server-identifier 192.0.2.2;
  expire epoch 1700000000; # Tue Nov 14 22:13:20 2023
}
lease6 {
  interface "eth0";
}
"""


def test_dhclient_leases_in_order_with_utc_and_epoch_expiry() -> None:
    """Both date forms are read; lease6 blocks are ignored."""
    leases = parse_dhclient(DHCLIENT, "/var/lib/dhcp/dhclient.leases")
    assert [(x.address, x.server, x.expires) for x in leases] == [
        ("192.0.2.10", "192.0.2.1", 1700003600.0),
        ("192.0.2.11", "192.0.2.2", 1700000000.0),
    ]
    assert all(x.interface == "eth0" and x.source == "dhclient" for x in leases)


def test_networkd_lease_expiry_counts_from_the_file_time() -> None:
    """LIFETIME is relative to when networkd wrote the file."""
    text = "# This is private data.\nADDRESS=192.0.2.10\nSERVER_ADDRESS=192.0.2.1\nLIFETIME=600\n"
    lease = parse_networkd(text, "/run/systemd/netif/leases/2", "eth0", 1000.0)
    assert lease == Lease(
        "systemd-networkd",
        "/run/systemd/netif/leases/2",
        "eth0",
        "192.0.2.10",
        "192.0.2.1",
        acquired=1000.0,
        expires=1600.0,
    )
    assert parse_networkd("LIFETIME=1\n", "x", None, 0.0) is None


def _dhcpack(address: str, lease_time: int) -> bytes:
    header = bytearray(236)
    header[0] = 2
    header[16:20] = ipaddress.IPv4Address(address).packed
    options = b"\x35\x01\x05"  # DHCPACK
    options += b"\x33\x04" + struct.pack("!I", lease_time)
    options += b"\x36\x04" + ipaddress.IPv4Address("192.0.2.1").packed
    return bytes(header) + b"\x63\x82\x53\x63" + options + b"\xff"


def test_dhcpcd_binary_lease() -> None:
    """dhcpcd keeps the DHCPACK: yiaddr, lease time (option 51) and server (54)."""
    lease = parse_dhcp_message(_dhcpack("192.0.2.10", 7200), "p", "eth0", 100.0)
    assert lease is not None
    assert (lease.address, lease.server, lease.expires) == ("192.0.2.10", "192.0.2.1", 7300.0)
    assert parse_dhcp_message(b"\x00" * 100, "p", "eth0", 0.0) is None


def test_describe_expiry() -> None:
    """Future and past expiry read naturally."""
    lease = Lease("dhclient", "p", "eth0", "192.0.2.10", expires=1700000000.0)
    assert describe_expiry(lease, 1700000000.0 - 90) == "until 2023-11-14 22:13:20 UTC (in 90 s)"
    assert describe_expiry(lease, 1700000000.0 + 3 * 86400).endswith("(3 days ago)")
    assert lease.expired(1700000000.0) and not lease.expired(1699999999.0)


def test_resolv_conf_parser() -> None:
    """Nameservers in order, duplicates dropped, scoped IPv6 kept, bad ones reported."""
    servers, bad = parse_resolv_conf(
        "search example.test\nnameserver 192.0.2.53 # main\nnameserver fe80::53%eth0\n"
        "nameserver 192.0.2.53\nnameserver\nnameserver dns.example.test\n"
    )
    assert servers == ["192.0.2.53", "fe80::53%eth0"]
    assert [(b.number, b.problem) for b in bad] == [
        (5, "nameserver without an address"),
        (6, "'dns.example.test' is not an IP address"),
    ]


def test_hosts_parser_and_hostname_syntax() -> None:
    """Entries keep their line numbers; bad lines say what is wrong."""
    entries, bad = parse_hosts(
        "127.0.0.1\tlocalhost  # me\n\n::1 ip6-localhost\nlocalhost 1.2.3.4\n"
    )
    assert [(e.number, e.address, e.names) for e in entries] == [
        (1, "127.0.0.1", ("localhost",)),
        (3, "::1", ("ip6-localhost",)),
    ]
    assert [str(b) for b in bad] == ["line 4: 'localhost' is not an IP address"]
    assert valid_hostname("files.example.test.") and valid_hostname("a_b")
    assert not valid_hostname("-bad.example") and not valid_hostname("x" * 64)


def test_lease_files_are_found_by_client(tmp_path: Path) -> None:
    """HostInfo reads dhclient, networkd and dhcpcd files and names their interface."""
    (tmp_path / "dhcp").mkdir()
    (tmp_path / "dhcp" / "dhclient.leases").write_text(DHCLIENT)
    (tmp_path / "netif").mkdir()
    netif = tmp_path / "netif" / "leases"
    netif.mkdir()
    (netif / "1").write_text("ADDRESS=127.0.0.2\nLIFETIME=60\n")
    (tmp_path / "dhcpcd").mkdir()
    (tmp_path / "dhcpcd" / "lo.lease").write_bytes(_dhcpack("127.0.0.3", 60))
    host = HostInfo(
        lease_globs=[
            str(tmp_path / "dhcp" / "*.leases"),
            str(netif / "*"),
            str(tmp_path / "dhcpcd" / "*.lease"),
        ]
    )
    found = {(x.source, x.interface, x.address) for x in host.dhcp_leases()}
    assert found == {
        ("dhclient", "eth0", "192.0.2.10"),
        ("dhclient", "eth0", "192.0.2.11"),
        ("systemd-networkd", "lo", "127.0.0.2"),
        ("dhcpcd", "lo", "127.0.0.3"),
    }


def test_syslog_fallback_keeps_network_trouble(tmp_path: Path) -> None:
    """Without journalctl the syslog file is searched for DHCP and link trouble."""
    log = tmp_path / "syslog"
    log.write_text(
        "Nov 14 22:00:01 h dhclient[12]: No DHCPOFFERS received.\n"
        "Nov 14 22:00:02 h cron[13]: job failed\n"
        "Nov 14 22:00:03 h kernel: [1.0] e1000e: eth0 NIC Link is Down\n"
        "Nov 14 22:00:04 h kernel: [1.1] usb 1-1: device failed\n"
        "Nov 14 22:00:05 h NetworkManager[9]: <info> all fine\n"
    )
    host = HostInfo(journalctl="", syslog_paths=[str(log)])
    scan = host.system_log("eth0", 0.0)
    assert scan.source == str(log)
    assert [e.source for e in scan.entries] == ["dhclient", "kernel"]
    missing = HostInfo(journalctl="", syslog_paths=[str(tmp_path / "none")]).system_log("eth0", 0)
    assert missing.source is None and "none" in missing.reason


class HostInfoContract:
    """What every HostInfoAPI implementation must do, whatever the host."""

    host: HostInfoAPI

    def test_loopback_is_listed_with_its_address(self) -> None:
        """The loopback interface exists and carries 127.0.0.1."""
        lo = [x for x in self.host.links() if x.loopback]
        assert lo, self.host.links()
        assert self.host.link(lo[0].name) == lo[0]
        assert any(str(a.ip) == "127.0.0.1" for a in self.host.addresses(lo[0].name))
        assert all(a.ifname == lo[0].name for a in self.host.addresses(lo[0].name))

    def test_routes_have_networks_and_known_interfaces(self) -> None:
        """Every route names an existing interface (or none) and a network."""
        names = {x.name for x in self.host.links()}
        for r in self.host.routes():
            assert r.ifname is None or r.ifname in names
            assert r.dst.version in (4, 6)
        nic = self.host.default_route_nic()
        assert nic is None or nic in names

    def test_missing_file_reads_as_none(self) -> None:
        """A file that does not exist reads as None."""
        assert self.host.read_text("/nonexistent/dnaagent/file") is None


class TestFakeHostInfo(HostInfoContract):
    """The fake keeps the contract."""

    host = FakeHostInfo.healthy()


@pytest.mark.skipif(
    not (os.path.exists("/proc/net/netlink") and hasattr(socket, "AF_NETLINK")),
    reason="needs Linux rtnetlink",
)
class TestRealHostInfo(HostInfoContract):
    """The real implementation keeps it on this host (read-only netlink dumps)."""

    host = HostInfo()


@pytest.mark.skipif(
    not (os.path.exists("/proc/net/netlink") and hasattr(socket, "AF_NETLINK")),
    reason="needs Linux rtnetlink",
)
def test_real_hostinfo_works_inside_a_running_asyncio_loop() -> None:
    """The agent runs on Twisted's asyncio reactor: netlink reads must work under it."""
    import asyncio

    host = HostInfo()

    async def read() -> tuple[int, int, int]:
        return len(host.links()), len(host.addresses()), len(host.routes())

    links, addresses, _routes = asyncio.run(read())
    assert links >= 1 and addresses >= 1
