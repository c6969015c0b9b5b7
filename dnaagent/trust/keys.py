"""Ed25519 signing keys of module publishers: generate, save, load, identify.

A private key is kept as unencrypted PKCS#8 PEM with mode 0600; a public key
as one line, ``ed25519 HEX``, easy to copy into a trust store. The key ID is
the first 16 hex digits of the SHA-256 of the raw public key.
"""

from __future__ import annotations

import hashlib
import os

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)

from dnaagent.errors import DnaAgentError

PUBLIC_PREFIX = "ed25519"


class KeyError_(DnaAgentError, ValueError):  # noqa: N801 (KeyError is a builtin)
    """A key file is missing, unreadable or not an Ed25519 key."""


def raw_public(key: Ed25519PublicKey) -> bytes:
    """The 32 raw bytes of a public key."""
    return key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def key_id(key: Ed25519PublicKey | bytes) -> str:
    """The short ID of a public key (16 hex digits)."""
    raw = key if isinstance(key, bytes) else raw_public(key)
    return hashlib.sha256(raw).hexdigest()[:16]


def public_line(key: Ed25519PublicKey) -> str:
    """``ed25519 HEX``: the text form of a public key."""
    return f"{PUBLIC_PREFIX} {raw_public(key).hex()}\n"


def generate_key(private_path: str, public_path: str | None = None) -> Ed25519PrivateKey:
    """Create a key pair; write the private key (0600) and the public key line."""
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    fd = os.open(private_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(pem)
    with open(public_path or private_path + ".pub", "w") as f:
        f.write(public_line(key.public_key()))
    return key


def load_private_key(path: str) -> Ed25519PrivateKey:
    """Read a PEM private key; :class:`KeyError_` when it is not Ed25519."""
    try:
        with open(path, "rb") as f:
            key = serialization.load_pem_private_key(f.read(), password=None)
    except (OSError, ValueError, TypeError) as e:
        raise KeyError_(f"cannot read the private key {path}: {e}") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise KeyError_(f"{path} is not an Ed25519 private key")
    return key


def parse_public(text: str) -> Ed25519PublicKey:
    """Read ``ed25519 HEX`` (or 64 bare hex digits); ValueError otherwise."""
    words = text.split()
    if len(words) == 2 and words[0] == PUBLIC_PREFIX:
        words = words[1:]
    if len(words) != 1 or len(words[0]) != 64:
        raise ValueError("a public key is written 'ed25519' and 64 hex digits")
    return Ed25519PublicKey.from_public_bytes(bytes.fromhex(words[0]))


def load_public_key(path: str) -> Ed25519PublicKey:
    """Read a public key file; :class:`KeyError_` when it is not one."""
    try:
        with open(path, encoding="ascii", errors="replace") as f:
            return parse_public(f.read(4096))
    except (OSError, ValueError) as e:
        raise KeyError_(f"cannot read the public key {path}: {e}") from None
