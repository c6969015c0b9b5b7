"""Network namespaces, veth pairs and helper processes for the integration tests.

A :class:`Lab` owns everything one test creates: namespaces with unique names,
the ``/etc/netns/NAME`` directories that ``ip netns exec`` bind-mounts over
``/etc``, and every process started in them. :meth:`Lab.close` ends those
processes by PID and removes the rest, whatever state the test left them in.

:func:`build_lan` wires the usual test network::

    host namespace                         router namespace
    dna0 192.0.2.10/24  <--- veth --->     dnr0 192.0.2.1/24 (gateway, DNS)
         2001:db8:1::10/64                      2001:db8:1::1/64, fe80::1
                                           lo   198.51.100.1/32 ("server")

Only documentation prefixes (RFC 5737, RFC 3849) are used, so no packet can
reach a real network even if a route were wrong.
"""

from __future__ import annotations

import ipaddress
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dnaagent.config import dumps

IP = shutil.which("ip") or "/usr/sbin/ip"
NETNS_ETC = Path("/etc/netns")
#: Left in /etc/netns by the lab that created it, so that the last lab to
#: finish (possibly of another test run) removes the directory again.
NETNS_ETC_MARKER = ".created-by-dnaagent-tests"

HOST_NIC = "dna0"
ROUTER_NIC = "dnr0"
HOST_V4 = "192.0.2.10"
GATEWAY_V4 = "192.0.2.1"
SERVER_V4 = "198.51.100.1"
HOST_V6 = "2001:db8:1::10"
GATEWAY_V6 = "2001:db8:1::1"
GATEWAY_V6_LL = "fe80::1"
#: Addresses that exist in no namespace: pings to them are never answered.
UNREACHABLE_V4 = ("203.0.113.200", "203.0.113.201", "203.0.113.202")
#: The name of the "server" address in the test DNS server.
SERVER_NAME = "server.example.test"
#: A name the test DNS server answers, and its answer.
DNS_NAME = "www.example.test"
DNS_ANSWER = "192.0.2.53"

HARDWARE_TESTS = ("NICStatus", "NetConnectionStatus", "PingLocalHost")
DEPENDENT_TESTS = (
    "IPConfiguration",
    "DNSConfiguration",
    "DHCPLease",
    "PingOwnIP",
    "PingWellKnownHosts",
)
DEFAULT_TESTS = HARDWARE_TESTS + DEPENDENT_TESTS
RESULT_KEYS = {"module", "test", "status", "message", "details", "started", "duration"}

_ICMP_SYSCTLS = {
    "net.ipv4.icmp_ratelimit": "0",
    "net.ipv6.icmp.ratelimit": "0",
    "net.ipv4.icmp_msgs_per_sec": "100000",
    "net.ipv4.icmp_msgs_burst": "100000",
    "net.ipv6.conf.all.accept_dad": "0",
    "net.ipv6.conf.default.accept_dad": "0",
}


def venv_bin(name: str) -> Path:
    """The executable ``name`` installed next to the running Python (the test venv)."""
    return Path(sys.executable).parent / name


def unavailable_reason() -> str | None:
    """Why namespace tests cannot run here, or None when they can."""
    if os.geteuid() != 0:
        return "network namespace tests need root"
    if not os.path.exists(IP):
        return "iproute2 ('ip') is not installed"
    probe = f"dnat-probe-{secrets.token_hex(4)}"
    try:
        added = subprocess.run(
            [IP, "netns", "add", probe], capture_output=True, text=True, timeout=10
        )
    except (OSError, subprocess.TimeoutExpired) as e:
        return f"'ip netns add' failed: {e}"
    if added.returncode != 0:
        return f"'ip netns add' is not available: {added.stderr.strip()}"
    subprocess.run([IP, "netns", "del", probe], capture_output=True, timeout=10)
    return None


