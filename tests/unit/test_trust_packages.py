"""Signed module packages, the trust store, loading, fetching and the CLI, with real keys."""

from __future__ import annotations

import io
import sys
import zipfile

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from twisted.internet import defer

from dnaagent.control.module_cli import add_module_parser, cmd_module
from dnaagent.trust import TrustStore, UntrustedPackage, build_package, read_package
from dnaagent.trust.loader import ModuleStore, fetch_package, serve_packages
from dnaagent.trust.package import MANIFEST, PackageError

SOURCE = {
    "__init__.py": b"from .tests import make_module\n",
    "tests.py": b"def make_module(reactor, agent):\n    return ('demo module', reactor)\n",
}


@pytest.fixture()
def key() -> Ed25519PrivateKey:
    """A publisher's key."""
    return Ed25519PrivateKey.generate()


@pytest.fixture()
def trust(tmp_path, key) -> TrustStore:
    """A trust store that trusts ``key``."""
    store = TrustStore(str(tmp_path / "trusted_keys"))
    store.trust(key.public_key())
    return store


def test_signed_package_verifies(trust, key) -> None:
    """A package signed by a trusted key passes with its manifest."""
    package = trust.verify(build_package("demo", "1.0", SOURCE, key))
    assert package.manifest.name == "demo" and set(package.files) == set(SOURCE)
    assert trust.counters["verified"] == 1


@pytest.mark.parametrize(
    ("make", "reason"),
    [
        (lambda key: build_package("demo", "1.0", SOURCE, None), "unsigned"),
        (
            lambda key: build_package("demo", "1.0", SOURCE, Ed25519PrivateKey.generate()),
            "unknown_key",
        ),
    ],
)
def test_unsigned_and_unknown_signers_rejected(trust, key, make, reason) -> None:
    """Unsigned packages and packages of untrusted publishers are rejected and counted."""
    with pytest.raises(UntrustedPackage) as info:
        trust.verify(make(key))
    assert info.value.reason == reason
    assert trust.counters[f"rejected_{reason}"] == 1 and trust.counters["rejected"] == 1


def rewrite(data: bytes, change) -> bytes:
    """Copy a zip, letting ``change(name, content)`` alter or drop members."""
    src = zipfile.ZipFile(io.BytesIO(data))
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as z:
        for info in src.infolist():
            content = change(info.filename, src.read(info))
            if content is not None:
                z.writestr(info.filename, content)
    return out.getvalue()


