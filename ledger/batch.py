"""Batch roots: one signature over up to millions of samples.

A statement may name, instead of each sample, a single subject
``anchorlog:batch-root`` whose digest is the RFC 6962 Merkle tree hash over the
batch's sample digests, sorted ascending and without duplicates, each digest
being the leaf data (leaf hash = SHA-256(0x00 || digest)). Any one sample is then
proved part of the signed batch by an ordinary RFC 9162 audit path, so any RFC
6962 verifier can check it. Sorting makes the root a function of the set of
samples, and lets the server find a sample's position by binary search.

On the wire and in storage a batch is the digests concatenated (32 bytes each).
"""

from __future__ import annotations

import hashlib
import operator
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from itertools import islice

from anchorlog.ledger.digests import DIGEST_SIZE, check_digest
from anchorlog.ledger.errors import InvalidInput, NotFound, VerificationError
from anchorlog.ledger.merkle import EMPTY_ROOT, leaf_hash, verify_inclusion

BATCH_SUBJECT_NAME = "anchorlog:batch-root"


def sort_digests(digests: Iterable[bytes]) -> list[bytes]:
    """The batch order: ascending, duplicates dropped (a set of samples)."""
    out = sorted({check_digest(d, f"digests[{i}]") for i, d in enumerate(digests)})
    if not out:
        raise InvalidInput("digests", "a batch needs at least one digest")
    return out


def encode_batch_digests(ordered: Sequence[bytes]) -> bytes:
    return b"".join(ordered)


def parse_batch_digests(blob: bytes, *, max_count: int) -> bytes:
    """Check a concatenation of strictly ascending 32-byte digests; return it unchanged.

    The blob is kept as one ``bytes`` (a million digests are 32 MB, not a
    million Python objects).
    """
    field = "batch_digests"
    if not isinstance(blob, bytes):
        raise InvalidInput(field, f"must be bytes, got {type(blob).__name__}")
    if not blob:
        raise InvalidInput(field, "is empty")
    if len(blob) % DIGEST_SIZE:
        raise InvalidInput(field, f"length {len(blob)} is not a multiple of 32")
    count = len(blob) // DIGEST_SIZE
    if count > max_count:
        raise InvalidInput(field, f"{count} digests exceeds the limit of {max_count}")
    digests = [blob[i : i + DIGEST_SIZE] for i in range(0, len(blob), DIGEST_SIZE)]
    # One C-level pass for the common, valid case; find the culprit only if it fails.
    if not all(map(operator.lt, digests, islice(digests, 1, None))):
        for i in range(1, count):
            if digests[i - 1] >= digests[i]:
                problem = "repeats" if digests[i - 1] == digests[i] else "is out of order after"
                raise InvalidInput(f"{field}[{i}]", f"digest {problem} the previous one; sort and dedupe")
    return blob


def _leaf_level(blob: bytes) -> bytes:
    zero = b"\x00"
    return b"".join(
        hashlib.sha256(zero + blob[i : i + DIGEST_SIZE]).digest()
        for i in range(0, len(blob), DIGEST_SIZE)
    )


def _parent_level(level: bytes) -> bytes:
    # RFC 6962 for any size: pair neighbours; an unpaired last node moves up as is.
    one = b"\x01"
    n = len(level) // 32
    parts = [
        hashlib.sha256(one + level[i * 32 : (i + 2) * 32]).digest() for i in range(0, n - 1, 2)
    ]
    if n % 2:
        parts.append(level[(n - 1) * 32 :])
    return b"".join(parts)


def batch_root(ordered: Sequence[bytes] | bytes) -> bytes:
    """The RFC 6962 root over sorted digests (a list, or their concatenation)."""
    blob = ordered if isinstance(ordered, bytes) else encode_batch_digests(ordered)
    if not blob:
        return EMPTY_ROOT
    level = _leaf_level(blob)
    while len(level) > 32:
        level = _parent_level(level)
    return level


@dataclass(frozen=True)
class BatchPath:
    """Audit path of one sample digest within a batch root."""

    leaf_index: int
    batch_size: int
    hashes: tuple[bytes, ...]


class BatchTree:
    """All levels of one batch's tree, to answer many paths quickly."""

    def __init__(self, blob: bytes) -> None:
        if not blob or len(blob) % DIGEST_SIZE:
            raise InvalidInput("batch_digests", "must be a non-empty multiple of 32 bytes")
        self._digests = blob
        self.size = len(blob) // DIGEST_SIZE
        levels = [_leaf_level(blob)]
        while len(levels[-1]) > 32:
            levels.append(_parent_level(levels[-1]))
        self._levels = tuple(levels)

    @property
    def root(self) -> bytes:
        return self._levels[-1]

    def position(self, digest: bytes) -> int:
        """Index of ``digest`` in the sorted batch (binary search), or NotFound."""
        lo, hi = 0, self.size
        blob = self._digests
        while lo < hi:
            mid = (lo + hi) // 2
            if blob[mid * 32 : mid * 32 + 32] < digest:
                lo = mid + 1
            else:
                hi = mid
        if lo < self.size and blob[lo * 32 : lo * 32 + 32] == digest:
            return lo
        raise NotFound(f"digest {digest.hex()} is not in this batch")

    def path(self, digest: bytes) -> BatchPath:
        index = self.position(digest)
        hashes = []
        node = index
        for level in self._levels[:-1]:
            count = len(level) // 32
            sibling = node ^ 1
            if sibling < count:
                hashes.append(level[sibling * 32 : sibling * 32 + 32])
            node //= 2
        return BatchPath(leaf_index=index, batch_size=self.size, hashes=tuple(hashes))


def verify_batch_path(digest: bytes, path: BatchPath, root: bytes) -> None:
    """Raise VerificationError unless ``path`` proves ``digest`` is in the batch ``root``."""
    if not isinstance(digest, bytes) or len(digest) != DIGEST_SIZE:
        raise VerificationError("sample digest must be 32 bytes")
    verify_inclusion(leaf_hash(digest), path.leaf_index, path.batch_size, path.hashes, root)