def _run(
    argv: Sequence[str | os.PathLike[str]],
    *,
    check: bool = True,
    timeout: float = 15.0,
    env: Mapping[str, str] | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run a command to completion within ``timeout`` and capture its output."""
    done = subprocess.run(
        [os.fspath(a) for a in argv],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=dict(env) if env is not None else None,
        stdin=subprocess.DEVNULL,
    )
    if check and done.returncode != 0:
        raise AssertionError(
            f"{' '.join(map(str, argv))} exited {done.returncode}\n"
            f"stdout: {done.stdout}\nstderr: {done.stderr}"
        )
    return done


@dataclass(frozen=True)
class Namespace:
    """One network namespace created by a :class:`Lab`."""

    name: str

    def argv(self, *command: str | os.PathLike[str]) -> list[str]:
        """``command`` prefixed so that it runs inside this namespace."""
        return [IP, "netns", "exec", self.name, *(os.fspath(c) for c in command)]

    def run(
        self,
        *command: str | os.PathLike[str],
        check: bool = True,
        timeout: float = 15.0,
        env: Mapping[str, str] | None = None,
    ) -> subprocess.CompletedProcess[str]:
        """Run ``command`` inside the namespace and wait for it (bounded)."""
        return _run(self.argv(*command), check=check, timeout=timeout, env=env)

    def ip(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        """Run ``ip -n NAME ARGS`` (no fork into the namespace needed)."""
        return _run([IP, "-n", self.name, *args], check=check)

    def sysctl(self, settings: Mapping[str, str]) -> None:
        """Set kernel parameters of this namespace."""
        self.run("sysctl", "-q", "-w", *(f"{k}={v}" for k, v in settings.items()))

    def link_up(self, dev: str, up: bool = True) -> None:
        """Set a link of this namespace up or down."""
        self.ip("link", "set", "dev", dev, "up" if up else "down")

    def ping(self, address: str, timeout: float = 2.0) -> bool:
        """True when one ping from this namespace to ``address`` is answered."""
        done = self.run(
            "ping", "-n", "-c", "1", "-W", str(timeout), address, check=False, timeout=timeout + 5
        )
        return done.returncode == 0


@dataclass
class Process:
    """A process a :class:`Lab` started inside a namespace."""

    namespace: Namespace
    argv: list[str]
    popen: subprocess.Popen[bytes]
    log: Path

    @property
    def pid(self) -> int:
        """The process id (``ip netns exec`` replaces itself with the command)."""
        return self.popen.pid

    def alive(self) -> bool:
        """True while the process has not exited."""
        return self.popen.poll() is None

    def output(self) -> str:
        """Everything the process wrote to stdout and stderr so far."""
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def signal(self, signum: int) -> None:
        """Send ``signum`` to this process only, by its PID."""
        if self.alive():
            os.kill(self.pid, signum)

    def wait(self, timeout: float) -> int:
        """Wait for the exit status, at most ``timeout`` seconds."""
        return self.popen.wait(timeout=timeout)

    def stop(self, timeout: float = 5.0) -> int:
        """SIGTERM, then SIGKILL after ``timeout`` seconds; return the exit status."""
        if self.alive():
            self.signal(signal.SIGTERM)
            try:
                return self.popen.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.signal(signal.SIGKILL)
        return self.popen.wait(timeout=timeout)

    def kill(self, timeout: float = 5.0) -> int:
        """SIGKILL the process and reap it."""
        self.signal(signal.SIGKILL)
        return self.popen.wait(timeout=timeout)


def wait_for(
    predicate: Callable[[], bool], timeout: float, what: str, interval: float = 0.1
) -> None:
    """Poll ``predicate`` until it is true; fail naming ``what`` after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while True:
        if predicate():
            return
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout:g}s waiting for {what}")
        time.sleep(interval)


def _remove_netns_etc_if_ours() -> None:
    """Remove /etc/netns when a lab created it and no lab uses it any more."""
    try:
        if [p.name for p in NETNS_ETC.iterdir()] != [NETNS_ETC_MARKER]:
            return
        (NETNS_ETC / NETNS_ETC_MARKER).unlink()
        NETNS_ETC.rmdir()
    except OSError:
        pass  # another lab got there first, or started using it


