"""Consistency proofs between two sizes of one log: RFC 9162 §2.1.4.

A consistency proof shows that the tree of ``old_size`` leaves is a prefix of
the tree of ``new_size`` leaves, i.e. the log only appended in between.
"""

from __future__ import annotations

import hmac
from collections.abc import Sequence

from anchorlog.ledger.errors import InvalidInput, VerificationError
from anchorlog.ledger.merkle.hashing import HASH_SIZE, node_hash
from anchorlog.ledger.merkle.inclusion import check_proof_shape, inclusion_proof_length
from anchorlog.ledger.merkle.ranges import ProofPlan, check_size, split_point

__all__ = ["consistency_plan", "consistency_proof_length", "verify_consistency"]


def consistency_plan(old_size: int, new_size: int) -> ProofPlan:
    """The leaf ranges of PROOF(old_size, D[new_size]) = SUBPROOF(m, D[n], true).

    Empty when the sizes are equal or ``old_size`` is 0: there is nothing to prove.
    """
    check_size("old_size", old_size)
    check_size("new_size", new_size)
    if old_size > new_size:
        raise InvalidInput("old_size", f"{old_size} is above new_size {new_size}")
    if old_size == 0:
        return ProofPlan(())
    # RFC 9162 §2.1.4.1 walked from the root down. `complete` is the RFC's
    # flag b: true while we have only gone left, so that an old tree filling
    # the current subtree is the whole old tree, whose root the verifier has.
    found: list[tuple[int, int]] = []
    lo, hi, m, complete = 0, new_size, old_size, True
    while m != hi - lo:
        k = split_point(hi - lo)
        if m <= k:
            found.append((lo + k, hi))
            hi = lo + k
        else:
            found.append((lo, lo + k))
            lo += k
            m -= k
            complete = False
    if not complete:
        found.append((lo, hi))  # the subtree where the old tree ends
    found.reverse()  # the recursion emits its deepest part first
    return ProofPlan(tuple(found))


def consistency_proof_length(old_size: int, new_size: int) -> int:
    """How many hashes the proof between sizes ``0 < old_size < new_size`` has.

    The proof is the tail of the audit path of leaf ``old_size - 1`` in the new
    tree, starting at the largest perfect subtree that ends at ``old_size``,
    plus that subtree's hash unless it is the whole old tree.
    """
    shift = (old_size & -old_size).bit_length() - 1  # height of that subtree
    seed = 0 if old_size == 1 << shift else 1
    return seed + inclusion_proof_length(old_size - 1, new_size) - shift


def verify_consistency(
    old_size: int, new_size: int, old_root: bytes, new_root: bytes, proof: Sequence[bytes]
) -> None:
    """Raise ``VerificationError`` unless ``proof`` shows the old tree is a prefix of the new.

    The RFC algorithm covers ``0 < old_size < new_size``. Around it, as the
    published transparency-dev probes want:

    * equal sizes need an empty proof and equal roots (compared as given: two
      equal claims about one tree are trivially consistent);
    * ``old_size`` 0 is refused, even with ``new_size`` 0: every tree extends
      the empty one, so such a "proof" checks nothing, and a caller asking for
      one has a bug. Callers without a trusted old tree skip the check.
    """
    if not isinstance(old_size, int) or not isinstance(new_size, int):
        raise VerificationError("tree sizes must be integers")
    if old_size < 0 or new_size < 0:
        raise VerificationError(f"tree sizes {old_size} and {new_size} must not be negative")
    if old_size > new_size:
        raise VerificationError(f"old size {old_size} is above new size {new_size}")
    if old_size == 0:
        raise VerificationError("consistency with the empty tree (old size 0) proves nothing")
    if old_size == new_size:
        if proof:
            raise VerificationError(
                f"sizes are equal ({old_size}) but the proof has {len(proof)} hashes, expected 0"
            )
        if not (
            isinstance(old_root, bytes)
            and isinstance(new_root, bytes)
            and hmac.compare_digest(old_root, new_root)
        ):
            raise VerificationError(f"two different roots for the same tree size {old_size}")
        return
    for name, root in (("old", old_root), ("new", new_root)):
        if not isinstance(root, bytes) or len(root) != HASH_SIZE:
            raise VerificationError(f"{name} root is not a {HASH_SIZE}-byte hash")
    what = f"consistency proof from size {old_size} to {new_size}"
    check_proof_shape(proof, consistency_proof_length(old_size, new_size), what)

    # RFC 9162 §2.1.4.2, step by step. One pass rebuilds both roots: fr uses
    # only hashes left of the old tree's edge, sr uses all of them.
    if not proof:
        raise VerificationError(f"{what} is empty")
    path = list(proof)
    if old_size & (old_size - 1) == 0:
        path.insert(0, old_root)  # the old tree is itself a subtree of the new one
    fn, sn = old_size - 1, new_size - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            raise VerificationError(f"{what} is too long")
        if fn & 1 or fn == sn:
            fr = node_hash(c, fr)
            sr = node_hash(c, sr)
            while not fn & 1 and fn != 0:
                fn >>= 1
                sn >>= 1
        else:
            sr = node_hash(sr, c)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise VerificationError(f"{what} is too short")
    if not hmac.compare_digest(fr, old_root):
        raise VerificationError(f"{what} does not lead to the old root")
    if not hmac.compare_digest(sr, new_root):
        raise VerificationError(f"{what} does not lead to the new root")
