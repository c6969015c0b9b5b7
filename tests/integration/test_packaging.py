"""The Debian package and the RPM, built with the distributions' own tools.

The .deb is built once for this module (``packaging/build-deb``), checked with
lintian (in the background while the other tests run), installed on this
machine with ``dpkg -i``, and purged again whatever happens. The installed
agent is started without systemd: the unit's own ``ExecStart=`` command line,
run as the ``dnaagent`` user, with options that keep it on loopback and quiet
(the packaged configuration turns link-local discovery and the schedule on;
the command line turns them off again). It is read with ``snmpget`` through
the packaged MIB and with ``/usr/bin/dnactl``. The RPM is built with
``rpmbuild`` and its file list checked.

Building takes a few minutes (a virtualenv of pinned wheels from PyPI or pip's
cache), so everything else reuses one build.
"""

from __future__ import annotations

import grp
import json
import os
import pwd
import shlex
import shutil
import signal
import socket
import subprocess
import time
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGING = ROOT / "packaging"
VENV = Path("/usr/lib/dnaagent/venv")
STATE = Path("/var/lib/dnaagent")
UNIT = Path("/lib/systemd/system/dnaagent.service")
CONFIG = Path("/etc/dnaagent/dnaagent.toml")
MIB = Path("/usr/share/snmp/mibs/DNA-AGENT-MIB.txt")
IETF_MIBS = Path("/usr/share/dnaagent/mibs")
ENABLED_LINK = Path("/etc/systemd/system/multi-user.target.wants/dnaagent.service")
#: Every path the package puts on the system; none may be left after a purge.
INSTALLED = [
    VENV.parent, Path("/usr/bin/dnactl"), UNIT, CONFIG.parent, MIB, IETF_MIBS.parent,
    Path("/usr/share/doc/dnaagent"), Path("/usr/share/man/man1/dnactl.1.gz"),
]  # fmt: skip
BUILD_TIMEOUT = 900

pytestmark = pytest.mark.integration


def _version() -> str:
    from dnaagent import __version__

    return __version__


def _need(*tools: str) -> None:
    """Skip unless every tool is on PATH (the message names the Debian package)."""
    packages = {
        "dpkg-buildpackage": "dpkg-dev",
        "dh": "debhelper",
        "lintian": "lintian",
        "rpmbuild": "rpm",
        "snmpget": "snmp",
        "setpriv": "util-linux",
    }
    for tool in tools:
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} is not installed (Debian package {packages.get(tool, tool)})")
    if not Path("/usr/bin/python3.11").exists():
        pytest.skip("/usr/bin/python3.11 is missing (Debian packages python3.11, python3.11-venv)")


def _run(argv: list[str], timeout: float = 120, **kwargs) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        argv, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL, **kwargs
    )


def _build(script: str, out: Path) -> Path:
    """Run ``packaging/SCRIPT OUT`` and return the one package it wrote."""
    out.mkdir(parents=True, exist_ok=True)
    done = _run([str(PACKAGING / script), str(out)], timeout=BUILD_TIMEOUT, cwd=ROOT)
    assert done.returncode == 0, f"{script} failed:\n{done.stdout[-4000:]}\n{done.stderr[-4000:]}"
    built = [p for p in out.iterdir() if p.suffix in (".deb", ".rpm")]
    assert len(built) == 1, built
    return built[0]


@dataclass
class Built:
    """The .deb, and lintian checking it in the background meanwhile."""

    path: Path
    lintian: subprocess.Popen[bytes] | None
    lintian_output: Path


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Built]:
    """The .deb built from this tree by ``packaging/build-deb``.

    lintian starts on it at once and runs while the other tests install it
    (the slowest steps overlap); the lintian test collects its output.
    """
    _need("dpkg-buildpackage", "dh")
    out = tmp_path_factory.mktemp("deb")
    path = _build("build-deb", out / "dist")
    report = out / "lintian.txt"
    lintian = None
    if shutil.which("lintian") is not None:
        with open(report, "wb") as sink:
            lintian = subprocess.Popen(
                ["lintian", "--tag-display-limit", "0", str(path)],
                stdout=sink, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            )  # fmt: skip
    try:
        yield Built(path, lintian, report)
    finally:
        if lintian is not None and lintian.poll() is None:
            lintian.kill()
            lintian.wait()