class Lab:
    """Everything one test creates, removed by :meth:`close`.

    Namespace names are ``dnat-<8 hex>-<role>``, unique per lab, so that tests
    running at the same time on one machine never meet.
    """

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.prefix = f"dnat-{secrets.token_hex(4)}"
        self.namespaces: list[Namespace] = []
        self.processes: list[Process] = []
        self._etc_dirs: list[Path] = []

    def namespace(self, role: str) -> Namespace:
        """Create a namespace with loopback up, no ICMP rate limits and no DAD."""
        ns = Namespace(f"{self.prefix}-{role}")
        _run([IP, "netns", "add", ns.name])
        self.namespaces.append(ns)
        ns.ip("link", "set", "dev", "lo", "up")
        ns.sysctl(_ICMP_SYSCTLS)
        return ns

    def veth(self, a: Namespace, a_dev: str, b: Namespace, b_dev: str) -> None:
        """Create a veth pair ``a_dev`` (in ``a``) <-> ``b_dev`` (in ``b``), both up."""
        a.ip("link", "add", a_dev, "type", "veth", "peer", "name", b_dev, "netns", b.name)
        a.link_up(a_dev)
        b.link_up(b_dev)

    def resolv_conf(self, ns: Namespace, nameservers: Iterable[str]) -> Path:
        """Write ``/etc/netns/NAME/resolv.conf``; ``ip netns exec`` shows it as /etc/resolv.conf."""
        etc = NETNS_ETC / ns.name
        if etc not in self._etc_dirs:
            if not NETNS_ETC.exists():
                NETNS_ETC.mkdir(parents=True, exist_ok=True)
                (NETNS_ETC / NETNS_ETC_MARKER).touch()
            etc.mkdir(exist_ok=False)
            self._etc_dirs.append(etc)
        path = etc / "resolv.conf"
        path.write_text("".join(f"nameserver {server}\n" for server in nameservers))
        return path

    def spawn(
        self,
        ns: Namespace,
        *command: str | os.PathLike[str],
        env: Mapping[str, str] | None = None,
        log_name: str | None = None,
        cwd: Path | None = None,
    ) -> Process:
        """Start ``command`` inside ``ns`` in the background, output to a log file."""
        argv = ns.argv(*command)
        log = self.workdir / (
            log_name or f"{Path(os.fspath(command[0])).name}-{len(self.processes)}.log"
        )
        with open(log, "wb") as out:
            popen = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                env=dict(env) if env is not None else None,
                cwd=cwd,
            )
        proc = Process(ns, argv, popen, log)
        self.processes.append(proc)
        return proc

    def dnsmasq(self, ns: Namespace, listen: Sequence[str]) -> Process:
        """Start a DNS server in ``ns`` on ``listen`` that answers ``*.example.test``.

        ``--keep-in-foreground`` (unlike ``--no-daemon``) writes the pid file, once
        the listening sockets are bound: that is the readiness signal.
        """
        exe = shutil.which("dnsmasq") or "/usr/sbin/dnsmasq"
        pid_file = self.workdir / f"dnsmasq-{ns.name}.pid"
        proc = self.spawn(
            ns,
            exe,
            "--keep-in-foreground",
            "--conf-file=/dev/null",
            "--no-resolv",
            "--no-hosts",
            "--bind-interfaces",
            *(f"--listen-address={a}" for a in listen),
            f"--address=/example.test/{DNS_ANSWER}",
            f"--host-record=host.example.test,{HOST_V4},{HOST_V6}",
            f"--host-record={SERVER_NAME},{SERVER_V4}",
            f"--pid-file={pid_file}",
            "--log-facility=-",
            log_name=f"dnsmasq-{ns.name}.log",
        )

        def ready() -> bool:
            if not proc.alive():
                raise AssertionError(f"dnsmasq exited early:\n{proc.output()}")
            return pid_file.exists() and pid_file.read_text().strip() == str(proc.pid)

        wait_for(ready, 10, "dnsmasq to write its pid file")
        return proc

    def close(self) -> None:
        """End every started process by PID, delete namespaces and /etc/netns dirs.

        Raises AssertionError afterwards if something could not be removed.
        """
        problems: list[str] = []
        for proc in reversed(self.processes):
            try:
                proc.stop()
            except (OSError, subprocess.TimeoutExpired) as e:
                problems.append(f"process {proc.pid} ({proc.argv}): {e}")
        for ns in reversed(self.namespaces):
            done = _run([IP, "netns", "del", ns.name], check=False)
            if done.returncode != 0:
                problems.append(f"ip netns del {ns.name}: {done.stderr.strip()}")
        for etc in self._etc_dirs:
            shutil.rmtree(etc, ignore_errors=True)
            if etc.exists():
                problems.append(f"could not remove {etc}")
        _remove_netns_etc_if_ours()
        left = _run([IP, "netns", "list"], check=False).stdout
        problems.extend(
            f"namespace {ns.name} still exists" for ns in self.namespaces if ns.name in left.split()
        )
        self.processes.clear()
        self.namespaces.clear()
        self._etc_dirs.clear()
        if problems:
            raise AssertionError("cleanup failed: " + "; ".join(problems))


