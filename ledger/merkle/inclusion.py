"""Inclusion proofs (audit paths): RFC 9162 §2.1.3.

Generation is split in two so a store can answer from a single query: the plan
says which leaf ranges the path is made of (a function of index and size only),
then ``ProofPlan.assemble`` folds the fetched nodes into the path.
"""

from __future__ import annotations

import hmac
from collections.abc import Callable, Sequence

from anchorlog.ledger.errors import InvalidInput, VerificationError
from anchorlog.ledger.merkle.hashing import HASH_SIZE, node_hash
from anchorlog.ledger.merkle.ranges import ProofPlan, check_size, split_point

__all__ = [
    "inclusion_nodes",
    "inclusion_plan",
    "inclusion_proof_length",
    "inclusion_proofs_of_range",
    "root_from_inclusion",
    "verify_inclusion",
]


def inclusion_plan(index: int, size: int) -> ProofPlan:
    """The leaf ranges of PATH(index, D[size]), sibling nearest the leaf first."""
    check_size("index", index)
    check_size("size", size)
    if index >= size:
        raise InvalidInput("index", f"{index} is not below the tree size {size}")
    # RFC 9162 §2.1.3.1 walked from the root down: at each split the proof
    # takes the subtree on the other side of the leaf.
    siblings: list[tuple[int, int]] = []
    lo, hi = 0, size
    while hi - lo > 1:
        k = split_point(hi - lo)
        if index < lo + k:
            siblings.append((lo + k, hi))
            hi = lo + k
        else:
            siblings.append((lo, lo + k))
            lo += k
    siblings.reverse()  # the recursion emits the deepest sibling first
    return ProofPlan(tuple(siblings))


def inclusion_nodes(index: int, size: int) -> tuple[list[tuple[int, int]], int]:
    """PATH(index, D[size]) as tree nodes ``(level, node index)``, leaf side first.

    Every element is the perfect subtree ``[idx << level, (idx + 1) << level)``
    except at most one, at the returned position (-1 if none): there the
    sibling is the partial range ``[idx << level, size)`` on the right edge.
    The same path as ``inclusion_plan``, without walking the tree: below the
    level where the paths to ``index`` and to the last leaf part, the sibling
    at each level is the neighbour ``(index >> level) ^ 1``, and only the
    topmost of those can be partial; above it, a sibling (on the left) exists
    where ``index`` has a 1-bit.
    """
    if type(index) is not int or type(size) is not int or not 0 <= index < size:
        inclusion_plan(index, size)  # raises the precise InvalidInput for a bad value
        index, size = int(index), int(size)  # an int subclass that passed
    inner = (index ^ (size - 1)).bit_length()
    path = [(level, (index >> level) ^ 1) for level in range(inner)]
    edge = inner - 1 if inner > 1 and size & ((1 << (inner - 1)) - 1) else -1
    high, level = index >> inner, inner
    while high:  # zero for most leaves of a tree that is not a power of two
        if high & 1:
            path.append((level, high ^ 1))
        high >>= 1
        level += 1
    return path, edge


def inclusion_proofs_of_range(
    begin: int,
    end: int,
    size: int,
    node: Callable[[int, int], bytes],
    right_edge: Callable[[int], bytes],
) -> list[list[bytes]]:
    """PATH(i, D[size]) for every leaf ``begin <= i < end``, in order, leaf side first.

    The same paths as ``inclusion_plan``, in one walk from the root that goes
    down only into subtrees holding leaves of the range, so the part of the
    path the leaves share is found once (a group's receipts: thousands of
    neighbouring leaves). ``node(level, index)`` gives the hash of the perfect
    subtree ``[index << level, (index + 1) << level)`` and ``right_edge(lo)``
    the hash of the partial range ``[lo, size)``; whatever they raise passes
    through. Each hash is asked for at most once.
    """
    check_size("begin", begin)
    check_size("end", end)
    check_size("size", size)
    if not begin < end <= size:
        raise InvalidInput("end", f"the range [{begin}, {end}) is empty or not within the tree size {size}")
    proofs: list[list[bytes]] = []
    keep = proofs.append

    def subtree(lo: int, hi: int) -> bytes:
        width = hi - lo
        if width & (width - 1):  # not a power of two: only on the right edge
            return right_edge(lo)
        level = width.bit_length() - 1
        return node(level, lo >> level)

    def walk(lo: int, hi: int, above: list[bytes]) -> None:
        # [lo, hi) holds leaves of the range; ``above`` is its own path, nearest first.
        if hi - lo == 1:
            keep(above)
            return
        mid = lo + split_point(hi - lo)
        if begin < mid < end:
            left, right = subtree(lo, mid), subtree(mid, hi)
            walk(lo, mid, [right, *above])
            walk(mid, hi, [left, *above])
        elif end <= mid:
            walk(lo, mid, [subtree(mid, hi), *above])
        else:
            walk(mid, hi, [subtree(lo, mid), *above])

    walk(0, size, [])
    return proofs


