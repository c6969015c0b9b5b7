"""``dnactl module keygen|sign|verify|install``: publishing and trusting test modules.

These commands work on files only (no running agent is needed):

* ``keygen KEYFILE``: a new Ed25519 key pair (``KEYFILE`` 0600 and ``KEYFILE.pub``);
* ``sign --key KEYFILE --name N --version V DIR -o PKG``: package and sign the
  Python files of ``DIR``;
* ``verify PKG [--trust-dir D]``: check a package against a trust store;
* ``install PKG [--state-dir S]``: verify and keep it where the agent loads
  modules from (``S/modules``), trusting the keys of ``S/trusted_keys``;
* ``trust PUBFILE [--state-dir S]``: add a publisher's public key.

:func:`add_module_parser` adds them to dnactl's parser and
:func:`cmd_module` runs them; both are plain functions so that dnactl hooks
them in with two lines.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import TextIO

from dnaagent.trust.keys import (
    KeyError_,
    generate_key,
    key_id,
    load_private_key,
    load_public_key,
)
from dnaagent.trust.loader import ModuleStore
from dnaagent.trust.package import MAX_PACKAGE, PackageError, build_package, collect_sources
from dnaagent.trust.store import TrustStore, UntrustedPackage

DEFAULT_STATE_DIR = "/var/lib/dnaagent"
TRUST_DIR = "trusted_keys"
MODULES_DIR = "modules"


def add_module_parser(sub: argparse._SubParsersAction, parents: list | None = None) -> None:  # type: ignore[type-arg]
    """Add ``module`` and its actions to dnactl's subcommands."""
    p = sub.add_parser(
        "module", parents=parents or [], help="sign, verify, install and trust test modules"
    )
    actions = p.add_subparsers(dest="module_command", metavar="ACTION", required=True)
    q = actions.add_parser("keygen", help="create an Ed25519 signing key pair")
    q.add_argument("key", help="private key file to create (the public key goes to KEY.pub)")
    q = actions.add_parser("sign", help="package and sign the Python files of a directory")
    q.add_argument("directory")
    q.add_argument("--key", required=True, help="private key file")
    q.add_argument("--name", required=True, help="module name ([a-z][a-z0-9_]*)")
    q.add_argument("--version", dest="module_version", required=True, help="module version")
    q.add_argument("-o", "--output", required=True, help="package file to write")
    q = actions.add_parser("verify", help="check a package's files and signature")
    q.add_argument("package")
    q.add_argument("--trust-dir", help="directory of trusted keys (default STATE/trusted_keys)")
    q.add_argument("--state-dir", default=argparse.SUPPRESS, help="the agent's state directory")
    q = actions.add_parser("install", help="verify a package and keep it for the agent")
    q.add_argument("package")
    q.add_argument("--state-dir", default=argparse.SUPPRESS, help="the agent's state directory")
    q = actions.add_parser("trust", help="trust a publisher's public key")
    q.add_argument("public_key")
    q.add_argument("--state-dir", default=argparse.SUPPRESS, help="the agent's state directory")


def _read(path: str) -> bytes:
    with open(path, "rb") as f:
        return f.read(MAX_PACKAGE + 1)


def cmd_module(
    args: argparse.Namespace,
    out: TextIO = sys.stdout,
    err: TextIO = sys.stderr,
    default_state_dir: str = DEFAULT_STATE_DIR,
) -> int:
    """Run one ``dnactl module`` action; returns the exit status (0 ok, 1 rejected, 2 usage).

    The state directory is ``--state-dir`` (before or after ``module``), else
    ``default_state_dir`` (dnactl passes the configured ``[agent] state_dir``).
    """
    action = args.module_command
    try:
        if action == "keygen":
            key = generate_key(args.key)
            print(
                f"key {key_id(key.public_key())}: private {args.key}, public {args.key}.pub",
                file=out,
            )
            return 0
        if action == "sign":
            key = load_private_key(args.key)
            files = collect_sources(args.directory)
            if not files:
                print(f"dnactl: no .py files in {args.directory}", file=err)
                return 2
            data = build_package(args.name, args.module_version, files, key)
            with open(args.output, "wb") as f:
                f.write(data)
            print(
                f"signed {args.name} {args.module_version}: {len(files)} file(s) -> {args.output}",
                file=out,
            )
            return 0
        state = os.path.abspath(getattr(args, "state_dir", None) or default_state_dir)
        trust = TrustStore(getattr(args, "trust_dir", None) or os.path.join(state, TRUST_DIR))
        if action == "trust":
            kid = trust.trust(load_public_key(args.public_key))
            print(f"trusted key {kid} in {trust.directory}", file=out)
            return 0
        data = _read(args.package)
        if action == "verify":
            package = trust.verify(data)
            m = package.manifest
            print(
                f"ok: {m.name} {m.version}, {len(m.files)} file(s), signed by {package.key_id}",
                file=out,
            )
            return 0
        if action == "install":
            store = ModuleStore(os.path.join(state, MODULES_DIR), trust)
            package = store.install(data)
            m = package.manifest
            print(f"installed {m.name} {m.version} in {store.path(m.name)}", file=out)
            return 0
    except UntrustedPackage as e:
        print(f"dnactl: {e}", file=err)
        return 1
    except OSError as e:
        where = f"{e.filename}: " if e.filename else ""
        print(f"dnactl: {where}{e.strerror or e}", file=err)
        return 2
    except (KeyError_, PackageError) as e:
        print(f"dnactl: {e}", file=err)
        return 2
    print(f"dnactl: unknown module action {action!r}", file=err)
    return 2


