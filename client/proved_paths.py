"""Many inclusion proofs against one tree, each checked in full, without re-hashing shared paths.

The receipts of one sequencer group are neighbouring leaves of the same tree:
their audit paths share everything above the level where the leaves' paths
meet. :class:`ProvedPaths` remembers, for every node an earlier proof reached on
its way to the root, the node's hash and the rest of that proof (the siblings
above it). A later proof that reaches the same node with the same hash and the
same remaining siblings has then been checked all the way to the root: the path
from a node to the root of a given tree is unique, and the remembered one was
folded and compared with the root. Anything else (another hash, other
siblings, a malformed proof) falls back to the ordinary full check, which
raises the usual error.

Only nodes of proofs that verified against the root are remembered, and the
memory belongs to one (size, root) pair, so a remembered node is always a
node of that tree.
"""

from __future__ import annotations

import hmac
from collections.abc import Sequence

from anchorlog.ledger.merkle.hashing import HASH_SIZE, node_hash
from anchorlog.ledger.merkle.inclusion import inclusion_proof_length, verify_inclusion


class ProvedPaths:
    """Inclusion proofs against the tree of ``size`` leaves with root ``root``."""

    def __init__(self, size: int, root: bytes) -> None:
        self.size = size
        self.root = root
        # Node key (index << 6 | level) -> (its hash, the proof's siblings above it).
        self._proved: dict[int, tuple[bytes, tuple[bytes, ...]]] = {}

    def __len__(self) -> int:
        return len(self._proved)

    def verify(self, leaf_hash: bytes, index: int, proof: Sequence[bytes]) -> None:
        """``VerificationError`` unless ``proof`` shows leaf ``index`` is in this tree."""
        size = self.size
        path = tuple(proof)
        if (
            not isinstance(index, int)
            or not 0 <= index < size
            or len(path) != inclusion_proof_length(index, size)
            or not isinstance(leaf_hash, bytes)
            or len(leaf_hash) != HASH_SIZE
            # Exactly bytes of 32 (map and set run in C: no Python loop per element).
            or not set(map(type, path)) <= {bytes}
            or not set(map(len, path)) <= {HASH_SIZE}
        ):
            verify_inclusion(leaf_hash, index, size, path, self.root)  # raises the precise error
            return
        proved = self._proved
        fresh: list[tuple[int, bytes, int]] = []
        # RFC 9162 §2.1.3.2 as in ledger.merkle.inclusion, with the level tracked so
        # each step knows which node ``r`` claims to be.
        fn, sn, level = index, size - 1, 0
        r = leaf_hash
        for i, p in enumerate(path):
            key = fn << 6 | level
            known = proved.get(key)
            if known is not None:
                if known[0] == r and known[1] == path[i:]:
                    self._remember(fresh, path)
                    return
                break  # not the tree's node or not its path: the full check says why
            fresh.append((key, r, i))
            if fn & 1 or fn == sn:
                r = node_hash(p, r)
                while not fn & 1 and fn != 0:
                    fn >>= 1
                    sn >>= 1
                    level += 1
            else:
                r = node_hash(r, p)
            fn >>= 1
            sn >>= 1
            level += 1
        else:
            if sn == 0 and hmac.compare_digest(r, self.root):
                self._remember(fresh, path)
                return
        verify_inclusion(leaf_hash, index, size, path, self.root)
        # Only reachable if the full check accepts what the shortcut did not (it cannot,
        # short of a SHA-256 collision); the proof is then proved all the same.

    def _remember(self, fresh: list[tuple[int, bytes, int]], path: tuple[bytes, ...]) -> None:
        for key, h, i in fresh:
            self._proved[key] = (h, path[i:])
