"""The real agent: ``twistd -n dnaagent`` in a namespace, driven by ``dnactl``.

The agent runs inside the host namespace of a healthy LAN, so the local tests
it runs ping only the namespace's gateway and resolver. Its control API
listens on the namespace's own loopback, where the port is always free.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from .netns import (
    DEFAULT_TESTS,
    Lab,
    Lan,
    Namespace,
    Process,
    explain,
    parse_results,
    statuses,
    unavailable_reason,
    venv_bin,
    wait_for,
)

_reason = unavailable_reason()
if _reason:
    pytest.skip(_reason, allow_module_level=True)

pytestmark = pytest.mark.integration

CONTROL_PORT = 4080
START_TIMEOUT = 30.0
OPTIONAL_TESTS = {"SystemLog", "HostsFile", "RoutingTable"}


def dnactl_in(
    ns: Namespace, *args: str, env: dict[str, str] | None = None, timeout: float = 60.0
) -> subprocess.CompletedProcess[str]:
    """Run ``dnactl ARGS`` in ``ns`` (bounded) and return what it did."""
    return ns.run(venv_bin("dnactl"), *args, check=False, timeout=timeout, env=env)


def assert_clean_failure(done: subprocess.CompletedProcess[str], *words: str) -> str:
    """A non-zero exit with one clear line naming ``words``, and no traceback."""
    output = (done.stdout + done.stderr).strip()
    assert done.returncode != 0, output
    assert "Traceback" not in output, output
    lines = output.splitlines()
    assert len(lines) == 1, f"expected one line, got {len(lines)}:\n{output}"
    for word in words:
        assert word in lines[0], lines[0]
    return lines[0]


@dataclass
class Agent:
    """One ``twistd -n dnaagent`` started in the host namespace of a LAN."""

    lan: Lan
    state_dir: Path
    port: int = CONTROL_PORT
    proc: Process | None = None
    starts: int = 0
    extra: list[str] = field(default_factory=list)

    @property
    def api(self) -> str:
        """The control API URL (on the namespace's loopback)."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def config(self) -> Path:
        """The agent's configuration file (its state_dir is :attr:`state_dir`)."""
        return self.lan.lab.workdir / "agent.toml"

    def find_args(self) -> list[str]:
        """How dnactl finds the agent: ``--api URL``, or ``--config FILE`` for port 0."""
        return ["--config", str(self.config)] if self.port == 0 else ["--api", self.api]

    def start(self) -> Process:
        """Start the agent and wait until ``dnactl status`` answers."""
        config = self.lan.write_config(self.config.name)
        assert config == self.config
        self.starts += 1
        self.proc = self.lan.lab.spawn(
            self.lan.host,
            venv_bin("twistd"),
            "-n",
            "--pidfile=",
            "dnaagent",
            "--config",
            str(config),
            "--state-dir",
            str(self.state_dir),
            "--control-port",
            str(self.port),
            "--local-nic",
            self.lan.nic,
            *self.extra,
            log_name=f"twistd-{self.starts}.log",
            cwd=self.lan.lab.workdir,
        )
        proc = self.proc

        def answers() -> bool:
            if not proc.alive():
                raise AssertionError(f"twistd exited {proc.popen.returncode}:\n{proc.output()}")
            return self.ctl("--timeout", "2", "status").returncode == 0

        wait_for(answers, START_TIMEOUT, "the agent's control API", interval=0.2)
        return proc

    def ctl(
        self, *args: str, env: dict[str, str] | None = None, timeout: float = 60.0
    ) -> subprocess.CompletedProcess[str]:
        """``dnactl --api URL ARGS`` (or ``--config FILE``) inside the host namespace."""
        return dnactl_in(self.lan.host, *self.find_args(), *args, env=env, timeout=timeout)

    def json(self, *args: str) -> Any:
        """``dnactl ... --json`` that must succeed; its decoded output."""
        done = self.ctl(*args, "--json")
        assert done.returncode == 0, f"dnactl {args} exited {done.returncode}: {done.stderr}"
        return json.loads(done.stdout)


@pytest.fixture
def agent(lan: Lan, twistd: Path) -> Agent:
    """An agent (not yet started) for the healthy LAN, with its own state directory."""
    return Agent(lan=lan, state_dir=lan.lab.workdir / "state")


def _key(result: dict[str, Any]) -> tuple[str, str, float]:
    return (result["module"], result["test"], float(result["started"]))


def test_agent_runs_local_tests_and_keeps_results_across_kill9(agent: Agent) -> None:
    """status, modules, run and results work; results survive SIGKILL and a restart.

    Once the agent is down, ``dnactl status`` fails with one clear line.
    """
    proc = agent.start()

    status = agent.json("status")
    assert status["pid"] == proc.pid
    assert "local" in status["modules"]
    assert agent.ctl("status").returncode == 0

    modules = {m["name"]: m for m in agent.json("modules")["modules"]}
    tests = {t["name"]: t for t in modules["local"]["tests"]}
    assert [name for name, t in tests.items() if t["default"]] == list(DEFAULT_TESTS)
    assert set(tests) - set(DEFAULT_TESTS) == OPTIONAL_TESTS
    for name in DEFAULT_TESTS[3:]:
        assert set(tests[name]["depends_on"]) == set(DEFAULT_TESTS[:3]), tests[name]

    run = agent.ctl("run", "local", "--json")
    assert run.returncode == 0, run.stdout + run.stderr
    results = parse_results(run.stdout, run.stderr)
    want = dict.fromkeys(DEFAULT_TESTS, "ok") | {"PingWellKnownHosts": "skipped"}
    assert statuses(results) == want, explain(results)
    acknowledged = {_key(r) for r in results.values()}

    stored = {_key(r) for r in agent.json("results")}
    assert acknowledged <= stored
    after_run = max(float(r["started"]) + float(r["duration"]) for r in results.values()) + 1
    newer = agent.json("results", "--since", f"{after_run:.3f}")
    assert not {_key(r) for r in newer} & acknowledged
    recent = {_key(r) for r in agent.json("results", "--since", "1h")}
    assert acknowledged <= recent

    proc.signal(signal.SIGKILL)
    assert proc.wait(timeout=10) == -signal.SIGKILL

    down = agent.ctl("status")
    line = assert_clean_failure(down, "not running")
    assert down.returncode == 3, line

    agent.start()
    after = {_key(r) for r in agent.json("results")}
    assert acknowledged <= after
    latest = agent.json("results", "--latest")
    assert {r["test"] for r in latest} >= set(DEFAULT_TESTS)


def test_dnactl_without_agent_fails_with_one_line(lab: Lab, dnactl: Path) -> None:
    """``dnactl status`` with no agent: exit 3, one line saying it is not running."""
    ns = lab.namespace("noagent")
    empty = lab.workdir / "empty-state"
    empty.mkdir()
    for args in (
        ("--api", f"http://127.0.0.1:{CONTROL_PORT}", "status"),
        ("--state-dir", str(empty), "status"),
        ("--api", f"http://127.0.0.1:{CONTROL_PORT}", "results", "--json"),
    ):
        done = dnactl_in(ns, *args, timeout=30)
        assert_clean_failure(done, "not running")
        assert done.returncode == 3
        assert done.stdout == ""


def test_bad_control_port_is_one_line_naming_the_key(lab: Lab, twistd: Path) -> None:
    """``--control-port 99999``: twistd exits non-zero with one line naming control.port."""
    ns = lab.namespace("badport")
    done = ns.run(
        twistd,
        "-n",
        "--pidfile=",
        "dnaagent",
        "--state-dir",
        str(lab.workdir / "state"),
        "--control-port",
        "99999",
        check=False,
        timeout=30,
    )
    assert_clean_failure(done, "control.port", "99999")
    assert not (lab.workdir / "state" / "results.sqlite").exists()


def test_second_agent_on_a_taken_port_fails_cleanly(agent: Agent) -> None:
    """A second agent on the same control port exits with one line; the first keeps serving."""
    first = agent.start()
    second = agent.lan.host.run(
        venv_bin("twistd"),
        "-n",
        "--pidfile=",
        "dnaagent",
        "--state-dir",
        str(agent.lan.lab.workdir / "state2"),
        "--control-port",
        str(agent.port),
        "--local-nic",
        agent.lan.nic,
        check=False,
        timeout=30,
    )
    assert_clean_failure(second, str(agent.port))
    assert first.alive()
    assert agent.json("status")["pid"] == first.pid


def test_dnactl_reaches_loopback_api_despite_http_proxy(agent: Agent) -> None:
    """An operator's http_proxy setting must not divert dnactl's loopback calls."""
    proc = agent.start()
    env = dict(os.environ)
    env.update(http_proxy="http://127.0.0.1:9", HTTP_PROXY="http://127.0.0.1:9")
    env.pop("no_proxy", None)
    env.pop("NO_PROXY", None)
    done = agent.ctl("status", "--json", env=env, timeout=30)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["pid"] == proc.pid


def test_agent_on_port_zero_is_found_through_its_config(agent: Agent) -> None:
    """With ``--control-port 0`` dnactl finds the agent from ``--config`` (its state dir).

    After a SIGKILL and a restart on a new port, ``--config`` still finds the new agent.
    """
    agent.port = 0
    first = agent.start()
    assert agent.json("status")["pid"] == first.pid
    first.kill()
    stale = agent.ctl("status")
    assert_clean_failure(stale, "not running")
    second = agent.start()
    assert agent.json("status")["pid"] == second.pid
    control = json.loads((agent.state_dir / "control.json").read_text())
    assert control["pid"] == second.pid and control["port"] > 0
