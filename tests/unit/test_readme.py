"""The README's commands and CI agree."""

from __future__ import annotations

import pathlib
import re

ROOT = pathlib.Path(__file__).resolve().parents[2]


def readme_commands() -> list[str]:
    """The shell commands of the README's first two code blocks."""
    text = (ROOT / "README.md").read_text()
    return [block.strip() for block in re.findall(r"```sh\n(.*?)```", text, re.S)[:2]]


def test_ci_runs_exactly_the_readme_test_command() -> None:
    """.ci/run's command line is the README's second command, to the letter."""
    ci = [
        line
        for line in (ROOT / ".ci" / "run").read_text().splitlines()
        if line.strip() and not line.startswith(("#", "set ", "cd ", "export "))
    ]
    assert ci == [readme_commands()[1]]


def test_readme_starts_with_install_and_test_commands() -> None:
    """The first command starts the agent, the second runs the test suite."""
    install, tests = readme_commands()
    assert "twistd -n dnaagent" in install and "pip install ." in install
    assert "tox -e py311" in tests
    for package in ("iproute2", "iputils-ping", "dnsmasq-base", "snmpd", "snmptrapd"):
        assert package in tests