#: ``dnactl run distributed WORD`` short names of the distributed tests.
DISTRIBUTED_TESTS = {
    "ping": "DistributedPing",
    "dns": "DNSProxy",
    "dnsproxy": "DNSProxy",
    "relay": "Relay",
    "portcheck": "PortCheck",
    "ports": "PortCheck",
    "throughput": "Throughput",
}


def parse_distributed_run(
    words: list[str], rest: list[str] | None = None
) -> tuple[list[str], dict[str, str]]:
    """``ping --target X`` or ``throughput --peer ID --seconds 5`` into tests and params.

    For ``dnactl run distributed WORD [options]``; raises ``SystemExit`` (via
    argparse) with a usage message on bad input. With a ``rest`` list, options
    this parser does not know (``--json``, ``--api``) are appended to it
    instead of being refused.
    """
    parser = argparse.ArgumentParser(
        prog="dnactl run distributed",
        description="run one distributed test and print its diagnosis",
    )
    parser.add_argument("test", choices=sorted(DISTRIBUTED_TESTS), help="which test")
    parser.add_argument("--target", help="ping: host to diagnose (address or name)")
    parser.add_argument(
        "--peer",
        action="append",
        default=[],
        metavar="ID|ADDRESS",
        help="a partner agent (node ID or address; repeat for several; default: random)",
    )
    parser.add_argument("--count", type=int, help="ping: how many peers to ask")
    parser.add_argument("--ports", metavar="tcp/P,udp/P", help="portcheck: ports to check")
    parser.add_argument("--name", help="dns: name to look up")
    parser.add_argument("--seconds", type=int, help="throughput: duration (1-30 s)")
    parser.add_argument("--rate", type=float, metavar="MBIT", help="throughput: rate ceiling")
    if rest is None:
        args = parser.parse_args(words)
    else:
        args, unknown = parser.parse_known_args(words)
        rest.extend(unknown)
    params: dict[str, str] = {}
    for key, value in (
        ("target", args.target),
        ("peers", ",".join(args.peer) or None),
        ("count", args.count),
        ("ports", args.ports),
        ("name", args.name),
        ("seconds", args.seconds),
        ("rate_mbit", args.rate),
    ):
        if value is not None:
            params[key] = str(value)
    if args.test == "ping" and "target" not in params:
        parser.error("ping needs --target HOST")
    if args.test == "relay" and "peers" not in params:
        parser.error("relay needs --peer ID|ADDRESS (the agent to reach)")
    return [DISTRIBUTED_TESTS[args.test]], params


def rewrite_distributed_run(argv: list[str]) -> list[str]:
    """``run distributed WORD OPTIONS`` in dnactl's argv as ``run distributed --tests T --param``.

    Other command lines are returned unchanged, so that dnactl's ``main`` can
    call this first: ``argv = rewrite_distributed_run(argv)``.
    """
    for i in range(len(argv) - 2):
        if argv[i] == "run" and argv[i + 1] == "distributed":
            if argv[i + 2] not in DISTRIBUTED_TESTS:
                return argv
            rest: list[str] = []
            tests, params = parse_distributed_run(argv[i + 2 :], rest)
            out = argv[: i + 2] + ["--tests", ",".join(tests)]
            for key, value in params.items():
                out += ["--param", f"{key}={value}"]
            return out + rest
    return argv
