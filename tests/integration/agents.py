"""Fleets of real ``twistd -n dnaagent`` processes for the overlay integration tests.

An :class:`AgentFleet` starts agents with their own state directory, overlay
port and control API (``--control-port 0``: each agent writes
``STATE_DIR/control.json``), waits until they answer, and ends them by PID when
the test is over. Each agent's output goes to a log file whose tail is put into
failure messages (:meth:`AgentFleet.logs`).

Agents are driven through their control API with :mod:`urllib` (never
through a proxy: the opener has an empty ``ProxyHandler``) and with ``dnactl``.
An agent started inside another namespace (``wrap`` is then
:meth:`tests.integration.netns.Namespace.argv`) has its API on that
namespace's loopback, so ``dnactl`` and the API calls run in that namespace.

The scheduled tests stay off (``--schedule-enabled false``) and the agents read
an empty configuration file, so that no configuration of the machine can turn
anything else on.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

from .netns import venv_bin

LOOPBACK = "127.0.0.1"
#: Seconds an agent may take from exec to answering its control API (the
#: slowest of twenty agents starting at once on a 2-core machine).
START_TIMEOUT = 60.0
#: Lines of an agent's log shown in a failure message.
LOG_TAIL = 25

Wrap = Callable[..., list[str]]

_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


class AgentApiError(AssertionError):
    """The control API answered with an error status or not at all."""


def free_udp_ports(count: int, host: str = LOOPBACK) -> list[int]:
    """``count`` distinct UDP ports that are free on ``host`` right now.

    All probe sockets are open at once, so the ports differ; another program
    may still take one before an agent binds it (:meth:`AgentFleet.start`
    then retries with a new port).
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    socks = [socket.socket(family, socket.SOCK_DGRAM) for _ in range(count)]
    try:
        for s in socks:
            s.bind((host, 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


@cache
def _twistd_options() -> str:
    """The agent's ``--help`` text (to learn which sections this version has)."""
    done = subprocess.run(
        [os.fspath(venv_bin("twistd")), "dnaagent", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
    )
    return done.stdout


def quiet_options() -> list[str]:
    """Options that keep an agent from doing anything a test did not ask for.

    The schedule is off; services that bind well-known ports and may exist in
    this version (the embedded SNMP agent) are off too, so that many agents can
    run side by side.
    """
    options = ["--schedule-enabled", "false"]
    help_text = _twistd_options()
    for option in ("--snmp-enabled", "--notifications-enabled"):
        if f"{option}=" in help_text:
            options += [option, "false"]
    return options


@dataclass
class AgentProcess:
    """One agent process started by an :class:`AgentFleet`."""

    name: str
    state_dir: Path
    host: str
    port: int
    argv: list[str]
    popen: subprocess.Popen[bytes]
    log: Path
    wrap: Wrap | None = None
    node_id: str = ""
    api: str = ""
    killed: bool = False

    @property
    def pid(self) -> int:
        """The agent's process id (``ip netns exec`` execs the command itself)."""
        return self.popen.pid

    @property
    def address(self) -> str:
        """The overlay address as a seed is written: ``HOST:PORT`` or ``[V6]:PORT``."""
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"

    def alive(self) -> bool:
        """True while the process has not exited."""
        return self.popen.poll() is None

    def output(self, lines: int = LOG_TAIL) -> str:
        """The last ``lines`` lines the agent wrote."""
        if not self.log.exists():
            return ""
        text = self.log.read_text(errors="replace").splitlines()
        return "\n".join(text[-lines:])

    def describe(self) -> str:
        """Name, PID, address and state, for failure messages."""
        state = "running" if self.alive() else f"exited {self.popen.returncode}"
        return f"{self.name} (pid {self.pid}, {self.address}, {self.node_id[:12]}, {state})"

    # ------------------------------------------------------------ signals

    def kill(self, timeout: float = 10.0) -> int:
        """SIGKILL this agent by its PID and reap it; return the exit status."""
        if self.alive():
            os.kill(self.pid, signal.SIGKILL)
        self.killed = True
        return self.popen.wait(timeout=timeout)

    def stop(self, timeout: float = 10.0) -> int:
        """SIGTERM (a graceful leave), then SIGKILL after ``timeout`` s; the exit status."""
        if self.alive():
            os.kill(self.pid, signal.SIGTERM)
            try:
                return self.popen.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                os.kill(self.pid, signal.SIGKILL)
        return self.popen.wait(timeout=timeout)

    # ------------------------------------------------------------ control API

    def control(self) -> dict[str, Any] | None:
        """``control.json`` when this very process wrote it, else None."""
        try:
            data = json.loads((self.state_dir / "control.json").read_text())
        except (OSError, ValueError):
            return None
        if not isinstance(data, dict) or data.get("pid") != self.pid:
            return None
        return data

    def request(self, method: str, path: str, body: Any = None, timeout: float = 30.0) -> Any:
        """Call the control API; the JSON answer.

        An agent in this namespace is called directly; for one inside another
        namespace a small Python program makes the same call there. Raises
        :class:`AgentApiError` with the status and error text.
        """
        if not self.api:
            control = self.control()
            if control is None:
                raise AgentApiError(f"{self.name} has not written control.json")
            self.api = f"http://{control['host']}:{control['port']}"
        if self.wrap is not None:
            return self._request_in_namespace(method, path, body, timeout)
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(
            self.api + path,
            data=data,
            method=method,
            headers={"content-type": "application/json"},
        )
        try:
            with _OPENER.open(req, timeout=timeout) as answer:
                return json.loads(answer.read())
        except urllib.error.HTTPError as e:
            text = e.read().decode(errors="replace")
            raise AgentApiError(f"{method} {path} on {self.name}: {e.code} {text}") from None
        except (OSError, ValueError) as e:
            raise AgentApiError(f"{method} {path} on {self.name}: {e}") from None

    def _request_in_namespace(self, method: str, path: str, body: Any, timeout: float) -> Any:
        assert self.wrap is not None
        argv = self.wrap(
            sys.executable,
            "-c",
            _NAMESPACE_REQUEST,
            method,
            self.api + path,
            json.dumps(body),
            str(timeout),
        )
        done = subprocess.run(
            argv, capture_output=True, text=True, timeout=timeout + 10, stdin=subprocess.DEVNULL
        )
        if done.returncode != 0:
            raise AgentApiError(f"{method} {path} on {self.name}: {done.stderr.strip()}")
        return json.loads(done.stdout)

    def get(self, path: str, timeout: float = 30.0) -> Any:
        """``GET path`` on the control API."""
        return self.request("GET", path, timeout=timeout)

    def post(self, path: str, body: Any, timeout: float = 30.0) -> Any:
        """``POST path`` with a JSON body on the control API."""
        return self.request("POST", path, body, timeout=timeout)

    def ctl(self, *args: str, timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
        """Run ``dnactl --state-dir DIR ARGS`` where the agent runs (bounded)."""
        argv = [os.fspath(venv_bin("dnactl")), "--state-dir", str(self.state_dir), *args]
        if self.wrap is not None:
            argv = self.wrap(*argv)
        env = {k: v for k, v in os.environ.items() if k.lower() not in _PROXY_VARS}
        return subprocess.run(
            argv,
            capture_output=True,
            text=True,
            timeout=timeout,
            env=env,
            stdin=subprocess.DEVNULL,
        )

    def ctl_json(self, *args: str, ok: Sequence[int] = (0,), timeout: float = 60.0) -> Any:
        """``dnactl ARGS --json``: its decoded output; the exit status must be in ``ok``."""
        done = self.ctl(*args, "--json", timeout=timeout)
        assert done.returncode in ok, (
            f"dnactl {' '.join(args)} on {self.name} exited {done.returncode}\n"
            f"stdout: {done.stdout}\nstderr: {done.stderr}"
        )
        try:
            return json.loads(done.stdout)
        except ValueError:
            shown = " ".join(args)
            raise AssertionError(f"dnactl {shown} printed no JSON: {done.stdout}") from None

    def overlay(self) -> dict[str, Any]:
        """``GET /api/v1/overlay``: node ID, peers known, counters."""
        return dict(self.get("/api/v1/overlay"))

    def lookup(self, node_id: str, timeout: float = 60.0) -> dict[str, Any]:
        """Look ``node_id`` up from this agent; the API's answer (``found``, ``closest``)."""
        if self.wrap is None:
            return dict(self.post("/api/v1/lookup", {"node_id": node_id}, timeout=timeout))
        return dict(self.ctl_json("lookup", node_id, ok=(0, 1), timeout=timeout))


_PROXY_VARS = {"http_proxy", "https_proxy", "all_proxy", "no_proxy"}

#: Run inside a namespace: METHOD URL BODY_JSON TIMEOUT -> the JSON answer on stdout.
_NAMESPACE_REQUEST = """
import json, sys, urllib.request
method, url, body, timeout = sys.argv[1:]
data = None if body == "null" else body.encode()
opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
req = urllib.request.Request(url, data=data, method=method)
req.add_header("content-type", "application/json")
try:
    with opener.open(req, timeout=float(timeout)) as answer:
        sys.stdout.write(answer.read().decode())
except Exception as e:
    sys.exit(f"{type(e).__name__}: {e}")
"""


@dataclass
class AgentFleet:
    """Agents started by one test, all ended by PID in :meth:`close`."""

    workdir: Path
    agents: list[AgentProcess] = field(default_factory=list)
    config: Path | None = None

    def _config(self) -> Path:
        if self.config is None:
            self.config = self.workdir / "empty.toml"
            self.config.write_text("# every setting comes from the command line\n")
        return self.config

    def spawn(
        self,
        name: str,
        *,
        host: str = LOOPBACK,
        port: int,
        seeds: Iterable[str] = (),
        listen_ipv6: str = "",
        extra: Sequence[str] = (),
        wrap: Wrap | None = None,
    ) -> AgentProcess:
        """Start one agent (without waiting) whose overlay listens on ``host:port``.

        ``host`` is the IPv4 listening address (empty: no IPv4); ``listen_ipv6``
        the IPv6 one (empty: no IPv6).
        """
        state_dir = self.workdir / name
        state_dir.mkdir(exist_ok=True)
        command = [
            os.fspath(venv_bin("twistd")),
            "-n",
            "--pidfile=",
            "dnaagent",
            "--config",
            str(self._config()),
            "--state-dir",
            str(state_dir),
            "--control-port",
            "0",
            "--overlay-port",
            str(port),
            "--overlay-listen-ipv4",
            host if ":" not in host else "",
            "--overlay-listen-ipv6",
            listen_ipv6,
            "--overlay-seeds",
            ",".join(seeds),
            *quiet_options(),
            *extra,
        ]
        argv = wrap(*command) if wrap is not None else command
        log = self.workdir / f"{name}.log"
        with open(log, "ab") as out:
            popen = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=state_dir,
            )
        agent = AgentProcess(
            name=name,
            state_dir=state_dir,
            host=host or listen_ipv6,
            port=port,
            argv=argv,
            popen=popen,
            log=log,
            wrap=wrap,
        )
        self.agents.append(agent)
        return agent

    def _ready(self, agent: AgentProcess) -> bool:
        """Whether ``agent`` answers; raises when it exited."""
        if not agent.alive():
            raise AgentExited(agent)
        if agent.control() is None:
            return False
        try:
            status = agent.overlay()
        except AssertionError:
            return False
        agent.node_id = str(status["node_id"])
        return True

    def wait_ready(self, agents: Sequence[AgentProcess], timeout: float = START_TIMEOUT) -> None:
        """Wait until every agent answers on its control API and knows its node ID."""
        deadline = time.monotonic() + timeout
        waiting = list(agents)
        while waiting:
            waiting = [a for a in waiting if not self._ready(a)]
            if not waiting:
                return
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"{len(waiting)} agent(s) did not answer within {timeout:g} s\n"
                    + self.logs(waiting)
                )
            time.sleep(0.2)

    def start(
        self,
        count: int,
        *,
        prefix: str = "agent",
        host: str = LOOPBACK,
        seeds: Iterable[str] = (),
        extra: Sequence[str] = (),
        timeout: float = START_TIMEOUT,
    ) -> list[AgentProcess]:
        """Start ``count`` agents on ``host`` at once (free ports) and wait for all.

        An agent that could not bind its probed port (taken meanwhile) is
        started again on another one, at most twice.
        """
        seeds = list(seeds)
        first = len(self.agents)
        started = [
            self.spawn(f"{prefix}{first + i:02d}", host=host, port=p, seeds=seeds, extra=extra)
            for i, p in enumerate(free_udp_ports(count, host))
        ]
        for attempt in range(3):
            try:
                self.wait_ready(started, timeout)
                return started
            except AgentExited as e:
                bad = e.agent
                if attempt == 2 or "cannot listen on UDP port" not in bad.output():
                    raise AssertionError(
                        f"{bad.describe()} exited at start:\n{bad.output()}"
                    ) from None
                index = started.index(bad)
                self.agents.remove(bad)
                started[index] = self.spawn(
                    f"{bad.name}r{attempt}",
                    host=host,
                    port=free_udp_ports(1, host)[0],
                    seeds=seeds,
                    extra=extra,
                )
        raise AssertionError("unreachable")

    def live(self) -> list[AgentProcess]:
        """The agents not killed by the test."""
        return [a for a in self.agents if not a.killed]

    def logs(self, agents: Iterable[AgentProcess] | None = None, lines: int = LOG_TAIL) -> str:
        """The tail of each agent's log, for a failure message."""
        chosen = self.agents if agents is None else list(agents)
        return "\n".join(f"--- {a.describe()} log tail:\n{a.output(lines)}" for a in chosen)

    def close(self) -> None:
        """End every agent still running by its PID: SIGTERM, then SIGKILL."""
        problems = []
        for agent in reversed(self.agents):
            try:
                agent.stop()
            except (OSError, subprocess.TimeoutExpired) as e:
                problems.append(f"{agent.describe()}: {e}")
        if problems:
            raise AssertionError("could not end agents: " + "; ".join(problems))


class AgentExited(AssertionError):
    """An agent exited while the test waited for it."""

    def __init__(self, agent: AgentProcess) -> None:
        super().__init__(f"{agent.describe()} exited:\n{agent.output()}")
        self.agent = agent


def parallel(fn: Callable[[Any], Any], items: Iterable[Any], workers: int = 16) -> list[Any]:
    """``[fn(item) for item in items]`` run by a bounded thread pool, in order."""
    with ThreadPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(fn, items))
