"""RFC 6962 / RFC 9162 Merkle math: published vectors, an independent reference, interop.

The reference implementation below is the RFC's recursive definitions written
out over a list of leaf hashes with plain hashlib, sharing no code with the
package: MTH (§2.1.1), PATH (§2.1.3.1) and PROOF / SUBPROOF (§2.1.4.1).
"""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from anchorlog.ledger.errors import InvalidInput, VerificationError
from anchorlog.ledger.merkle import (
    EMPTY_ROOT,
    Appended,
    NodeID,
    ProofPlan,
    append_leaves,
    consistency_plan,
    consistency_proof_length,
    fold_range,
    frontier_root,
    inclusion_nodes,
    inclusion_plan,
    inclusion_proof_length,
    inclusion_proofs_of_range,
    leaf_hash,
    node_hash,
    range_nodes,
    root_from_inclusion,
    root_of,
    verify_consistency,
    verify_inclusion,
)
from hypothesis import given, settings
from hypothesis import strategies as st

VECTORS = Path(__file__).resolve().parents[3] / "shared" / "test-vectors"
TREE: dict[str, Any] = json.loads((VECTORS / "rfc6962_reference_tree.json").read_text())
INCLUSION_PROBES: list[dict[str, Any]] = json.loads(
    (VECTORS / "inclusion_probes.json").read_text()
)["probes"]
CONSISTENCY_PROBES: list[dict[str, Any]] = json.loads(
    (VECTORS / "consistency_probes.json").read_text()
)["probes"]

fast = settings(deadline=None, max_examples=150)

MAX_SIZE = 300  # sizes the property tests draw; the tree below is larger for "wrong size" probes


def unhex(values: list[str]) -> list[bytes]:
    return [bytes.fromhex(v) for v in values]


# --- independent reference ------------------------------------------------------


