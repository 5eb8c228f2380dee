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
from bisect import bisect_right
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


# The top of a batch tree, from the lowest level with at most this many nodes up,
# is kept with each node's whole path above it: every sample's path shares it.
_TAIL_NODES = 4096
# Every this-many-th digest is kept as its own object, to find a sample's block by bisect.
_FENCE_STRIDE = 16


class BatchTree:
    """All levels of one batch's tree, to answer many paths quickly.

    Lookups are the hot part: a sample's position is found by ``bisect`` over a
    sparse list of every 16th digest, then within its 16 by ``bytes.find`` (at a
    32-byte boundary); its path is sliced from the levels up to the first level
    of at most 4,096 nodes, and the rest, shared by many samples, is a kept tuple.
    """

    def __init__(self, blob: bytes, *, tail_nodes: int = _TAIL_NODES) -> None:
        if not blob or len(blob) % DIGEST_SIZE:
            raise InvalidInput("batch_digests", "must be a non-empty multiple of 32 bytes")
        self._digests = blob
        self.size = len(blob) // DIGEST_SIZE
        levels = [_leaf_level(blob)]
        while len(levels[-1]) > 32:
            levels.append(_parent_level(levels[-1]))
        self._levels = tuple(levels)
        self._fence = [blob[i : i + DIGEST_SIZE] for i in range(0, len(blob), _FENCE_STRIDE * DIGEST_SIZE)]
        cut = next(n for n, level in enumerate(levels) if len(level) // 32 <= max(1, tail_nodes))
        # The levels below ``cut``, each with its length in bytes.
        self._lower = tuple((level, len(level)) for level in levels[:cut])
        # tails[i]: the path hashes above node i of level ``cut``, bottom-up.
        tails: list[tuple[bytes, ...]] = [()]
        for level in reversed(levels[cut:-1]):
            count = len(level) // 32
            tails = [
                (level[(i ^ 1) * 32 : (i ^ 1) * 32 + 32], *tails[i >> 1]) if (i ^ 1) < count else tails[i >> 1]
                for i in range(count)
            ]
        self._tails = tuple(tails)
        self._packed_tails = tuple(b"".join(t) for t in tails)

    @property
    def root(self) -> bytes:
        return self._levels[-1]

    @property
    def cached_bytes(self) -> int:
        """About what the tree holds in memory beyond the digests and levels."""
        return 80 * len(self._fence) + sum(93 + 104 * len(t) for t in self._tails)

    def position(self, digest: bytes) -> int:
        """Index of ``digest`` in the sorted batch, or NotFound."""
        blob = self._digests
        # The block of 16 whose first digest is the last one <= digest.
        block = bisect_right(self._fence, digest) - 1
        if block >= 0 and len(digest) == DIGEST_SIZE:
            start = block * _FENCE_STRIDE * DIGEST_SIZE
            end = start + _FENCE_STRIDE * DIGEST_SIZE
            found = blob.find(digest, start, end)
            # A match across two digests is not one: look on from the next byte.
            while found >= 0 and found % DIGEST_SIZE:
                found = blob.find(digest, found + 1, end)
            if found >= 0:
                return found // DIGEST_SIZE
        raise NotFound(f"digest {digest.hex()} is not in this batch")

    def _lower_path(self, index: int) -> tuple[list[bytes], int]:
        """The path of leaf ``index`` below the kept top, and the node of the top it reaches."""
        if not 0 <= index < self.size:
            raise InvalidInput("leaf_index", f"{index} is outside a batch of {self.size}")
        out = []
        node = index
        for level, length in self._lower:
            sibling = (node ^ 1) << 5
            if sibling < length:
                out.append(level[sibling : sibling + 32])
            node >>= 1
        return out, node

    def hashes(self, index: int) -> list[bytes]:
        """The audit path of leaf ``index`` (0 <= index < size), bottom-up."""
        out, node = self._lower_path(index)
        out.extend(self._tails[node])
        return out

    def packed_hashes(self, index: int) -> bytes:
        """``hashes(index)`` concatenated, 32 bytes each: one object for the wire."""
        out, node = self._lower_path(index)
        out.append(self._packed_tails[node])
        return b"".join(out)

    def path(self, digest: bytes) -> BatchPath:
        index = self.position(digest)
        return BatchPath(leaf_index=index, batch_size=self.size, hashes=tuple(self.hashes(index)))


def verify_batch_path(digest: bytes, path: BatchPath, root: bytes) -> None:
    """Raise VerificationError unless ``path`` proves ``digest`` is in the batch ``root``."""
    if not isinstance(digest, bytes) or len(digest) != DIGEST_SIZE:
        raise VerificationError("sample digest must be 32 bytes")
    verify_inclusion(leaf_hash(digest), path.leaf_index, path.batch_size, path.hashes, root)