@pytest.fixture
def deb(built: Built) -> Path:
    """The path of the built .deb."""
    return built.path


def _installed() -> bool:
    done = _run(["dpkg-query", "-W", "-f=${db:Status-Status}", "dnaagent"])
    return done.returncode == 0 and done.stdout.strip() not in ("", "not-installed")


def _user_exists(name: str = "dnaagent") -> bool:
    try:
        pwd.getpwnam(name)
    except KeyError:
        return False
    return True


def _group_exists(name: str = "dnaagent") -> bool:
    try:
        grp.getgrnam(name)
    except KeyError:
        return False
    return True


def _processes_of(uid: int) -> list[int]:
    """PIDs of the processes whose real UID is ``uid``."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            status = (entry / "status").read_text()
        except OSError:
            continue
        for line in status.splitlines():
            if line.startswith("Uid:") and int(line.split()[1]) == uid:
                found.append(int(entry.name))
    return found


def _missing_dependencies(deb: Path) -> list[str]:
    """The packages the .deb depends on that are not installed (first alternatives)."""
    depends = _run(["dpkg-deb", "-f", str(deb), "Depends"]).stdout
    missing = []
    for clause in depends.split(","):
        name = clause.split("|")[0].split("(")[0].split(":")[0].strip()
        if not name:
            continue
        status = _run(["dpkg-query", "-W", "-f=${db:Status-Status}", name])
        if status.stdout.strip() != "installed":
            missing.append(name)
    return missing


def _purge() -> subprocess.CompletedProcess[str]:
    return _run(["dpkg", "--force-unsafe-io", "--purge", "dnaagent"], timeout=300)


@pytest.fixture
def installed(deb: Path) -> Iterator[Path]:
    """The .deb installed with ``dpkg -i``; purged after the test, passed or failed."""
    if os.geteuid() != 0:
        pytest.skip("dpkg -i needs root")
    if _installed() or _user_exists() or STATE.exists() or CONFIG.parent.exists():
        pytest.skip(
            "dnaagent (package, user, /var/lib/dnaagent or /etc/dnaagent) is already on this "
            "machine; the test would remove it"
        )
    missing = _missing_dependencies(deb)
    if missing:
        done = _run(["apt-get", "install", "-y", "-qq", *missing], timeout=600)
        assert done.returncode == 0, f"apt-get install {missing}: {done.stderr}"
    try:
        # --force-unsafe-io: no fsync per file; this is a test, not a system to keep.
        done = _run(["dpkg", "--force-unsafe-io", "-i", str(deb)], timeout=600)
        assert done.returncode == 0, f"dpkg -i failed:\n{done.stdout}\n{done.stderr}"
        yield deb
    finally:
        if _installed():
            _purge()


def _free_port(kind: int) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _unit(path: Path) -> dict[str, str]:
    """The ``[Service]`` settings of a unit file (the last value of each key)."""
    settings: dict[str, str] = {}
    section = ""
    for line in path.read_text().splitlines():
        line = line.strip()
        if line.startswith("["):
            section = line
        elif section == "[Service]" and "=" in line and not line.startswith("#"):
            key, _, value = line.partition("=")
            settings[key] = value
    return settings


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        os.kill(proc.pid, signal.SIGTERM)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(20)


def test_deb_installs_serves_snmp_and_dnactl_then_purges_cleanly(installed, tmp_path) -> None:
    """dpkg -i, the unit's agent as user dnaagent on loopback, snmpget + dnactl, dpkg --purge."""
    _need("snmpget", "setpriv")
    user = pwd.getpwnam("dnaagent")

    # What the package installed.
    readable = [Path("/usr/share/doc/dnaagent/install.md"), VENV / "bin" / "twistd"]
    for path in INSTALLED + readable + [IETF_MIBS / "SNMPv2-SMI.txt"]:
        assert path.exists(), f"{path} is not installed"
    assert os.path.realpath("/usr/bin/dnactl") == str(VENV / "bin" / "dnactl")
    assert grp.getgrgid(user.pw_gid).gr_name == "dnaagent"
    st = STATE.stat()
    assert (st.st_uid, st.st_gid, st.st_mode & 0o777) == (user.pw_uid, user.pw_gid, 0o750)
    conffiles = _run(["dpkg-query", "-W", "-f=${Conffiles}", "dnaagent"]).stdout
    assert str(CONFIG) in conffiles
    # It may hold SNMP secrets: readable by root and the agent's group only.
    st = CONFIG.stat()
    assert (st.st_uid, st.st_gid, st.st_mode & 0o777) == (0, user.pw_gid, 0o640)
    caches = list(VENV.glob("lib/python3*/site-packages/twisted/plugins/dropin.cache"))
    assert caches, "the postinst did not build Twisted's plugin cache"
    assert list(VENV.glob("lib/python3*/site-packages/dnaagent/__pycache__/*.pyc"))
    assert ENABLED_LINK.is_symlink(), "the unit was not enabled"

    # The unit: the hardening the package promises, and its command line.
    unit = _unit(UNIT)
    assert unit["User"] == "dnaagent"
    assert set(unit["CapabilityBoundingSet"].split()) == {"CAP_NET_RAW", "CAP_NET_BIND_SERVICE"}
    assert set(unit["AmbientCapabilities"].split()) == {"CAP_NET_RAW", "CAP_NET_BIND_SERVICE"}
    assert unit["ProtectSystem"] == "strict"
    assert unit["NoNewPrivileges"] == "yes"
    assert unit["PrivateTmp"] == "yes"
    assert unit["ReadWritePaths"] == str(STATE)
    assert set(unit["RestrictAddressFamilies"].split()) >= {"AF_INET", "AF_INET6", "AF_NETLINK"}
    assert UNIT.read_bytes() == (PACKAGING / "systemd" / "dnaagent.service").read_bytes()
    exec_start = shlex.split(unit["ExecStart"])
    if shutil.which("systemd-analyze"):
        # Works without a running systemd: unknown or malformed settings,
        # a missing ExecStart program or man page are reported.
        verify = _run(["systemd-analyze", "verify", str(UNIT)], timeout=60)
        assert verify.returncode == 0, verify.stderr
        assert "dnaagent.service" not in verify.stderr, verify.stderr
    assert exec_start[0] == str(VENV / "bin" / "twistd")

    # The agent accepts the packaged configuration, which turns discovery and
    # the schedule on.
    as_user = ["setpriv", f"--reuid={user.pw_uid}", f"--regid={user.pw_gid}", "--init-groups"]
    env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8"}
    printed = _run([*as_user, *exec_start, "--print-config"], env=env, cwd=STATE, timeout=120)
    assert printed.returncode == 0, printed.stderr
    effective = tomllib.loads(printed.stdout)
    assert effective["overlay"]["discovery"] is True
    assert effective["schedule"]["enabled"] is True

    # The agent as the unit starts it, kept on loopback and quiet.
    snmp_port, overlay_port = _free_port(socket.SOCK_DGRAM), _free_port(socket.SOCK_DGRAM)
    quiet = [
        "--overlay-discovery", "false", "--schedule-enabled", "false",
        "--overlay-listen-ipv4", "127.0.0.1", "--overlay-listen-ipv6", "",
        "--overlay-port", str(overlay_port),
        "--snmp-listen", "127.0.0.1", "--snmp-port", str(snmp_port),
        "--control-port", "0", "--distributed-dns-proxy-port", "0",
    ]  # fmt: skip
    log = tmp_path / "agent.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [*as_user, *exec_start, *quiet],
            stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env, cwd=STATE,
        )  # fmt: skip
    try:
        deadline = time.monotonic() + 90
        control = STATE / "control.json"
        while True:
            try:
                if json.loads(control.read_text()).get("pid") == proc.pid:
                    break
            except (OSError, ValueError):
                pass
            assert proc.poll() is None, f"the agent exited:\n{log.read_text()}"
            assert time.monotonic() < deadline, f"the agent did not start:\n{log.read_text()}"
            time.sleep(0.2)
        uid_line = next(
            line for line in Path(f"/proc/{proc.pid}/status").read_text().splitlines()
            if line.startswith("Uid:")
        )  # fmt: skip
        assert int(uid_line.split()[1]) == user.pw_uid
        for path in STATE.iterdir():
            assert path.stat().st_uid == user.pw_uid, f"{path} is not owned by dnaagent"

        # snmpget through the packaged MIB: DNA-AGENT-MIB comes from
        # /usr/share/snmp/mibs (Net-SNMP's default path), its IETF imports
        # from the package's directory.
        snmp = _run(
            [
                "snmpget", "-v2c", "-c", "public", "-r", "2", "-t", "3", "-Oqv",
                "-M", f"+{IETF_MIBS}", "-m", "DNA-AGENT-MIB:SNMPv2-MIB",
                f"127.0.0.1:{snmp_port}", "DNA-AGENT-MIB::dnaVersion.0",
                "DNA-AGENT-MIB::dnaNodeId.0", "SNMPv2-MIB::sysDescr.0",
            ],
            timeout=60,
        )  # fmt: skip
        assert snmp.returncode == 0, snmp.stdout + snmp.stderr + log.read_text()
        version, snmp_node_id, descr = (v.strip('"') for v in snmp.stdout.splitlines())
        assert version == _version()
        assert "Distributed Network Agent" in descr

        # dnactl on PATH finds the agent through /var/lib/dnaagent/control.json.
        status = _run(["/usr/bin/dnactl", "status", "--json"], timeout=60)
        assert status.returncode == 0, status.stderr
        assert json.loads(status.stdout)["overlay"]["node_id"] == snmp_node_id
        text = _run(["/usr/bin/dnactl", "status"], timeout=60)
        assert text.returncode == 0 and "running" in text.stdout, text.stdout + text.stderr
    finally:
        _stop(proc)
    assert proc.returncode is not None

    # Purge: files, state, user, group and processes are gone.
    done = _purge()
    assert done.returncode == 0, done.stdout + done.stderr
    assert not _installed()
    left = [str(p) for p in INSTALLED + [STATE, ENABLED_LINK] if p.exists() or p.is_symlink()]
    assert left == [], f"left after purge: {left}"
    assert not _user_exists() and not _group_exists()
    assert _processes_of(user.pw_uid) == []