@dataclass
class Lan:
    """The host and router namespaces of :func:`build_lan` and what runs there."""

    lab: Lab
    host: Namespace
    router: Namespace
    family: int
    dns: Process | None = None
    nic: str = HOST_NIC
    peer: str = ROUTER_NIC
    config_overrides: dict[str, dict[str, Any]] = field(default_factory=dict)

    @property
    def host_address(self) -> str:
        """The address of the host's NIC."""
        return HOST_V4 if self.family == 4 else HOST_V6

    @property
    def resolver(self) -> str:
        """The address the host's resolv.conf names."""
        return GATEWAY_V4 if self.family == 4 else GATEWAY_V6

    def config(self, **local: Any) -> dict[str, dict[str, Any]]:
        """A configuration for this LAN; keyword arguments override ``[local]`` keys."""
        section: dict[str, Any] = {
            "nic": self.nic,
            "well_known_hosts": [],
            "well_known_failures": 1,
            "dns_lookup_name": DNS_NAME,
            "dns_reverse_lookup": False,
            "ping_timeout": 0.5,
        }
        section.update(local)
        return {"agent": {"state_dir": str(self.lab.workdir / "state")}, "local": section}

    def write_config(self, name: str = "dnaagent.toml", **local: Any) -> Path:
        """Write :meth:`config` to a file in the lab's work directory."""
        path = self.lab.workdir / name
        path.write_text(dumps(self.config(**local)))
        return path

    def dnactl(
        self, *args: str, timeout: float = 60.0, check: bool = False
    ) -> subprocess.CompletedProcess[str]:
        """Run the installed ``dnactl ARGS`` inside the host namespace."""
        return self.host.run(venv_bin("dnactl"), *args, check=check, timeout=timeout)

    def run_local(
        self,
        tests: Sequence[str] | None = None,
        nic: str | None = None,
        **local: Any,
    ) -> dict[str, dict[str, Any]]:
        """Run the local module standalone in the host namespace; results by test name.

        ``local`` are ``[local]`` configuration keys written to the config file.
        """
        config = self.write_config(**local)
        args = ["--config", str(config), "run", "local", "--standalone", "--json"]
        args += ["--nic", nic or self.nic]
        if tests:
            args += ["--tests", ",".join(tests)]
        done = self.dnactl(*args)
        results = parse_results(done.stdout, done.stderr)
        failed = any(r["status"] == "error" for r in results.values())
        assert done.returncode == (1 if failed else 0), (
            f"dnactl exited {done.returncode} with {'an error' if failed else 'no error'} "
            f"among the results\nstdout: {done.stdout}\nstderr: {done.stderr}"
        )
        return results


def parse_results(stdout: str, stderr: str = "") -> dict[str, dict[str, Any]]:
    """Parse ``dnactl ... --json`` output (a JSON array of results) into a dict by test."""
    try:
        data = json.loads(stdout)
    except json.JSONDecodeError as e:
        raise AssertionError(f"output is not JSON ({e}):\n{stdout}\nstderr: {stderr}") from None
    assert isinstance(data, list), f"expected a JSON array, got {type(data).__name__}: {data!r}"
    results: dict[str, dict[str, Any]] = {}
    for item in data:
        assert isinstance(item, dict), item
        missing = RESULT_KEYS - item.keys()
        assert not missing, f"result lacks {sorted(missing)}: {item}"
        assert item["status"] in ("ok", "warning", "error", "skipped"), item
        assert item["test"] not in results, f"{item['test']} reported twice"
        results[item["test"]] = item
    return results


def statuses(results: Mapping[str, Mapping[str, Any]]) -> dict[str, str]:
    """Test name -> status, for one readable comparison in an assertion."""
    return {name: str(r["status"]) for name, r in results.items()}


