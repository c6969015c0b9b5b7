"""Trust: signing keys, signed test-module packages and the trust store (seed 000 §2.4).

An agent runs a test module it did not ship with only when the module comes
as a package signed with Ed25519 by a key in its trust store. A package is a
zip of Python files and a manifest (name, version, SHA-256 of every file);
the signature covers the manifest. See ``docs/distributed-tests.md``.
"""

from dnaagent.trust.keys import KeyError_, generate_key, key_id, load_private_key, load_public_key
from dnaagent.trust.package import (
    Manifest,
    PackageError,
    build_package,
    read_package,
)
from dnaagent.trust.store import TrustStore, UntrustedPackage

__all__ = [
    "KeyError_",
    "Manifest",
    "PackageError",
    "TrustStore",
    "UntrustedPackage",
    "build_package",
    "generate_key",
    "key_id",
    "load_private_key",
    "load_public_key",
    "read_package",
]