def test_tampered_packages_rejected(trust, key) -> None:
    """A changed file, a changed manifest or an added file is caught."""
    good = build_package("demo", "1.0", SOURCE, key)
    evil = b"import os\nos.system('true')\n"
    cases = {
        "hash_mismatch": rewrite(good, lambda n, c: evil if n == "tests.py" else c),
        "bad_signature": rewrite(
            good, lambda n, c: c.replace(b'"1.0"', b'"1.1"') if n == MANIFEST else c
        ),
        "malformed": good[: len(good) // 2],
    }
    for reason, data in cases.items():
        with pytest.raises(UntrustedPackage) as info:
            trust.verify(data)
        assert info.value.reason == reason, reason
    extra = io.BytesIO(good)
    with zipfile.ZipFile(extra, "a") as z:
        z.writestr("extra.py", evil)
    with pytest.raises(UntrustedPackage, match="extra_file"):
        trust.verify(extra.getvalue())


def test_manifest_rules() -> None:
    """Paths, names and sizes are bounded."""
    with pytest.raises(PackageError, match="not allowed"):
        build_package("demo", "1", {"__init__.py": b"", "../evil.py": b""}, None)
    with pytest.raises(PackageError, match="__init__"):
        build_package("demo", "1", {"x.py": b""}, None)
    with pytest.raises(PackageError, match="name"):
        build_package("Demo!", "1", SOURCE, None)
    with pytest.raises(PackageError, match="too_large"):
        read_package(b"x" * (300 * 1024))


def test_install_and_load(tmp_path, trust, key) -> None:
    """An installed package is verified again at load and imported from memory."""
    store = ModuleStore(str(tmp_path / "modules"), trust)
    store.install(build_package("demo", "1.0", SOURCE, key))
    assert store.installed() == ["demo"]
    assert store.make("demo", "R") == ("demo module", "R")
    assert "dnaagent_ext.demo.tests" in sys.modules
    # Tampered on disk after installation: refused at load time.
    other = ModuleStore(str(tmp_path / "modules"), trust)
    path = other.path("demo")
    with open(path, "rb") as f:
        data = f.read()
    with open(path, "wb") as f:
        f.write(rewrite(data, lambda n, c: c + b"#" if n == "tests.py" else c))
    with pytest.raises(UntrustedPackage, match="hash_mismatch"):
        other.load("demo")


class LoopNode:
    """Two stores joined by a request function that calls the handler directly."""

    def __init__(self) -> None:
        self.handlers: dict = {}

    def register_handler(self, name, fn) -> None:
        self.handlers[name] = fn

    def request(self, to, name, body, timeout=None):
        return defer.maybeDeferred(to.handlers[name], body, None)


def test_fetch_from_peer_verifies(tmp_path, trust, key) -> None:
    """A peer's package arrives in chunks and is kept only when trusted."""
    big = dict(SOURCE, **{"data.py": b"# " + b"x" * 20000 + b"\n"})
    origin = ModuleStore(str(tmp_path / "origin"), trust)
    origin.install(build_package("demo", "1.0", big, key))
    peer = LoopNode()
    serve_packages(peer, origin)
    fetched: list = []
    here = ModuleStore(str(tmp_path / "here"), trust)
    defer.ensureDeferred(fetch_package(LoopNode(), peer, "demo", here)).addBoth(fetched.append)
    assert fetched[0].manifest.name == "demo" and here.installed() == ["demo"]
    strict = TrustStore(str(tmp_path / "nobody"))
    elsewhere = ModuleStore(str(tmp_path / "elsewhere"), strict)
    defer.ensureDeferred(fetch_package(LoopNode(), peer, "demo", elsewhere)).addBoth(fetched.append)
    assert isinstance(fetched[1].value, UntrustedPackage) and elsewhere.installed() == []
    assert strict.counters["rejected_unknown_key"] == 1


def run_cli(*argv: str) -> tuple[int, str, str]:
    """Parse and run one ``module`` command."""
    import argparse

    parser = argparse.ArgumentParser()
    add_module_parser(parser.add_subparsers(dest="command"))
    out, err = io.StringIO(), io.StringIO()
    code = cmd_module(parser.parse_args(argv), out, err)
    return code, out.getvalue(), err.getvalue()


def test_cli_keygen_sign_verify_install(tmp_path) -> None:
    """keygen, sign, trust, verify and install from the command line."""
    src = tmp_path / "src"
    src.mkdir()
    for name, content in SOURCE.items():
        (src / name).write_bytes(content)
    key, pkg, state = tmp_path / "k", tmp_path / "demo.dnapkg", tmp_path / "state"
    assert run_cli("module", "keygen", str(key))[0] == 0
    code, out, _ = run_cli(
        "module",
        "sign",
        str(src),
        "--key",
        str(key),
        "--name",
        "demo",
        "--version",
        "2",
        "-o",
        str(pkg),
    )
    assert code == 0 and "2 file(s)" in out
    code, _, err = run_cli("module", "verify", str(pkg), "--state-dir", str(state))
    assert code == 1 and "unknown_key" in err
    assert run_cli("module", "trust", f"{key}.pub", "--state-dir", str(state))[0] == 0
    code, out, _ = run_cli("module", "verify", str(pkg), "--state-dir", str(state))
    assert code == 0 and out.startswith("ok: demo 2")
    code, out, _ = run_cli("module", "install", str(pkg), "--state-dir", str(state))
    assert code == 0 and (state / "modules" / "demo.dnapkg").exists()
    code, _, err = run_cli("module", "verify", str(tmp_path / "missing"), "--state-dir", str(state))
    assert code == 2
    assert err.strip() == f"dnactl: {tmp_path / 'missing'}: No such file or directory"


def test_dnactl_run_distributed_words() -> None:
    """``dnactl run distributed ping --target X`` maps to DistributedPing with parameters."""
    from dnaagent.control.module_cli import parse_distributed_run

    assert parse_distributed_run(["ping", "--target", "192.0.2.7"]) == (
        ["DistributedPing"],
        {"target": "192.0.2.7"},
    )
    tests, params = parse_distributed_run(["throughput", "--peer", "ab" * 20, "--seconds", "5"])
    assert tests == ["Throughput"] and params == {"peers": "ab" * 20, "seconds": "5"}
    with pytest.raises(SystemExit):
        parse_distributed_run(["ping"])
    with pytest.raises(SystemExit):
        parse_distributed_run(["shell"])


def test_dnactl_argv_rewrite() -> None:
    """dnactl's argv for ``run distributed ping`` becomes the generic run command."""
    from dnaagent.control.module_cli import rewrite_distributed_run

    argv = ["--timeout", "9", "run", "distributed", "ping", "--target", "192.0.2.7", "--json"]
    assert rewrite_distributed_run(argv) == [
        "--timeout",
        "9",
        "run",
        "distributed",
        "--tests",
        "DistributedPing",
        "--param",
        "target=192.0.2.7",
        "--json",
    ]
    same = ["run", "distributed", "--tests", "Relay"]
    assert rewrite_distributed_run(same) == same
    assert rewrite_distributed_run(["status"]) == ["status"]