def explain(results: Mapping[str, Mapping[str, Any]]) -> str:
    """One line per result (status, test, message) for assertion messages."""
    return "\n".join(f"  {r['status']:8} {name}: {r['message']}" for name, r in results.items())


def build_lan(lab: Lab, family: int = 4, dns: bool = True) -> Lan:
    """Create a host and a router namespace joined by a veth pair (see module doc).

    ``family`` 4 gives the host 192.0.2.10/24 with the gateway 192.0.2.1; 6 gives
    it only 2001:db8:1::10/64 with the link-local gateway fe80::1. The router
    runs dnsmasq on the gateway address when ``dns`` is true; the host's
    resolv.conf names it either way.
    """
    host = lab.namespace("host")
    router = lab.namespace("rtr")
    lab.veth(host, HOST_NIC, router, ROUTER_NIC)
    router.ip("addr", "add", f"{SERVER_V4}/32", "dev", "lo")
    if family == 4:
        router.ip("addr", "add", f"{GATEWAY_V4}/24", "dev", ROUTER_NIC)
        host.ip("addr", "add", f"{HOST_V4}/24", "dev", HOST_NIC)
        host.ip("route", "add", "default", "via", GATEWAY_V4, "dev", HOST_NIC)
        listen = [GATEWAY_V4]
    elif family == 6:
        router.ip("addr", "add", f"{GATEWAY_V6}/64", "dev", ROUTER_NIC, "nodad")
        router.ip("addr", "add", f"{GATEWAY_V6_LL}/64", "dev", ROUTER_NIC, "nodad")
        host.ip("addr", "add", f"{HOST_V6}/64", "dev", HOST_NIC, "nodad")
        host.ip("-6", "route", "add", "default", "via", GATEWAY_V6_LL, "dev", HOST_NIC)
        listen = [GATEWAY_V6]
    else:
        raise ValueError(f"family must be 4 or 6, not {family}")
    lan = Lan(lab=lab, host=host, router=router, family=family)
    lab.resolv_conf(host, [lan.resolver])
    if dns:
        lan.dns = lab.dnsmasq(router, listen)
    wait_for(lambda: host.ping(lan.resolver, timeout=1), 10, f"{lan.resolver} to answer pings")
    return lan


@dataclass
class Star:
    """Host namespaces around one forwarding router namespace (see :func:`build_star`)."""

    router: Namespace
    hosts: dict[str, Namespace]
    #: Each host's address, and its router-side gateway address.
    addresses: dict[str, str]
    gateways: dict[str, str]


def build_star(lab: Lab, hosts: Mapping[str, str]) -> Star:
    """A router namespace forwarding between one namespace per host (IPv4).

    ``hosts`` maps a role to a documentation /24 (``"192.0.2.0/24"``); each host gets
    the next free /30 of it: the router holds the first address, the host the
    second (its NIC ``dna0``, default route via the router). The router's side is
    ``drN``. ICMP rate limits are off in every namespace (:meth:`Lab.namespace`).
    """
    router = lab.namespace("rtr")
    router.sysctl({"net.ipv4.ip_forward": "1"})
    used: dict[str, int] = {}
    star = Star(router=router, hosts={}, addresses={}, gateways={})
    for i, (role, prefix) in enumerate(hosts.items()):
        net = ipaddress.ip_network(prefix)
        k = used.get(prefix, 0)
        used[prefix] = k + 1
        if net.version != 4 or (k + 1) * 4 > net.num_addresses:
            raise ValueError(f"no free /30 left in {prefix} for {role}")
        gw, addr = net.network_address + 4 * k + 1, net.network_address + 4 * k + 2
        ns = lab.namespace(role)
        dev = f"dr{i}"
        lab.veth(ns, HOST_NIC, router, dev)
        router.ip("addr", "add", f"{gw}/30", "dev", dev)
        ns.ip("addr", "add", f"{addr}/30", "dev", HOST_NIC)
        ns.ip("route", "add", "default", "via", str(gw), "dev", HOST_NIC)
        star.hosts[role] = ns
        star.addresses[role] = str(addr)
        star.gateways[role] = str(gw)
    return star
