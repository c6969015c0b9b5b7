"""Tests of node identities and their key file (dnaagent.overlay.identity)."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from dnaagent import wire
from dnaagent.overlay.identity import Identity, IdentityError, load_or_create_identity


def test_created_once_then_reloaded(tmp_path: Path) -> None:
    """The first start creates a 0600 key file; later starts load the same identity."""
    path = tmp_path / "state" / "node.key"
    first = load_or_create_identity(path)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert path.read_bytes().startswith(b"-----BEGIN PRIVATE KEY-----")
    second = load_or_create_identity(path)
    assert second.node_id == first.node_id
    assert second.public_key == first.public_key
    assert [p.name for p in path.parent.iterdir()] == ["node.key"]


def test_loose_permissions_are_tightened(tmp_path: Path) -> None:
    """A key file readable by others is set back to 0600."""
    path = tmp_path / "node.key"
    ident = load_or_create_identity(path)
    os.chmod(path, 0o644)
    assert load_or_create_identity(path).node_id == ident.node_id
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600


def test_garbage_and_wrong_key_type(tmp_path: Path) -> None:
    """A file that is not an Ed25519 PEM key is a clear IdentityError."""
    path = tmp_path / "node.key"
    path.write_bytes(b"not a key")
    with pytest.raises(IdentityError, match="not a PEM private key"):
        load_or_create_identity(path)
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    other = ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    path.write_bytes(other)
    with pytest.raises(IdentityError, match="not Ed25519"):
        load_or_create_identity(path)


def test_unusable_path(tmp_path: Path) -> None:
    """A key path that cannot be used is an IdentityError naming the node key."""
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(IdentityError, match="node key"):
        load_or_create_identity(blocker / "node.key")


def test_signatures_verify_and_unsigned_identity() -> None:
    """A generated identity signs verifiably; an unsigned one does not sign at all."""
    ident = Identity.generate()
    data = wire.encode(wire.PING, 1, ident.node_id, ident.public_key, 0, None, ident.signer)
    assert wire.decode(data).sender_id == ident.node_id
    fake = Identity.unsigned()
    assert fake.signer.sign(b"x") == b"" and not fake.signer.signs
    with pytest.raises(IdentityError):
        fake.private_bytes()