def inclusion_proof_length(index: int, size: int) -> int:
    """How many hashes the audit path of leaf ``index`` in a tree of ``size`` has.

    Needs ``0 <= index < size``. Below the level where the paths to ``index``
    and to the last leaf part, every level has a sibling; above it, only the
    levels where the path turns right (1-bits of ``index``) do.
    """
    inner = (index ^ (size - 1)).bit_length()
    return inner + (index >> inner).bit_count()


def check_proof_shape(proof: Sequence[bytes], expected: int, what: str) -> None:
    """``VerificationError`` unless ``proof`` is ``expected`` 32-byte hashes."""
    if len(proof) != expected:
        raise VerificationError(f"{what} has {len(proof)} hashes, expected {expected}")
    for i, p in enumerate(proof):
        if not isinstance(p, bytes) or len(p) != HASH_SIZE:
            got = f"{len(p)} bytes" if isinstance(p, bytes) else type(p).__name__
            raise VerificationError(f"{what} element {i} is not a {HASH_SIZE}-byte hash ({got})")


def root_from_inclusion(leaf_hash: bytes, index: int, size: int, proof: Sequence[bytes]) -> bytes:
    """The root that ``proof`` leads to from leaf ``index``; ``VerificationError`` if malformed.

    Everything here is a claim of whoever sent the proof, so every bad value
    (negative or out-of-range index, wrong lengths) is a failed verification.
    """
    if not isinstance(index, int) or not isinstance(size, int) or index < 0 or size < 0:
        raise VerificationError(f"leaf index {index} and tree size {size} must be integers >= 0")
    if index >= size:
        raise VerificationError(f"leaf index {index} is not below the tree size {size}")
    if not isinstance(leaf_hash, bytes) or len(leaf_hash) != HASH_SIZE:
        raise VerificationError(f"leaf hash is not a {HASH_SIZE}-byte hash")
    what = f"inclusion proof for leaf {index} in a tree of size {size}"
    check_proof_shape(proof, inclusion_proof_length(index, size), what)

    # RFC 9162 §2.1.3.2, step by step. fn walks the leaf's position up the
    # tree, sn the last leaf's; where they meet the path runs along the right
    # edge and levels without a sibling are skipped.
    fn, sn = index, size - 1
    r = leaf_hash
    for p in proof:
        if sn == 0:
            raise VerificationError(f"{what} is too long")
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            while not fn & 1 and fn != 0:
                fn >>= 1
                sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise VerificationError(f"{what} is too short")
    return r


def verify_inclusion(
    leaf_hash: bytes, index: int, size: int, proof: Sequence[bytes], root: bytes
) -> None:
    """Raise ``VerificationError`` unless ``proof`` shows leaf ``index`` is in the tree ``root``."""
    calculated = root_from_inclusion(leaf_hash, index, size, proof)
    if not isinstance(root, bytes) or not hmac.compare_digest(calculated, root):
        raise VerificationError(
            f"inclusion proof for leaf {index} leads to root {calculated.hex()}, "
            f"not to the expected root of the tree of size {size}"
        )
