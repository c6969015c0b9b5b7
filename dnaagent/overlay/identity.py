"""A node's identity: its Ed25519 key pair and the 160-bit node ID derived from it.

The key is generated at the first start and kept in the state directory
(:func:`load_or_create_identity`, file mode 0600). The node ID is
:func:`dnaagent.wire.node_id_for_key` of the public key, so every peer can check
that a sender owns the ID it claims.
"""

from __future__ import annotations

import os
import random
import stat

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from twisted.logger import Logger

from dnaagent.errors import DnaAgentError
from dnaagent.wire import Ed25519Signer, NullSigner, PairKeys, Signer, node_id_for_key

log = Logger()


class IdentityError(DnaAgentError, OSError):
    """The identity key file could not be read, parsed or written."""


class Identity:
    """A node's key pair, node ID, the signer for its envelopes and its MAC keys.

    ``pair_keys`` (:class:`~dnaagent.wire.PairKeys`) derives the key this node shares
    with each peer from the same Ed25519 key pair: nothing else is stored.
    """

    __slots__ = ("public_key", "node_id", "signer", "pair_keys", "_private_key")

    def __init__(
        self, public_key: bytes, signer: Signer, private_key: Ed25519PrivateKey | None = None
    ) -> None:
        self.public_key = public_key
        self.node_id = node_id_for_key(public_key)
        self.signer = signer
        self.pair_keys = PairKeys(self.node_id, public_key, private_key)
        self._private_key = private_key

    @classmethod
    def from_private_key(cls, private_key: Ed25519PrivateKey) -> Identity:
        """Return the signing identity of an Ed25519 private key."""
        public = private_key.public_key().public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw
        )
        return cls(public, Ed25519Signer(private_key), private_key)

    @classmethod
    def generate(cls) -> Identity:
        """Return a new signing identity with a fresh key pair."""
        return cls.from_private_key(Ed25519PrivateKey.generate())

    @classmethod
    def unsigned(cls, rng: random.Random | None = None) -> Identity:
        """Return an identity that does not sign (simulations and benchmarks).

        Its public key is 32 random bytes (drawn from ``rng`` for reproducible
        runs); peers must decode with ``verify=False``.
        """
        rng = rng or random.Random()
        return cls(rng.randbytes(32), NullSigner())

    def private_bytes(self) -> bytes:
        """Return the private key as unencrypted PKCS#8 PEM."""
        if self._private_key is None:
            raise IdentityError("this identity has no private key")
        return self._private_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )

    def __repr__(self) -> str:
        return f"Identity({self.node_id.hex()})"


def load_or_create_identity(path: str | os.PathLike[str]) -> Identity:
    """Return the identity kept in ``path``, creating it on the first start.

    A new key is written atomically with mode 0600. An existing file readable
    by group or others is tightened to 0600 with a warning. Raises
    :class:`IdentityError` when the file cannot be read or is not an Ed25519
    private key.
    """
    path = os.fspath(path)
    try:
        with open(path, "rb") as f:
            data = f.read()
            mode = os.fstat(f.fileno()).st_mode
    except FileNotFoundError:
        return _create(path)
    except OSError as e:
        raise IdentityError(f"cannot read the node key {path}: {e.strerror}") from None
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        log.warn("node key {path} was readable by others; setting mode 0600", path=path)
        try:
            os.chmod(path, 0o600)
        except OSError:
            log.failure("cannot set the mode of {path}", path=path)
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError):
        raise IdentityError(f"{path} is not a PEM private key") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise IdentityError(f"{path} holds a key that is not Ed25519")
    return Identity.from_private_key(key)


def _create(path: str) -> Identity:
    identity = Identity.generate()
    directory = os.path.dirname(path) or "."
    tmp = os.path.join(directory, f".{os.path.basename(path)}.{os.getpid()}.tmp")
    try:
        os.makedirs(directory, mode=0o700, exist_ok=True)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            os.write(fd, identity.private_bytes())
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except OSError as e:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        except OSError:
            log.failure("cannot remove {tmp}", tmp=tmp)
        raise IdentityError(f"cannot write the node key {path}: {e.strerror}") from None
    log.info("created node identity {node_id} in {path}", node_id=identity.node_id.hex(), path=path)
    return identity
