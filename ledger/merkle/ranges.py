"""Compact ranges: perfect subtrees, their IDs, folding and appending.

Any run of leaves ``[begin, end)`` is covered by a short list of maximal
perfect subtrees (at most two per tree level). With ``begin = 0`` that list is
the tree's *frontier*: one subtree per 1-bit of the size, largest first. The
frontier is all an appender needs to keep, and every RFC 6962 proof element is
the hash of one compact range, so storage only ever needs perfect-subtree nodes,
which never change once written.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from anchorlog.ledger.errors import InvalidInput
from anchorlog.ledger.merkle.hashing import EMPTY_ROOT, HASH_SIZE, node_hash, require_hash

__all__ = [
    "Appended",
    "NodeID",
    "ProofPlan",
    "append_leaves",
    "check_size",
    "fold_range",
    "frontier_root",
    "range_nodes",
    "root_of",
    "split_point",
]


@dataclass(frozen=True, order=True, slots=True)
class NodeID:
    """The perfect subtree over leaves ``[index * 2**level, (index + 1) * 2**level)``.

    Ordered by level, then index. A dataclass rather than a NamedTuple: a tuple
    field called ``index`` would shadow ``tuple.index``, and a NodeID should not
    compare equal to a bare ``(level, index)`` pair.
    """

    level: int
    index: int

    @property
    def begin(self) -> int:
        """First leaf covered."""
        return self.index << self.level

    @property
    def end(self) -> int:
        """One past the last leaf covered."""
        return (self.index + 1) << self.level


def split_point(width: int) -> int:
    """k, the largest power of two below ``width`` (> 1): RFC 9162 §2.1.1 splits
    D[n] into D[0:k] and D[k:n], and every proof walks those splits."""
    return 1 << ((width - 1).bit_length() - 1)


def check_size(field: str, value: object) -> int:
    """``value`` if it is a non-negative int (a size or index), else ``InvalidInput``."""
    if not isinstance(value, int) or isinstance(value, bool):
        raise InvalidInput(field, f"must be an int, got {type(value).__name__}")
    if value < 0:
        raise InvalidInput(field, f"must not be negative, got {value}")
    return value


def range_nodes(begin: int, end: int) -> list[NodeID]:
    """The maximal perfect subtrees covering leaves ``[begin, end)``, left to right."""
    check_size("begin", begin)
    check_size("end", end)
    if begin > end:
        raise InvalidInput("end", f"{end} is below begin {begin}")
    nodes: list[NodeID] = []
    while begin < end:
        # Greedy from the left: the biggest subtree that starts at `begin` is
        # limited by how `begin` is aligned and by how many leaves remain.
        level = (end - begin).bit_length() - 1
        if begin:
            level = min(level, (begin & -begin).bit_length() - 1)
        nodes.append(NodeID(level, begin >> level))
        begin += 1 << level
    return nodes


def fold_range(hashes: Sequence[bytes]) -> bytes:
    """The RFC 6962 MTH of an aligned range from the hashes of its ``range_nodes``.

    Aligned means ``begin`` is a multiple of a power of two >= the range's
    length, as for every proof element and for the whole tree (``begin = 0``).
    Such a range splits like a tree of its own, whose left children are exactly
    the perfect subtrees; so the MTH is the right-to-left fold.
    """
    if not hashes:
        raise InvalidInput("hashes", "is empty; an empty range has no subtree to fold")
    for i, h in enumerate(hashes):
        require_hash(f"hashes[{i}]", h)
    acc = hashes[-1]
    for h in reversed(hashes[:-1]):
        acc = node_hash(h, acc)
    return acc


def frontier_root(frontier: Sequence[bytes]) -> bytes:
    """The tree root from the hashes of ``range_nodes(0, size)``."""
    return fold_range(frontier) if frontier else EMPTY_ROOT


@dataclass(frozen=True, slots=True)
class Appended:
    """What appending leaves to a tree produced.

    ``new_nodes`` lists, in the order they were completed, every perfect subtree
    that the append completed, leaves (level 0) included.
    """

    new_nodes: tuple[tuple[NodeID, bytes], ...]
    frontier: tuple[bytes, ...]
    root: bytes
    size: int


def _extend(
    size: int,
    stack: list[bytes],
    leaf_hashes: Iterable[bytes],
    sink: list[tuple[NodeID, bytes]] | None,
) -> int:
    """Push leaves onto the frontier ``stack`` in place; return the new size.

    Leaf number ``i`` completes one perfect subtree per trailing 1-bit of ``i``,
    each the parent of the frontier's last subtree and the one just built, so
    the work is amortized O(1) per leaf.
    """
    for n, h in enumerate(leaf_hashes):
        if type(h) is not bytes or len(h) != HASH_SIZE:
            require_hash(f"leaf_hashes[{n}]", h)
        if sink is not None:
            sink.append((NodeID(0, size), h))
        index, level = size, 0
        while index & 1:
            h = node_hash(stack.pop(), h)
            index >>= 1
            level += 1
            if sink is not None:
                sink.append((NodeID(level, index), h))
        stack.append(h)
        size += 1
    return size


def append_leaves(size: int, frontier: Sequence[bytes], leaf_hashes: Sequence[bytes]) -> Appended:
    """Append ``leaf_hashes`` to a tree of ``size`` leaves given by its ``frontier``."""
    check_size("size", size)
    if len(frontier) != size.bit_count():
        raise InvalidInput(
            "frontier",
            f"has {len(frontier)} hashes; a tree of size {size} has "
            f"{size.bit_count()} subtrees on its frontier",
        )
    stack = [require_hash(f"frontier[{i}]", h) for i, h in enumerate(frontier)]
    sink: list[tuple[NodeID, bytes]] = []
    new_size = _extend(size, stack, leaf_hashes, sink)
    return Appended(
        new_nodes=tuple(sink),
        frontier=tuple(stack),
        root=frontier_root(stack),
        size=new_size,
    )


def root_of(leaf_hashes: Iterable[bytes]) -> bytes:
    """MTH of a whole list of leaf hashes, in O(log n) memory."""
    stack: list[bytes] = []
    _extend(0, stack, leaf_hashes, None)
    return frontier_root(stack)


@dataclass(frozen=True, slots=True)
class ProofPlan:
    """Which leaf ranges a proof is made of, so storage can fetch them in one query.

    Proof element ``i`` is the MTH of leaves ``ranges[i]``; the ranges are in
    proof order and each is aligned (see ``fold_range``).
    """

    ranges: tuple[tuple[int, int], ...]

    def __post_init__(self) -> None:
        ranges = tuple(tuple(r) for r in self.ranges)
        for i, r in enumerate(ranges):
            field = f"ranges[{i}]"
            if len(r) != 2:
                raise InvalidInput(field, f"must be a (begin, end) pair, got {len(r)} values")
            begin, end = check_size(field, r[0]), check_size(field, r[1])
            if begin >= end:
                raise InvalidInput(field, f"[{begin}, {end}) is empty")
            # Only aligned ranges fold to their MTH.
            if begin % (1 << (end - begin - 1).bit_length()):
                raise InvalidInput(field, f"[{begin}, {end}) is not a subtree of any tree")
        object.__setattr__(self, "ranges", ranges)  # a list in would make the plan unhashable

    def node_ids(self) -> list[NodeID]:
        """Every node the proof needs, each once, in first-use order."""
        return list(dict.fromkeys(n for b, e in self.ranges for n in range_nodes(b, e)))

    def assemble(self, found: Mapping[NodeID, bytes]) -> list[bytes]:
        """The proof, from the hashes of (at least) ``node_ids()``."""
        proof: list[bytes] = []
        for begin, end in self.ranges:
            hashes: list[bytes] = []
            for node in range_nodes(begin, end):
                h = found.get(node)
                if h is None:
                    raise InvalidInput(
                        "found", f"has no hash for node level={node.level} index={node.index}"
                    )
                hashes.append(require_hash(f"found[{node}]", h))
            proof.append(fold_range(hashes))
        return proof
