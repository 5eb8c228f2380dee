"""InclusionMemo accepts and refuses exactly what verify_inclusion does, warm or cold."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import pytest
from anchorlog.client.verify import InclusionMemo
from anchorlog.ledger.batch import BatchTree
from anchorlog.ledger.errors import VerificationError
from anchorlog.ledger.merkle import leaf_hash, verify_inclusion
from hypothesis import given, settings
from hypothesis import strategies as st

_TREES: dict[int, tuple[list[bytes], BatchTree]] = {}


def _tree(size: int) -> tuple[list[bytes], BatchTree]:
    if size not in _TREES:
        digests = sorted(hashlib.sha256(b"leaf %d" % i).digest() for i in range(size))
        _TREES[size] = (digests, BatchTree(b"".join(digests)))
    return _TREES[size]


def _plain_accepts(leaf: bytes, index: int, size: int, proof: list[bytes], root: bytes) -> bool:
    try:
        verify_inclusion(leaf, index, size, proof, root)
    except VerificationError:
        return False
    return True


def _memo_accepts(memo: InclusionMemo, leaf: bytes, index: int, size: int, proof: list[bytes] | bytes,
                  root: bytes) -> bool:
    """Whether ``memo`` accepts the path: as hashes (a list) by ``verify``, packed (bytes) by ``verify_packed``."""
    check = memo.verify_packed if isinstance(proof, bytes) else memo.verify
    try:
        check(leaf, index, size, proof, root)  # type: ignore[arg-type]  # each gets its own form
    except VerificationError:
        return False
    return True


@settings(max_examples=60, deadline=None)
@given(
    size=st.sampled_from([1, 2, 511, 512, 513, 700, 1024, 1500, 4097, 6000]),  # over 4096: both memo levels
    warm=st.lists(st.integers(min_value=0), max_size=40),
    probes=st.lists(
        st.tuples(st.integers(min_value=0), st.sampled_from(["ok", "hash", "leaf", "index", "short", "long", "size"]),
                  st.integers(min_value=0)),
        min_size=1, max_size=12,
    ),
)
def test_memo_agrees_with_verify_inclusion(
    size: int, warm: list[int], probes: list[tuple[int, str, int]]
) -> None:
    digests, tree = _tree(size)
    root = tree.root
    memo = InclusionMemo()
    for w in warm:  # remembered nodes from honest paths
        d = digests[w % size]
        path = tree.path(d)
        memo.verify(leaf_hash(d), path.leaf_index, size, list(path.hashes), root)
    for pick, how, where in probes:
        d = digests[pick % size]
        path = tree.path(d)
        leaf, index, proof, claimed = leaf_hash(d), path.leaf_index, list(path.hashes), size
        if how == "hash" and proof:
            proof[where % len(proof)] = hashlib.sha256(proof[where % len(proof)]).digest()
        elif how == "leaf":
            leaf = leaf_hash(b"not in the tree")
        elif how == "index":
            index = (index + 1 + where % max(size - 1, 1)) % size if size > 1 else index + 1
        elif how == "short" and proof:
            proof = proof[:-1]
        elif how == "long":
            proof = [*proof, bytes(32)]
        elif how == "size":
            claimed = size + 1 + where % 3
        expected = _plain_accepts(leaf, index, claimed, proof, root)
        assert _memo_accepts(memo, leaf, index, claimed, proof, root) == expected
        assert _memo_accepts(memo, leaf, index, claimed, proof, root) == expected  # and again, warmer
        if how == "ok":
            assert expected


@settings(max_examples=60, deadline=None)
@given(
    size=st.sampled_from([1, 2, 511, 512, 513, 700, 1024, 1500, 4097, 6000]),  # over 4096: both memo levels
    warm=st.lists(st.tuples(st.integers(min_value=0), st.booleans()), max_size=40),
    probes=st.lists(
        st.tuples(
            st.integers(min_value=0),
            st.sampled_from(["ok", "hash", "byte", "leaf", "index", "short", "long", "ragged", "size"]),
            st.integers(min_value=0),
        ),
        min_size=1, max_size=12,
    ),
)
def test_packed_paths_are_accepted_exactly_when_their_hashes_are(
    size: int, warm: list[tuple[int, bool]], probes: list[tuple[int, str, int]]
) -> None:
    digests, tree = _tree(size)
    root = tree.root
    memo = InclusionMemo()
    for w, packed in warm:  # remembered nodes from honest paths, in either form
        d = digests[w % size]
        path = tree.path(d)
        if packed:
            memo.verify_packed(leaf_hash(d), path.leaf_index, size, b"".join(path.hashes), root)
        else:
            memo.verify(leaf_hash(d), path.leaf_index, size, list(path.hashes), root)
    for pick, how, where in probes:
        d = digests[pick % size]
        path = tree.path(d)
        leaf, index, packed, claimed = leaf_hash(d), path.leaf_index, b"".join(path.hashes), size
        if how == "hash" and packed:
            at = 32 * (where % (len(packed) // 32))
            packed = packed[:at] + hashlib.sha256(packed[at : at + 32]).digest() + packed[at + 32 :]
        elif how == "byte" and packed:
            at = where % len(packed)
            packed = packed[:at] + bytes([packed[at] ^ 1]) + packed[at + 1 :]
        elif how == "leaf":
            leaf = leaf_hash(b"not in the tree")
        elif how == "index":
            index = (index + 1 + where % max(size - 1, 1)) % size if size > 1 else index + 1
        elif how == "short" and packed:
            packed = packed[:-32]
        elif how == "long":
            packed += bytes(32)
        elif how == "ragged":  # not a whole number of hashes
            packed = packed[: len(packed) - 1 - where % 31] if packed else b"\x00"
        elif how == "size":
            claimed = size + 1 + where % 3
        # What the same path, cut into 32-byte hashes, gets.
        expected = _plain_accepts(leaf, index, claimed, [packed[i : i + 32] for i in range(0, len(packed), 32)], root)
        assert _memo_accepts(memo, leaf, index, claimed, packed, root) == expected
        assert _memo_accepts(memo, leaf, index, claimed, packed, root) == expected  # and again, warmer
        if how == "ok":
            assert expected


@pytest.mark.parametrize("packed", [False, True], ids=["hashes", "packed"])
def test_a_tampered_upper_path_is_refused_after_the_memo_is_warm(packed: bool) -> None:
    digests, tree = _tree(1500)
    memo = InclusionMemo()

    def verify(leaf: bytes, index: int, hashes: Sequence[bytes], root: bytes) -> None:
        if packed:
            memo.verify_packed(leaf, index, 1500, b"".join(hashes), root)
        else:
            memo.verify(leaf, index, 1500, hashes, root)

    for d in digests[::3]:
        path = tree.path(d)
        verify(leaf_hash(d), path.leaf_index, path.hashes, tree.root)
    d = digests[1]
    path = tree.path(d)
    for position in range(len(path.hashes)):
        bad = list(path.hashes)
        bad[position] = bytes(32)
        with pytest.raises(VerificationError):
            verify(leaf_hash(d), path.leaf_index, bad, tree.root)
    with pytest.raises(VerificationError):
        verify(leaf_hash(d), path.leaf_index, path.hashes, bytes(32))
    verify(leaf_hash(d), path.leaf_index, path.hashes, tree.root)

@pytest.mark.parametrize("size", [257, 511, 513, 1500, 4097])
def test_leaves_at_the_right_edge_agree_cold_and_warm(size: int) -> None:
    # The leaves whose ancestor at the lowest remembered level is a partial subtree
    # (the right edge) take the general walk; those just left of them, the plain loop.
    digests, tree = _tree(size)
    low = (size - 1).bit_length() - 12 if (size - 1).bit_length() > 12 else (size - 1).bit_length() - 8
    edge = range(max(0, size - 2 * (1 << low) - 2), size)
    for warm in (False, True):
        memo = InclusionMemo()
        if warm:
            for i in range(0, size, 5):
                path = tree.path(digests[i])
                memo.verify(leaf_hash(digests[i]), path.leaf_index, size, path.hashes, tree.root)
        for i in edge:
            path = tree.path(digests[i])
            leaf = leaf_hash(digests[i])
            assert _memo_accepts(memo, leaf, i, size, list(path.hashes), tree.root)
            for k in range(len(path.hashes)):
                bad = [*path.hashes[:k], bytes(32), *path.hashes[k + 1 :]]
                assert not _memo_accepts(memo, leaf, i, size, bad, tree.root)
                assert not _plain_accepts(leaf, i, size, bad, tree.root)
