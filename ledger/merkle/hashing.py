"""RFC 6962 §2.1 / RFC 9162 §2.1.1 hashing: domain-separated SHA-256.

Leaves and interior nodes are hashed with different one-byte prefixes, so the
hash of a leaf can never be presented as the hash of an interior node (the
second-preimage attack on unprefixed Merkle trees).
"""

from __future__ import annotations

import hashlib

from anchorlog.ledger.errors import InvalidInput

__all__ = [
    "EMPTY_ROOT",
    "HASH_SIZE",
    "LEAF_PREFIX",
    "NODE_PREFIX",
    "leaf_hash",
    "node_hash",
    "require_hash",
]

HASH_SIZE = 32
LEAF_PREFIX = b"\x00"
NODE_PREFIX = b"\x01"

# MTH({}) = SHA-256() : the empty tree's root is the hash of nothing, unprefixed.
EMPTY_ROOT = hashlib.sha256(b"").digest()


def leaf_hash(data: bytes) -> bytes:
    """MTH({d}) = SHA-256(0x00 || d)."""
    h = hashlib.sha256(LEAF_PREFIX)
    h.update(data)  # update() rather than concatenation: no copy of large data
    return h.digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """SHA-256(0x01 || left || right).

    Lengths are not checked here: the published RFC 6962 hasher vectors hash
    arbitrary byte strings, and callers that take hashes from outside check them.
    """
    h = hashlib.sha256(NODE_PREFIX)
    h.update(left)
    h.update(right)
    return h.digest()


def require_hash(field: str, value: object) -> bytes:
    """``value`` if it is a 32-byte ``bytes``, else ``InvalidInput`` naming ``field``."""
    if not isinstance(value, bytes):
        raise InvalidInput(field, f"must be bytes, got {type(value).__name__}")
    if len(value) != HASH_SIZE:
        raise InvalidInput(field, f"must be a {HASH_SIZE}-byte hash, got {len(value)} bytes")
    return value
