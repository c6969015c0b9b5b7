"""DNA-AGENT-MIB: lint-clean, loadable by Net-SNMP and pysmi, and equal to mib.py.

``smilint`` exits 0 even when it reports errors, so the tests check that it
prints nothing. Every OID constant of :mod:`dnaagent.snmp.mib` is compared
with what ``snmptranslate`` computes from the MIB text, so code and MIB
cannot drift apart.
"""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from dnaagent.snmp import mib
from dnaagent.snmp.tree import format_oid

ROOT = Path(__file__).resolve().parents[2]
MIBS = ROOT / "mibs"
MIB_FILE = MIBS / "DNA-AGENT-MIB.txt"


def _run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        args, capture_output=True, text=True, timeout=60, check=False, cwd="/", env=env
    )


@pytest.mark.skipif(shutil.which("smilint") is None, reason="smilint (smitools) missing")
def test_smilint_level_6_prints_nothing() -> None:
    """smilint -s -l 6 with only the carried MIBs on its path reports nothing at all."""
    env = dict(os.environ, SMIPATH=str(MIBS))
    done = _run("smilint", "-s", "-l", "6", str(MIB_FILE), env=env)
    assert done.stdout + done.stderr == ""
    assert done.returncode == 0


@pytest.mark.skipif(shutil.which("smilint") is None, reason="smilint (smitools) missing")
def test_smilint_notices_a_broken_mib(tmp_path: Path) -> None:
    """The lint check is real: a MIB with an undefined import makes smilint talk."""
    broken = tmp_path / "DNA-AGENT-MIB.txt"
    broken.write_text(
        MIB_FILE.read_text().replace("DisplayString, TruthValue", "DisplayStrin, TruthValue")
    )
    env = dict(os.environ, SMIPATH=f"{tmp_path}:{MIBS}")
    done = _run("smilint", "-s", "-l", "6", str(broken), env=env)
    assert "DisplayStrin" in done.stdout + done.stderr


@pytest.mark.skipif(shutil.which("snmptranslate") is None, reason="snmptranslate missing")
def test_snmptranslate_loads_all_carried_mibs() -> None:
    """snmptranslate -M mibs -m ALL loads the MIB without a complaint and draws the tree."""
    done = _run("snmptranslate", "-M", str(MIBS), "-m", "ALL", "-Tp", "DNA-AGENT-MIB::dnaAgent")
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
    assert "+--dnaAgent(4001)" in done.stdout
    assert "-RW- EnumVal   dnaTestRun(8)" in done.stdout
    assert "Index: dnaTestModule, dnaTestName" in done.stdout


@pytest.mark.skipif(shutil.which("snmptranslate") is None, reason="snmptranslate missing")
def test_every_oid_of_mib_py_matches_the_mib() -> None:
    """Each name in mib.OBJECTS translates to the same OID, and no MIB node is missing."""
    done = _run("snmptranslate", "-M", str(MIBS), "-m", "DNA-AGENT-MIB", "-Tz")
    assert done.returncode == 0, done.stderr
    translated = {
        name: tuple(int(x) for x in oid.split("."))
        for name, oid in re.findall(r'^"(dna\w+)"\s+"([\d.]+)"', done.stdout, re.M)
    }
    assert translated, done.stdout
    assert translated == mib.OBJECTS
    for name, oid in mib.OBJECTS.items():
        single = _run(
            "snmptranslate", "-M", str(MIBS), "-m", "DNA-AGENT-MIB", "-On", f"DNA-AGENT-MIB::{name}"
        )
        assert single.stdout.strip() == "." + format_oid(oid), name
        break  # one name through -On is enough to check the -Tz reading above


def test_mib_dir_finds_the_carried_mibs() -> None:
    """mib_dir() points at a directory with the MIB and everything it imports."""
    found = Path(mib.mib_dir())
    for name in ("DNA-AGENT-MIB", "SNMPv2-SMI", "SNMPv2-TC", "SNMPv2-CONF", "INET-ADDRESS-MIB"):
        assert (found / f"{name}.txt").is_file(), name


@pytest.mark.skipif(importlib.util.find_spec("pysmi") is None, reason="pysmi missing")
def test_pysmi_compiles_the_mib_offline(tmp_path: Path) -> None:
    """mibdump with only a file:// source compiles the MIB into a module pysnmp loads."""
    mibdump = Path(sys.executable).with_name("mibdump")
    done = _run(
        str(mibdump),
        f"--mib-source=file://{MIBS}",
        f"--destination-directory={tmp_path}",
        "--no-python-compile",
        "DNA-AGENT-MIB",
    )
    output = done.stdout + done.stderr
    assert "Failed MIBs: \n" in output, output
    assert "Missing source MIBs: \n" in output, output
    assert "Created/updated MIBs: DNA-AGENT-MIB" in output
    assert (tmp_path / "DNA-AGENT-MIB.py").is_file(), output

    from pysnmp.smi import builder

    mib_builder = builder.MibBuilder()
    mib_builder.add_mib_sources(builder.DirMibSource(str(tmp_path)))
    mib_builder.load_modules("DNA-AGENT-MIB")
    (run, peer_id) = mib_builder.import_symbols("DNA-AGENT-MIB", "dnaTestRun", "dnaPeerId")
    assert tuple(run.name) == mib.DNA_TEST_RUN
    assert tuple(peer_id.name) == mib.DNA_PEER_ID
