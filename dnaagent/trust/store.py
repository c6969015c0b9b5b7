"""The trust store: the publishers' keys this agent trusts, and package verification.

The store is a directory (``STATE_DIR/trusted_keys`` by default) of public
key files, one key per file, each ``ed25519 HEX``. :meth:`TrustStore.verify`
accepts a package only when it is well formed, its files match the manifest
and the manifest is signed by one of these keys. Every rejection raises
:class:`UntrustedPackage`, is logged and is counted per reason.
"""

from __future__ import annotations

import os
from collections import Counter

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from twisted.logger import Logger

from dnaagent.errors import DnaAgentError
from dnaagent.trust.keys import KeyError_, key_id, load_public_key, public_line
from dnaagent.trust.package import Package, PackageError, read_package

MAX_KEYS = 256


class UntrustedPackage(DnaAgentError, PermissionError):
    """A package was rejected; ``reason`` says why in one word.

    Reasons: those of :class:`~dnaagent.trust.package.PackageError`, plus
    ``unsigned``, ``unknown_key`` and ``bad_signature``.
    """

    def __init__(self, reason: str, text: str) -> None:
        super().__init__(f"package rejected ({reason}): {text}")
        self.reason = reason
        self.text = text


class TrustStore:
    """Trusted publisher keys, read from a directory; see the module docstring."""

    log = Logger()

    def __init__(self, directory: str) -> None:
        self.directory = directory
        self.keys: dict[str, Ed25519PublicKey] = {}
        self.counters: Counter[str] = Counter()
        self.reload()

    def reload(self) -> None:
        """Read the key files again (bad files are logged and skipped)."""
        self.keys = {}
        try:
            names = sorted(os.listdir(self.directory))
        except FileNotFoundError:
            return
        for name in names[:MAX_KEYS]:
            path = os.path.join(self.directory, name)
            if name.startswith(".") or not os.path.isfile(path):
                continue
            try:
                key = load_public_key(path)
            except KeyError_:
                self.log.failure("ignoring {path}: not a public key", path=path)
                continue
            self.keys[key_id(key)] = key

    def trust(self, key: Ed25519PublicKey, label: str | None = None) -> str:
        """Add ``key`` to the store directory; returns its key ID."""
        kid = key_id(key)
        os.makedirs(self.directory, mode=0o750, exist_ok=True)
        path = os.path.join(self.directory, f"{label or kid}.pub")
        with open(path, "w") as f:
            f.write(public_line(key))
        self.keys[kid] = key
        return kid

    def reject(self, reason: str, text: str) -> UntrustedPackage:
        """Count, log and return a rejection (the caller raises it)."""
        self.counters["rejected"] += 1
        self.counters[f"rejected_{reason}"] += 1
        self.log.warn("rejected a module package: {text} ({reason})", text=text, reason=reason)
        return UntrustedPackage(reason, text)

    def verify(self, data: bytes) -> Package:
        """The package if intact and signed by a trusted key, else :class:`UntrustedPackage`."""
        try:
            package = read_package(data)
        except PackageError as e:
            raise self.reject(e.reason, e.text) from None
        name = f"{package.manifest.name} {package.manifest.version}"
        if package.signature is None or package.key_id is None:
            raise self.reject("unsigned", f"{name} is not signed")
        key = self.keys.get(package.key_id)
        if key is None:
            raise self.reject("unknown_key", f"{name} is signed by untrusted key {package.key_id}")
        try:
            key.verify(package.signature, package.manifest_bytes)
        except InvalidSignature:
            raise self.reject("bad_signature", f"the signature of {name} is not valid") from None
        self.counters["verified"] += 1
        return package