def test_rpm_builds_with_agent_unit_config_and_mib(tmp_path: Path) -> None:
    """rpmbuild builds the spec; the RPM holds the agent, the shared unit, config and MIB."""
    _need("rpmbuild")
    rpm = _build("build-rpm", tmp_path / "rpm")
    files = set(_run(["rpm", "-qlp", str(rpm)]).stdout.split())
    for path in [
        "/usr/lib/dnaagent/venv/bin/twistd",
        "/usr/lib/dnaagent/venv/bin/dnactl",
        "/usr/bin/dnactl",
        "/usr/lib/systemd/system/dnaagent.service",
        str(CONFIG),
        str(MIB),
        str(IETF_MIBS / "SNMPv2-SMI.txt"),
        str(STATE),
    ]:
        assert path in files, f"{path} is not in the RPM"
    assert any(f.startswith("/usr/share/man/man1/dnactl.1") for f in files)
    assert any("dnaagent/tap.py" in f for f in files)
    assert _run(["rpm", "-qcp", str(rpm)]).stdout.split() == [str(CONFIG)]
    conf = _run(
        ["rpm", "-qp", "--qf", "[%{FILENAMES} %{FILEMODES:perms} %{FILEGROUPNAME}\n]", str(rpm)]
    ).stdout
    assert f"{CONFIG} -rw-r----- dnaagent" in conf.splitlines()
    scripts = _run(["rpm", "-qp", "--scripts", str(rpm)]).stdout
    assert "useradd --system" in scripts and "getPlugins" in scripts

    # The unit is packaging/systemd's file, the one the .deb carries too.
    source = (PACKAGING / "systemd" / "dnaagent.service").read_bytes()
    # rpm2archive (part of rpm) turns the payload into a gzipped tar.
    archive = subprocess.run(
        ["rpm2archive", "-"], stdin=rpm.open("rb"), capture_output=True, check=True
    ).stdout
    unit = subprocess.run(
        ["tar", "-xzOf", "-", "./usr/lib/systemd/system/dnaagent.service"],
        input=archive, capture_output=True, check=True,
    ).stdout  # fmt: skip
    assert unit == source


def test_deb_has_no_lintian_errors(built: Built) -> None:
    """lintian finds no error in the .deb (overrides in packaging/debian state their reason)."""
    _need("lintian")
    assert built.lintian is not None
    returncode = built.lintian.wait(timeout=900)
    report = built.lintian_output.read_text(errors="replace")
    errors = [line for line in report.splitlines() if line.startswith("E:")]
    assert errors == [], "\n".join(errors)
    assert returncode == 0, report
