"""ProvedPaths: same verdict as verify_inclusion for every proof, good or tampered, warm or cold."""

from __future__ import annotations

import pytest
from anchorlog.client.proved_paths import ProvedPaths
from anchorlog.ledger.errors import VerificationError
from anchorlog.ledger.merkle.inclusion import verify_inclusion
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.ledger.test_merkle import LEAVES, REF


def _accepts(leaf: bytes, index: int, size: int, proof: list[bytes], root: bytes) -> bool:
    try:
        verify_inclusion(leaf, index, size, proof, root)
    except VerificationError:
        return False
    return True


def _tamper(data: st.DataObject, leaf: bytes, index: int, proof: list[bytes]) -> tuple[bytes, int, list[bytes]]:
    how = data.draw(st.sampled_from(["leaf", "element", "drop", "extra", "index", "swap", "none"]))
    proof = list(proof)
    if how == "leaf":
        leaf = bytes([leaf[0] ^ 1]) + leaf[1:]
    elif how == "element" and proof:
        at = data.draw(st.integers(0, len(proof) - 1))
        proof[at] = bytes([proof[at][0] ^ 1]) + proof[at][1:]
    elif how == "drop" and proof:
        proof.pop(data.draw(st.integers(0, len(proof) - 1)))
    elif how == "extra":
        proof.append(LEAVES[0])
    elif how == "index":
        index = data.draw(st.integers(-1, 300))
    elif how == "swap" and len(proof) > 1:
        at = data.draw(st.integers(0, len(proof) - 2))
        proof[at], proof[at + 1] = proof[at + 1], proof[at]
    return leaf, index, proof


@settings(max_examples=150, deadline=None)
@given(size=st.integers(1, 200), data=st.data())
def test_same_verdict_as_verify_inclusion(size: int, data: st.DataObject) -> None:
    root = REF.root(size)
    paths = ProvedPaths(size, root)
    # A warm memory first: some honest proofs of this tree, in any order.
    for index in data.draw(st.lists(st.integers(0, size - 1), max_size=12)):
        paths.verify(LEAVES[index], index, REF.inclusion(index, size))
    for _ in range(6):
        index = data.draw(st.integers(0, size - 1))
        leaf, claimed, proof = _tamper(data, LEAVES[index], index, REF.inclusion(index, size))
        if _accepts(leaf, claimed, size, proof, root):
            paths.verify(leaf, claimed, proof)
        else:
            with pytest.raises(VerificationError):
                paths.verify(leaf, claimed, proof)


def test_neighbouring_receipts_reuse_the_shared_path() -> None:
    size = 1000
    paths = ProvedPaths(size, REF.root(size))
    for index in range(size):
        paths.verify(LEAVES[index], index, REF.inclusion(index, size))
    # About two nodes remembered per leaf, not one per level per leaf.
    assert len(paths) < 2 * size + 20


def test_a_warm_memory_still_refuses_another_leaf_at_a_proved_position() -> None:
    size = 64
    paths = ProvedPaths(size, REF.root(size))
    for index in range(size):
        paths.verify(LEAVES[index], index, REF.inclusion(index, size))
    # Leaf 6's proof, but leaf 7's hash: the parent node it claims is not the tree's.
    with pytest.raises(VerificationError):
        paths.verify(LEAVES[7], 6, REF.inclusion(6, size))
    # The right leaf with the right siblings, but one sibling above the shared node swapped.
    proof = REF.inclusion(6, size)
    proof[3] = LEAVES[0]
    with pytest.raises(VerificationError):
        paths.verify(LEAVES[6], 6, proof)


def test_memory_belongs_to_one_tree() -> None:
    small, big = 40, 41
    paths = ProvedPaths(small, REF.root(small))
    for index in range(small):
        paths.verify(LEAVES[index], index, REF.inclusion(index, small))
    # A proof against the bigger tree is not a proof against this one.
    with pytest.raises(VerificationError):
        paths.verify(LEAVES[39], 39, REF.inclusion(39, big))