def _sha256(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def _split(n: int) -> int:
    """The largest power of two smaller than n (n > 1)."""
    k = 1
    while k * 2 < n:
        k *= 2
    return k


class Ref:
    """The RFC recursions over one list of leaf hashes, subtree hashes memoized."""

    def __init__(self, leaves: list[bytes]) -> None:
        self.leaves = leaves
        self.memo: dict[tuple[int, int], bytes] = {}

    def mth(self, lo: int, hi: int) -> bytes:
        """MTH(D[lo:hi])."""
        if (lo, hi) not in self.memo:
            n = hi - lo
            if n == 0:
                h = _sha256(b"")
            elif n == 1:
                h = self.leaves[lo]
            else:
                k = _split(n)
                h = _sha256(b"\x01" + self.mth(lo, lo + k) + self.mth(lo + k, hi))
            self.memo[lo, hi] = h
        return self.memo[lo, hi]

    def root(self, size: int) -> bytes:
        return self.mth(0, size)

    def path(self, m: int, lo: int, hi: int) -> list[tuple[bytes, bool]]:
        """PATH(m, D[lo:hi]) with, per element, whether the sibling is on the left."""
        n = hi - lo
        if n == 1:
            return []
        k = _split(n)
        if m < k:
            return self.path(m, lo, lo + k) + [(self.mth(lo + k, hi), False)]
        return self.path(m - k, lo + k, hi) + [(self.mth(lo, lo + k), True)]

    def inclusion(self, index: int, size: int) -> list[bytes]:
        return [h for h, _ in self.path(index, 0, size)]

    def subproof(self, m: int, lo: int, hi: int, b: bool) -> list[bytes]:
        """SUBPROOF(m, D[lo:hi], b)."""
        n = hi - lo
        if m == n:
            return [] if b else [self.mth(lo, hi)]
        k = _split(n)
        if m <= k:
            return self.subproof(m, lo, lo + k, b) + [self.mth(lo + k, hi)]
        return self.subproof(m - k, lo + k, hi, False) + [self.mth(lo, lo + k)]

    def consistency(self, old: int, new: int) -> list[bytes]:
        """PROOF(old, D[new])."""
        return self.subproof(old, 0, new, True) if old > 0 else []


LEAF_DATA = [f"leaf {i}".encode() for i in range(1024)]  # distinct, so no two leaves collide
LEAVES = [_sha256(b"\x00" + d) for d in LEAF_DATA]
REF = Ref(LEAVES)


# Every perfect subtree of LEAVES, as storage would hold them.
NODES: dict[NodeID, bytes] = dict(append_leaves(0, (), LEAVES).new_nodes)


def frontier_of(size: int) -> list[bytes]:
    return [NODES[n] for n in range_nodes(0, size)]


def flip(h: bytes, at: int = 0) -> bytes:
    return h[:at] + bytes([h[at] ^ 0x10]) + h[at + 1 :]


OTHER = _sha256(b"not in any tree")


# --- published vectors ----------------------------------------------------------


@pytest.mark.parametrize("case", TREE["hasher"], ids=lambda c: c["desc"])
def test_hasher_vectors(case: dict[str, Any]) -> None:
    want = bytes.fromhex(case["want"])
    if case["kind"] == "empty_root":
        assert EMPTY_ROOT == want
        assert frontier_root([]) == want == root_of([])
    elif case["kind"] == "leaf":
        assert leaf_hash(bytes.fromhex(case["data"])) == want
    else:
        assert node_hash(bytes.fromhex(case["left"]), bytes.fromhex(case["right"])) == want


VECTOR_LEAVES = [leaf_hash(d) for d in unhex(TREE["leaves"])]
VECTOR_ROOTS = unhex(TREE["root_hashes"])


def test_reference_tree_nodes_are_exactly_the_appended_ones() -> None:
    grown = append_leaves(0, (), VECTOR_LEAVES)
    want = {
        NodeID(level, i): bytes.fromhex(h)
        for level, row in enumerate(TREE["node_hashes"])
        for i, h in enumerate(row)
    }
    assert dict(grown.new_nodes) == want
    assert len(grown.new_nodes) == len(want)  # each node reported once
    assert grown.root == VECTOR_ROOTS[8] and grown.size == 8
    assert grown.frontier == (want[NodeID(3, 0)],)


@pytest.mark.parametrize("size", range(9))
def test_reference_tree_roots(size: int) -> None:
    want = VECTOR_ROOTS[size]
    assert root_of(VECTOR_LEAVES[:size]) == want
    grown = append_leaves(0, (), VECTOR_LEAVES[:size])
    assert grown.root == want
    assert frontier_root(grown.frontier) == want


def _vector_nodes() -> dict[NodeID, bytes]:
    return dict(append_leaves(0, (), VECTOR_LEAVES).new_nodes)


@pytest.mark.parametrize(
    "case", TREE["inclusion_proofs"], ids=lambda c: f"{c['index']}-of-{c['size']}"
)
def test_reference_tree_inclusion_proofs(case: dict[str, Any]) -> None:
    index, size, want = case["index"], case["size"], unhex(case["proof"])
    plan = inclusion_plan(index, size)
    assert plan.assemble(_vector_nodes()) == want
    verify_inclusion(VECTOR_LEAVES[index], index, size, want, VECTOR_ROOTS[size])
    assert root_from_inclusion(VECTOR_LEAVES[index], index, size, want) == VECTOR_ROOTS[size]


@pytest.mark.parametrize(
    "case", TREE["consistency_proofs"], ids=lambda c: f"{c['old_size']}-to-{c['new_size']}"
)
def test_reference_tree_consistency_proofs(case: dict[str, Any]) -> None:
    old, new, want = case["old_size"], case["new_size"], unhex(case["proof"])
    assert consistency_plan(old, new).assemble(_vector_nodes()) == want
    verify_consistency(old, new, VECTOR_ROOTS[old], VECTOR_ROOTS[new], want)


def test_probe_files_are_complete() -> None:
    assert len(INCLUSION_PROBES) == 98 and len(CONSISTENCY_PROBES) == 98
    assert sum(not p["want_err"] for p in INCLUSION_PROBES) == 6
    assert sum(not p["want_err"] for p in CONSISTENCY_PROBES) == 6


def _probe_id(p: dict[str, Any]) -> str:
    return f"{p['file'].removeprefix('testdata/')}:{p['desc']}"


@pytest.mark.parametrize("probe", INCLUSION_PROBES, ids=_probe_id)
def test_inclusion_probe(probe: dict[str, Any]) -> None:
    args = (
        bytes.fromhex(probe["leaf_hash"]),
        probe["index"],
        probe["size"],
        unhex(probe["proof"]),
        bytes.fromhex(probe["root"]),
    )
    if probe["want_err"]:
        with pytest.raises(VerificationError):
            verify_inclusion(*args)
    else:
        verify_inclusion(*args)


@pytest.mark.parametrize("probe", CONSISTENCY_PROBES, ids=_probe_id)
def test_consistency_probe(probe: dict[str, Any]) -> None:
    args = (
        probe["old_size"],
        probe["new_size"],
        bytes.fromhex(probe["old_root"]),
        bytes.fromhex(probe["new_root"]),
        unhex(probe["proof"]),
    )
    if probe["want_err"]:
        with pytest.raises(VerificationError):
            verify_consistency(*args)
    else:
        verify_consistency(*args)


# --- against the reference --------------------------------------------------------


def test_reference_matches_published_tree() -> None:
    # The reference is only a referee if it is right itself.
    ref = Ref(VECTOR_LEAVES)
    assert [ref.root(size) for size in range(9)] == VECTOR_ROOTS
    for case in TREE["inclusion_proofs"]:
        assert ref.inclusion(case["index"], case["size"]) == unhex(case["proof"])
    for case in TREE["consistency_proofs"]:
        assert ref.consistency(case["old_size"], case["new_size"]) == unhex(case["proof"])


def test_all_proofs_of_small_trees_match_reference() -> None:
    for size in range(1, 65):
        root = REF.root(size)
        assert root_of(LEAVES[:size]) == root
        for index in range(size):
            plan = inclusion_plan(index, size)
            proof = plan.assemble(NODES)
            assert proof == REF.inclusion(index, size)
            assert len(proof) == inclusion_proof_length(index, size)
            assert all(n.end <= size for n in plan.node_ids())
            verify_inclusion(LEAVES[index], index, size, proof, root)
        for old in range(size + 1):
            plan = consistency_plan(old, size)
            proof = plan.assemble(NODES)
            assert proof == REF.consistency(old, size)
            assert all(n.end <= size for n in plan.node_ids())
            if 0 < old < size:
                assert len(proof) == consistency_proof_length(old, size)
            if old > 0:
                verify_consistency(old, size, REF.root(old), root, proof)


def _inclusion_forgeries(
    index: int, size: int, proof: list[bytes], root: bytes
) -> list[tuple[str, Callable[[], None]]]:
    leaf = LEAVES[index]

    def call(lh: bytes, i: int, n: int, p: list[bytes], r: bytes) -> Callable[[], None]:
        return lambda: verify_inclusion(lh, i, n, p, r)

    out = [
        ("wrong leaf", call(OTHER, index, size, proof, root)),
        ("flipped leaf", call(flip(leaf, 31), index, size, proof, root)),
        ("wrong root", call(leaf, index, size, proof, OTHER)),
        ("flipped root", call(leaf, index, size, proof, flip(root, 7))),
        ("empty root", call(leaf, index, size, proof, EMPTY_ROOT)),
        ("appended hash", call(leaf, index, size, [*proof, OTHER], root)),
        ("prepended hash", call(leaf, index, size, [OTHER, *proof], root)),
        ("appended root", call(leaf, index, size, [*proof, root], root)),
        ("empty element", call(leaf, index, size, [*proof, b""], root)),
        ("index = size", call(leaf, size, size, proof, root)),
        ("size 0", call(leaf, index, 0, proof, root)),
    ]
    for j in range(len(proof)):
        bad = list(proof)
        bad[j] = flip(bad[j], j % 32)
        out.append((f"flipped proof[{j}]", call(leaf, index, size, bad, root)))
        out.append(
            (f"dropped proof[{j}]", call(leaf, index, size, proof[:j] + proof[j + 1 :], root))
        )
        out.append(
            (f"inserted at {j}", call(leaf, index, size, [*proof[:j], OTHER, *proof[j:]], root))
        )
        if j + 1 < len(proof):
            bad = list(proof)
            bad[j], bad[j + 1] = bad[j + 1], bad[j]
            out.append((f"swapped {j}, {j + 1}", call(leaf, index, size, bad, root)))
    if len(proof) > 1:
        out.append(("reversed", call(leaf, index, size, proof[::-1], root)))
    for other in {index - 1, index + 1, index ^ 1, index ^ 2, index ^ 4} - {index}:
        if 0 <= other < size:
            # the same leaf claimed at another position, and that position's own leaf
            out.append((f"index {other}", call(leaf, other, size, proof, root)))
            out.append((f"leaf {other}", call(LEAVES[other], other, size, proof, root)))
    for other in {size - 1, size + 1, size * 2, size // 2, size + 7} - {size}:
        if other > index:
            # a real tree of the claimed size: its own root
            out.append((f"size {other}", call(leaf, index, other, proof, REF.root(other))))
    return out


@fast
@given(st.data())
def test_inclusion_proofs_match_reference_and_resist_tampering(data: st.DataObject) -> None:
    size = data.draw(st.integers(1, MAX_SIZE), label="size")
    index = data.draw(st.integers(0, size - 1), label="index")
    plan = inclusion_plan(index, size)
    proof = plan.assemble({n: NODES[n] for n in plan.node_ids()})  # exactly what it asked for
    assert proof == REF.inclusion(index, size)
    root = REF.root(size)
    verify_inclusion(LEAVES[index], index, size, proof, root)
    assert root_from_inclusion(LEAVES[index], index, size, proof) == root
    for desc, forged in _inclusion_forgeries(index, size, proof, root):
        with pytest.raises(VerificationError):
            forged()
            pytest.fail(f"accepted: {desc}")


@fast
@given(st.data())
def test_paths_of_a_range_are_each_leafs_path(data: st.DataObject) -> None:
    size = data.draw(st.integers(1, MAX_SIZE), label="size")
    begin = data.draw(st.integers(0, size - 1), label="begin")
    end = data.draw(st.integers(begin + 1, size), label="end")
    asked: list[tuple[int, int]] = []

    def node(level: int, index: int) -> bytes:
        asked.append((index << level, (index + 1) << level))
        return NODES[NodeID(level, index)]

    # Where the frontier of `size` splits: the only right-edge ranges a store keeps.
    splits = {n.begin for n in range_nodes(0, size)}

    def right_edge(lo: int) -> bytes:
        width = size - lo
        assert 0 < width and width & (width - 1), f"[{lo}, {size}) is perfect: a node, not an edge"
        assert lo in splits, f"[{lo}, {size}) does not start where the frontier splits"
        asked.append((lo, size))
        return REF.mth(lo, size)

    proofs = inclusion_proofs_of_range(begin, end, size, node, right_edge)
    assert proofs == [REF.inclusion(i, size) for i in range(begin, end)]
    assert len(asked) == len(set(asked)), "a subtree hash was asked for twice"
    # Exactly the distinct hashes of the paths: nothing asked that no path holds.
    assert len(asked) == len({h for proof in proofs for h in proof})
    assert len({id(p) for p in proofs}) == len(proofs), "two leaves share one list"
    root = REF.root(size)
    for i, proof in enumerate(proofs, start=begin):
        verify_inclusion(LEAVES[i], i, size, proof, root)


def test_paths_of_a_range_refuse_bad_ranges_and_pass_lookup_errors_through() -> None:
    def node(level: int, index: int) -> bytes:
        return NODES[NodeID(level, index)]

    def right_edge(lo: int) -> bytes:
        return REF.mth(lo, 10)

    for begin, end, size in [(3, 3, 10), (4, 3, 10), (0, 11, 10), (-1, 2, 10), (0, 1, 0)]:
        with pytest.raises(InvalidInput):
            inclusion_proofs_of_range(begin, end, size, node, right_edge)
    with pytest.raises(InvalidInput):
        inclusion_proofs_of_range(0, 2.0, 10, node, right_edge)  # type: ignore[arg-type]

    def missing(level: int, index: int) -> bytes:
        raise LookupError(f"no node {level}/{index}")

    with pytest.raises(LookupError):
        inclusion_proofs_of_range(2, 5, 10, missing, right_edge)


def _consistency_forgeries(
    old: int, new: int, proof: list[bytes]
) -> list[tuple[str, Callable[[], None]]]:
    old_root, new_root = REF.root(old), REF.root(new)

    def call(m: int, n: int, r1: bytes, r2: bytes, p: list[bytes]) -> Callable[[], None]:
        return lambda: verify_consistency(m, n, r1, r2, p)

    out = [
        ("swapped roots", call(old, new, new_root, old_root, proof)),
        ("wrong old root", call(old, new, OTHER, new_root, proof)),
        ("wrong new root", call(old, new, old_root, OTHER, proof)),
        ("flipped old root", call(old, new, flip(old_root, 3), new_root, proof)),
        ("flipped new root", call(old, new, old_root, flip(new_root, 3), proof)),
        ("empty proof", call(old, new, old_root, new_root, [])),
        ("appended hash", call(old, new, old_root, new_root, [*proof, OTHER])),
        ("prepended hash", call(old, new, old_root, new_root, [OTHER, *proof])),
        ("prepended old root", call(old, new, old_root, new_root, [old_root, *proof])),
        ("appended new root", call(old, new, old_root, new_root, [*proof, new_root])),
        ("prepended proof[0]", call(old, new, old_root, new_root, [proof[0], *proof])),
        ("empty element", call(old, new, old_root, new_root, [b"", *proof])),
        ("sizes reversed", call(new, old, new_root, old_root, proof)),
        ("old size 0", call(0, new, EMPTY_ROOT, new_root, proof)),
    ]
    for j in range(len(proof)):
        bad = list(proof)
        bad[j] = flip(bad[j], j % 32)
        out.append((f"flipped proof[{j}]", call(old, new, old_root, new_root, bad)))
        out.append(
            (f"dropped proof[{j}]", call(old, new, old_root, new_root, proof[:j] + proof[j + 1 :]))
        )
        if j + 1 < len(proof):
            bad = list(proof)
            bad[j], bad[j + 1] = bad[j + 1], bad[j]
            out.append((f"swapped {j}, {j + 1}", call(old, new, old_root, new_root, bad)))
    for other in {old - 1, old + 1, old ^ 1, old ^ 2, old * 2, old // 2} - {old}:
        if 0 < other <= new:
            out.append((f"old size {other}", call(other, new, REF.root(other), new_root, proof)))
            out.append((f"old size {other}, old root", call(other, new, old_root, new_root, proof)))
    for other in {new - 1, new + 1, new * 2, new // 2, new + 7} - {new}:
        if other >= old:
            out.append((f"new size {other}", call(old, other, old_root, REF.root(other), proof)))
    return out


@fast
@given(st.data())
def test_consistency_proofs_match_reference_and_resist_tampering(data: st.DataObject) -> None:
    new = data.draw(st.integers(2, MAX_SIZE), label="new")
    old = data.draw(st.integers(1, new - 1), label="old")
    plan = consistency_plan(old, new)
    proof = plan.assemble({n: NODES[n] for n in plan.node_ids()})
    assert proof == REF.consistency(old, new)
    verify_consistency(old, new, REF.root(old), REF.root(new), proof)
    for desc, forged in _consistency_forgeries(old, new, proof):
        with pytest.raises(VerificationError):
            forged()
            pytest.fail(f"accepted: {desc}")


@fast
@given(st.integers(0, MAX_SIZE))
def test_equal_sizes_need_equal_roots_and_no_proof(size: int) -> None:
    assert consistency_plan(size, size).ranges == ()
    assert consistency_plan(0, size).ranges == ()
    if size == 0:
        return
    root = REF.root(size)
    verify_consistency(size, size, root, root, [])
    for args in [(root, OTHER, []), (root, root, [root]), (OTHER, root, [])]:
        with pytest.raises(VerificationError):
            verify_consistency(size, size, *args)


@settings(deadline=None, max_examples=300)
@given(st.data())
def test_proof_lengths_for_huge_trees(data: st.DataObject) -> None:
    # The closed-form lengths the verifiers check up front agree with the plans
    # and with the RFC algorithm's own accounting, far beyond what we can build.
    size = data.draw(st.integers(1, 2**64), label="size")
    index = data.draw(st.integers(0, size - 1), label="index")
    plan = inclusion_plan(index, size)
    assert len(plan.ranges) == inclusion_proof_length(index, size) <= 2 * size.bit_length()
    assert sum(e - b for b, e in plan.ranges) == size - 1  # with the leaf: all of the tree
    fake = [_sha256(i.to_bytes(2, "big")) for i in range(len(plan.ranges))]
    root_from_inclusion(OTHER, index, size, fake)  # the right shape: no error
    if size > 1:
        old = data.draw(st.integers(1, size - 1), label="old")
        cplan = consistency_plan(old, size)
        assert len(cplan.ranges) == consistency_proof_length(old, size)
        assert all(e <= old or b >= old for b, e in cplan.ranges)  # none straddles the old edge
        assert sum(e - b for b, e in cplan.ranges if b >= old) == size - old  # covers the new part
        fake = [_sha256(i.to_bytes(2, "big")) for i in range(len(cplan.ranges))]
        # the right shape: the RFC algorithm runs to the end and only the roots differ
        with pytest.raises(VerificationError, match="does not lead to the (old|new) root"):
            verify_consistency(old, size, OTHER, OTHER, fake)


# --- compact ranges and appending --------------------------------------------------


@settings(deadline=None, max_examples=300)
@given(st.integers(0, 2**70), st.integers(0, 2**70))
def test_range_nodes_are_a_minimal_cover(a: int, b: int) -> None:
    begin, end = min(a, b), max(a, b)
    nodes = range_nodes(begin, end)
    pos = begin
    for n in nodes:
        assert n.begin == pos and n.end > pos  # contiguous, left to right
        pos = n.end
    assert pos == end
    for left, right in itertools.pairwise(nodes):
        # two siblings would merge into their parent: not maximal
        assert not (left.level == right.level and left.index % 2 == 0)
    assert len(nodes) <= 2 * max(1, (end - begin).bit_length())
    if begin == 0:  # the frontier: one node per 1-bit of the size, largest first
        assert [n.level for n in nodes] == [
            i for i in range(end.bit_length())[::-1] if end >> i & 1
        ]


@fast
@given(st.integers(0, 512), st.integers(1, 512))
def test_fold_range_gives_the_mth_of_aligned_ranges(block: int, length: int) -> None:
    width = 1 << (length - 1).bit_length()
    begin = (block * width) % 1024 // width * width
    end = min(begin + length, 1024)
    hashes = [NODES[n] for n in range_nodes(begin, end)]
    assert fold_range(hashes) == REF.mth(begin, end)
    assert ProofPlan(((begin, end),)).assemble(NODES) == [REF.mth(begin, end)]


@fast
@given(st.lists(st.integers(0, 40), max_size=12), st.integers(0, 200))
def test_append_in_chunks_equals_one_append(chunks: list[int], start: int) -> None:
    size, frontier = start, frontier_of(start)
    nodes: list[tuple[NodeID, bytes]] = []
    for n in chunks:
        grown = append_leaves(size, frontier, LEAVES[size : size + n])
        assert grown.size == size + n
        assert list(grown.frontier) == frontier_of(grown.size)
        assert grown.root == REF.root(grown.size)
        nodes += grown.new_nodes
        size, frontier = grown.size, list(grown.frontier)
    whole = append_leaves(start, frontier_of(start), LEAVES[start:size])
    assert whole.new_nodes == tuple(nodes)
    assert whole.frontier == tuple(frontier) and whole.size == size
    # exactly the perfect subtrees that end in (start, size], each with its MTH
    want = {
        NodeID(level, i)
        for level in range(11)
        for i in range(size >> level)
        if (i + 1) << level > start
    }
    assert {n for n, _ in nodes} == want and len(nodes) == len(want)
    for node, h in nodes:
        assert h == REF.mth(node.begin, node.end)


def test_append_nothing_and_to_empty() -> None:
    empty = append_leaves(0, [], [])
    assert empty == Appended(new_nodes=(), frontier=(), root=EMPTY_ROOT, size=0)
    one = append_leaves(0, [], LEAVES[:1])
    assert one.new_nodes == ((NodeID(0, 0), LEAVES[0]),) and one.root == LEAVES[0]
    same = append_leaves(5, frontier_of(5), [])
    assert same.new_nodes == () and same.root == REF.root(5) and same.size == 5


def test_value_types() -> None:
    a, b = NodeID(1, 2), NodeID(0, 9)
    assert sorted([a, b]) == [b, a] and len({a, NodeID(1, 2)}) == 1
    assert (a.level, a.index, a.begin, a.end) == (1, 2, 4, 6)
    plan = inclusion_plan(3, 7)
    assert hash(plan) == hash(ProofPlan(plan.ranges))
    assert ProofPlan([[4, 6]]).ranges == ((4, 6),)  # type: ignore[arg-type]
    with pytest.raises(dataclasses.FrozenInstanceError):
        plan.ranges = ()  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        append_leaves(0, [], []).size = 3  # type: ignore[misc]
    # node_ids is the union of the ranges' nodes, each once
    dup = ProofPlan(((0, 4), (0, 2), (4, 6)))
    assert dup.node_ids() == [NodeID(2, 0), NodeID(1, 0), NodeID(1, 2)]


# --- interop: pymerkle ------------------------------------------------------------


def test_pymerkle_agrees_on_roots_and_inclusion_proofs() -> None:
    pymerkle = pytest.importorskip("pymerkle")
    # security mode (the default, made explicit) is the RFC 6962 0x00 / 0x01 prefixing
    tree = pymerkle.InmemoryTree(algorithm="sha256", disable_security=False)
    tree.append_entries(LEAF_DATA[:300])
    assert tree.get_root(0) == EMPTY_ROOT
    for size in [1, 2, 3, 5, 7, 8, 13, 31, 64, 100, 257, 300]:
        root = root_of(LEAVES[:size])
        assert tree.get_root(size) == root
        for index in sorted({0, 1 % size, size // 3, size // 2, size - 1}):
            ours = inclusion_plan(index, size).assemble(NODES)
            theirs = tree.prove_inclusion(index + 1, size)  # pymerkle counts from one
            assert theirs.path == [LEAVES[index], *ours]
            # our proof, in pymerkle's envelope, verified by pymerkle; the rule
            # (which side each sibling is on) comes from the reference recursion
            rule = [int(left) for _, left in REF.path(index, 0, size)] + [0]
            wrapped = pymerkle.InclusionProof(
                "sha256", True, size, index + 1, rule, [LEAVES[index], *ours]
            )
            pymerkle.verify_inclusion(LEAVES[index], root, wrapped, index=index + 1, size=size)
            with pytest.raises(pymerkle.InvalidProof):
                pymerkle.verify_inclusion(LEAVES[index], OTHER, wrapped)
        for old in sorted({1, size // 2, size - 1} - {0}):
            # pymerkle's consistency paths are not RFC 9162's, so compare through
            # the roots: its proof must bind our roots of both sizes.
            pymerkle.verify_consistency(
                root_of(LEAVES[:old]), root, tree.prove_consistency(old, size)
            )


# --- bad arguments ----------------------------------------------------------------

H = LEAVES[0]
NOT_BYTES: Any = "00" * 32  # a hex string where bytes belong (Any: wrong on purpose)

BAD_ARGS: list[tuple[str, Callable[[], object], str]] = [
    ("range begin negative", lambda: range_nodes(-1, 3), "begin"),
    ("range end negative", lambda: range_nodes(0, -1), "end"),
    ("range reversed", lambda: range_nodes(5, 3), "end"),
    ("range begin float", lambda: range_nodes(0.5, 3), "begin"),  # type: ignore[arg-type]
    ("fold nothing", lambda: fold_range([]), "hashes"),
    ("fold short hash", lambda: fold_range([H, H[:31]]), "hashes[1]"),
    ("fold str", lambda: fold_range([NOT_BYTES]), "hashes[0]"),
    ("append negative size", lambda: append_leaves(-1, [], []), "size"),
    ("frontier too long", lambda: append_leaves(3, [H], [H]), "frontier"),
    ("frontier too short", lambda: append_leaves(3, [H, H, H], [H]), "frontier"),
    ("frontier short hash", lambda: append_leaves(1, [b"x"], [H]), "frontier[0]"),
    ("leaf hash empty", lambda: append_leaves(0, [], [H, b""]), "leaf_hashes[1]"),
    ("leaf hash long", lambda: root_of([H + b"\x00"]), "leaf_hashes[0]"),
    ("inclusion index negative", lambda: inclusion_plan(-1, 4), "index"),
    ("inclusion index = size", lambda: inclusion_plan(4, 4), "index"),
    ("inclusion empty tree", lambda: inclusion_plan(0, 0), "index"),
    ("inclusion size negative", lambda: inclusion_plan(0, -1), "size"),
    ("inclusion index bool", lambda: inclusion_plan(True, 4), "index"),
    ("consistency old negative", lambda: consistency_plan(-1, 4), "old_size"),
    ("consistency new negative", lambda: consistency_plan(0, -1), "new_size"),
    ("consistency old > new", lambda: consistency_plan(5, 4), "old_size"),
    ("plan empty range", lambda: ProofPlan(((2, 2),)), "ranges[0]"),
    ("plan unaligned range", lambda: ProofPlan(((0, 2), (1, 3))), "ranges[1]"),
    ("plan negative range", lambda: ProofPlan(((-1, 0),)), "ranges[0]"),
    ("plan triple", lambda: ProofPlan(((0, 1, 2),)), "ranges[0]"),  # type: ignore[arg-type]
    ("assemble missing node", lambda: inclusion_plan(0, 2).assemble({}), "found"),
]


@pytest.mark.parametrize(("call", "field"), [c[1:] for c in BAD_ARGS], ids=[c[0] for c in BAD_ARGS])
def test_bad_arguments_name_the_field(call: Callable[[], object], field: str) -> None:
    with pytest.raises(InvalidInput) as err:
        call()
    assert err.value.field == field
    assert err.value.message


def test_assemble_rejects_a_malformed_stored_hash() -> None:
    plan = inclusion_plan(0, 2)
    with pytest.raises(InvalidInput) as err:
        plan.assemble({NodeID(0, 1): b"short"})
    assert err.value.field.startswith("found[")


BAD_CLAIMS: list[tuple[str, Callable[[], object]]] = [
    ("negative index", lambda: verify_inclusion(H, -1, 4, [], H)),
    ("negative size", lambda: verify_inclusion(H, 0, -4, [], H)),
    ("index = size", lambda: verify_inclusion(H, 4, 4, [H, H], H)),
    ("uint64 -1 index", lambda: verify_inclusion(H, 2**64 - 1, 8, [H, H, H], H)),
    ("short leaf hash", lambda: verify_inclusion(b"x", 0, 1, [], b"x")),
    ("str proof element", lambda: verify_inclusion(H, 0, 2, [NOT_BYTES], H)),
    ("str root", lambda: verify_inclusion(H, 0, 1, [], NOT_BYTES)),
    ("str roots", lambda: verify_consistency(1, 1, NOT_BYTES, NOT_BYTES, [])),
    ("negative old size", lambda: verify_consistency(-1, 4, H, H, [H])),
    ("negative sizes", lambda: verify_consistency(-2, -1, H, H, [H])),
    ("old > new", lambda: verify_consistency(3, 2, H, H, [H])),
    ("old 0, new 0", lambda: verify_consistency(0, 0, EMPTY_ROOT, EMPTY_ROOT, [])),
    ("old 0", lambda: verify_consistency(0, 5, EMPTY_ROOT, H, [])),
    ("short new root", lambda: verify_consistency(1, 2, H, H[:16], [H])),
]


@pytest.mark.parametrize("call", [c[1] for c in BAD_CLAIMS], ids=[c[0] for c in BAD_CLAIMS])
def test_bad_claims_fail_verification(call: Callable[[], object]) -> None:
    # Verifier inputs come from whoever sent the proof: all of them fail verification.
    with pytest.raises(VerificationError) as err:
        call()
    assert str(err.value)


# --- inclusion_nodes: the audit path as stored nodes, without the walk ---------


def _nodes_path(index: int, size: int, mth: Callable[[int, int], bytes]) -> list[bytes]:
    path, edge = inclusion_nodes(index, size)
    return [
        mth(i << level, size if k == edge else (i + 1) << level) for k, (level, i) in enumerate(path)
    ]


@pytest.mark.parametrize(
    "case", TREE["inclusion_proofs"], ids=lambda c: f"{c['index']}-of-{c['size']}"
)
def test_reference_tree_inclusion_nodes(case: dict[str, Any]) -> None:
    index, size, want = case["index"], case["size"], unhex(case["proof"])
    assert _nodes_path(index, size, Ref(VECTOR_LEAVES).mth) == want


def test_inclusion_nodes_of_small_trees_match_reference() -> None:
    for size in range(1, 70):
        for index in range(size):
            assert _nodes_path(index, size, REF.mth) == REF.inclusion(index, size)


@settings(deadline=None, max_examples=300)
@given(st.data())
def test_inclusion_nodes_name_the_planned_ranges(data: st.DataObject) -> None:
    size = data.draw(st.integers(1, 2**64), label="size")
    index = data.draw(st.integers(0, size - 1), label="index")
    path, edge = inclusion_nodes(index, size)
    ranges = tuple(
        (i << level, size if k == edge else (i + 1) << level) for k, (level, i) in enumerate(path)
    )
    assert ranges == inclusion_plan(index, size).ranges
    for k, (level, i) in enumerate(path):
        # Perfect subtrees inside the tree, except the one partial range on the edge.
        assert ((i + 1) << level > size) == (k == edge)
    assert [level for level, _ in path] == sorted({level for level, _ in path})


@pytest.mark.parametrize(
    ("index", "size"), [(-1, 5), (5, 5), (0, 0), (True, 5), (1.0, 5), (0, "3")]
)
def test_inclusion_nodes_refuse_bad_arguments(index: object, size: object) -> None:
    with pytest.raises(InvalidInput):
        inclusion_nodes(index, size)  # type: ignore[arg-type]
