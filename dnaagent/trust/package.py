"""Signed test-module packages: a zip of Python files, a manifest and a signature.

Layout of a package (a zip file)::

    MANIFEST.json     {"format": 1, "name", "version", "files": {path: sha256-hex}}
    SIGNATURE.json    {"key_id", "signature": hex of Ed25519 over MANIFEST.json's bytes}
    <path>            every file the manifest lists (Python sources), nothing else

:func:`build_package` makes one; :func:`read_package` parses one and checks
its shape and the hashes (not the signature: that is the trust store's
job). Every input is bounded: package size, file count, file size, path
syntax (no absolute paths, no ``..``, only ``.py`` files).
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import zipfile
from dataclasses import dataclass
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from dnaagent.errors import DnaAgentError
from dnaagent.trust.keys import key_id

MANIFEST = "MANIFEST.json"
SIGNATURE = "SIGNATURE.json"
MAX_PACKAGE = 256 * 1024
MAX_FILES = 64
MAX_FILE = 128 * 1024
_NAME = re.compile(r"^[a-z][a-z0-9_]{0,31}$")
_VERSION = re.compile(r"^[0-9A-Za-z.+-]{1,32}$")
_PATH = re.compile(r"^(?:[A-Za-z_][A-Za-z0-9_]*/){0,3}[A-Za-z_][A-Za-z0-9_]*\.py$")


class PackageError(DnaAgentError, ValueError):
    """A package is malformed or its files do not match its manifest.

    ``reason`` is a short code: ``malformed``, ``too_large``, ``bad_manifest``,
    ``hash_mismatch``, ``extra_file``, ``missing_file``, ``unsigned``.
    """

    def __init__(self, reason: str, text: str) -> None:
        super().__init__(f"{text} ({reason})")
        self.reason = reason
        self.text = text


@dataclass(frozen=True)
class Manifest:
    """What a package says it holds."""

    name: str
    version: str
    files: dict[str, str]

    def to_bytes(self) -> bytes:
        """The canonical JSON the signature covers."""
        data = {"format": 1, "name": self.name, "version": self.version, "files": self.files}
        return json.dumps(data, sort_keys=True, separators=(",", ":")).encode()

    @classmethod
    def from_bytes(cls, data: bytes) -> Manifest:
        """Parse and check a manifest; :class:`PackageError` when it is wrong."""
        try:
            obj: Any = json.loads(data)
        except ValueError:
            raise PackageError("bad_manifest", "the manifest is not JSON") from None
        if not isinstance(obj, dict) or obj.get("format") != 1:
            raise PackageError("bad_manifest", "the manifest is not a format-1 object")
        name, version, files = obj.get("name"), obj.get("version"), obj.get("files")
        if not isinstance(name, str) or not _NAME.match(name):
            raise PackageError("bad_manifest", "the module name must match [a-z][a-z0-9_]{0,31}")
        if not isinstance(version, str) or not _VERSION.match(version):
            raise PackageError("bad_manifest", "the version is missing or malformed")
        if not isinstance(files, dict) or not 0 < len(files) <= MAX_FILES:
            raise PackageError("bad_manifest", f"the manifest must list 1 to {MAX_FILES} files")
        for path, digest in files.items():
            if not isinstance(path, str) or not _PATH.match(path):
                raise PackageError("bad_manifest", f"file name {path!r} is not allowed")
            if not isinstance(digest, str) or not re.fullmatch(r"[0-9a-f]{64}", digest):
                raise PackageError("bad_manifest", f"bad SHA-256 for {path}")
        if "__init__.py" not in files:
            raise PackageError("bad_manifest", "a module package needs an __init__.py")
        return cls(name, version, dict(files))


@dataclass(frozen=True)
class Package:
    """A parsed package: manifest, its bytes, the signature and the file contents."""

    manifest: Manifest
    manifest_bytes: bytes
    key_id: str | None
    signature: bytes | None
    files: dict[str, bytes]


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def collect_sources(directory: str) -> dict[str, bytes]:
    """The ``.py`` files under ``directory`` (relative paths), bounded."""
    files: dict[str, bytes] = {}
    for root, dirs, names in os.walk(directory):
        dirs[:] = sorted(d for d in dirs if not d.startswith((".", "__pycache__")))
        for name in sorted(names):
            if not name.endswith(".py"):
                continue
            full = os.path.join(root, name)
            rel = os.path.relpath(full, directory).replace(os.sep, "/")
            with open(full, "rb") as f:
                files[rel] = f.read(MAX_FILE + 1)
    return files


def build_package(
    name: str, version: str, files: dict[str, bytes], key: Ed25519PrivateKey | None
) -> bytes:
    """A package of ``files`` signed with ``key`` (unsigned when None, for tests)."""
    manifest = Manifest(name, version, {p: _sha256(d) for p, d in sorted(files.items())})
    data = manifest.to_bytes()
    Manifest.from_bytes(data)  # the same checks as a reader
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr(MANIFEST, data)
        if key is not None:
            sig = {"key_id": key_id(key.public_key()), "signature": key.sign(data).hex()}
            z.writestr(SIGNATURE, json.dumps(sig, sort_keys=True))
        for path, content in sorted(files.items()):
            z.writestr(path, content)
    return out.getvalue()


def read_package(data: bytes) -> Package:
    """Parse a package and check its files against the manifest (not the signature)."""
    if len(data) > MAX_PACKAGE:
        raise PackageError("too_large", f"the package has {len(data)} bytes (max {MAX_PACKAGE})")
    try:
        z = zipfile.ZipFile(io.BytesIO(data))
        infos = z.infolist()
    except (zipfile.BadZipFile, ValueError, OSError):
        raise PackageError("malformed", "the package is not a zip file") from None
    if len(infos) > MAX_FILES + 2:
        raise PackageError("too_large", "the package holds too many files")
    names = [i.filename for i in infos]
    if len(set(names)) != len(names):
        raise PackageError("malformed", "the package holds a file twice")
    if any(i.file_size > MAX_FILE for i in infos):
        raise PackageError("too_large", f"a file is larger than {MAX_FILE} bytes")
    try:
        contents = {i.filename: z.read(i) for i in infos}
    except (zipfile.BadZipFile, ValueError, OSError, EOFError):
        raise PackageError("malformed", "the package cannot be read") from None
    if MANIFEST not in contents:
        raise PackageError("bad_manifest", f"the package has no {MANIFEST}")
    manifest_bytes = contents.pop(MANIFEST)
    manifest = Manifest.from_bytes(manifest_bytes)
    key: str | None = None
    signature: bytes | None = None
    if SIGNATURE in contents:
        try:
            sig = json.loads(contents.pop(SIGNATURE))
            key = str(sig["key_id"])
            signature = bytes.fromhex(str(sig["signature"]))
        except (ValueError, KeyError, TypeError):
            raise PackageError("malformed", f"{SIGNATURE} is malformed") from None
    extra = sorted(set(contents) - set(manifest.files))
    if extra:
        raise PackageError("extra_file", f"files not in the manifest: {', '.join(extra)}")
    missing = sorted(set(manifest.files) - set(contents))
    if missing:
        raise PackageError("missing_file", f"files missing: {', '.join(missing)}")
    for path, digest in manifest.files.items():
        if _sha256(contents[path]) != digest:
            raise PackageError("hash_mismatch", f"{path} does not match its SHA-256")
    return Package(manifest, manifest_bytes, key, signature, contents)
