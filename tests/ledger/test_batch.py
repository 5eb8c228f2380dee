"""Batch roots: RFC 6962 trees over sorted sample digests, and their audit paths.

The reference tree hash and audit path below are the RFC 6962 §2.1 recursions
written out here, independent of ``ledger.batch`` and ``ledger.merkle``.
"""

from __future__ import annotations

import hashlib
from functools import cache

import pytest
from anchorlog.ledger.batch import (
    BatchPath,
    BatchTree,
    batch_root,
    encode_batch_digests,
    parse_batch_digests,
    sort_digests,
    verify_batch_path,
)
from anchorlog.ledger.errors import InvalidInput, NotFound, VerificationError
from anchorlog.ledger.merkle import EMPTY_ROOT, leaf_hash, root_of
from hypothesis import assume, given, settings
from hypothesis import strategies as st

MAX_SIZE = 300
fast = settings(deadline=None, max_examples=150)


def _digests(size: int, salt: bytes = b"") -> list[bytes]:
    """``size`` distinct digests in batch order."""
    return sorted(hashlib.sha256(salt + b"sample-%d" % i).digest() for i in range(size))


class Reference:
    """RFC 6962 §2.1 MTH and PATH over leaf data ``digests``, memoized by range."""

    def __init__(self, digests: list[bytes]) -> None:
        self.digests = digests

        @cache
        def mth(lo: int, hi: int) -> bytes:
            n = hi - lo
            if n == 1:
                return hashlib.sha256(b"\x00" + digests[lo]).digest()
            k = 1 << ((n - 1).bit_length() - 1)  # largest power of two < n
            return hashlib.sha256(b"\x01" + mth(lo, lo + k) + mth(lo + k, hi)).digest()

        self.mth = mth

    def root(self) -> bytes:
        return self.mth(0, len(self.digests))

    def path(self, m: int) -> list[bytes]:
        def walk(m: int, lo: int, hi: int) -> list[bytes]:
            n = hi - lo
            if n == 1:
                return []
            k = 1 << ((n - 1).bit_length() - 1)
            if m < k:
                return [*walk(m, lo, lo + k), self.mth(lo + k, hi)]
            return [*walk(m - k, lo + k, hi), self.mth(lo, lo + k)]

        return walk(m, 0, len(self.digests))


def path_shape(m: int, n: int) -> tuple[str, ...]:
    """Which side each PATH(m, D[n]) sibling sits on, leaf upwards.

    The verifier's computation depends only on this shape, so a path proves the
    same root for another size exactly when that size gives the same shape.
    """
    if n == 1:
        return ()
    k = 1 << ((n - 1).bit_length() - 1)
    if m < k:
        return (*path_shape(m, k), "right")
    return (*path_shape(m - k, n - k), "left")


# --- roots and paths against the reference ---------------------------------------


def test_every_path_of_every_batch_size_matches_rfc6962_and_verifies() -> None:
    for size in range(1, MAX_SIZE + 1):
        digests = _digests(size)
        blob = encode_batch_digests(digests)
        reference = Reference(digests)
        tree = BatchTree(blob)
        root = reference.root()
        assert tree.size == size
        assert tree.root == root
        assert batch_root(blob) == root
        assert batch_root(digests) == root
        assert root_of([leaf_hash(d) for d in digests]) == root
        for index, digest in enumerate(digests):
            path = tree.path(digest)
            assert path == BatchPath(leaf_index=index, batch_size=size, hashes=tuple(reference.path(index)))
            assert tree.packed_hashes(index) == b"".join(path.hashes)
            verify_batch_path(digest, path, root)


@pytest.mark.parametrize("tail_nodes", [1, 2, 5, 64])
def test_packed_paths_are_the_paths_joined_whatever_the_kept_top(tail_nodes: int) -> None:
    for size in (1, 2, 3, 63, 64, 65, 300):
        digests = _digests(size)
        reference = Reference(digests)
        tree = BatchTree(encode_batch_digests(digests), tail_nodes=tail_nodes)
        for index in range(size):
            assert tree.packed_hashes(index) == b"".join(reference.path(index))
        for outside in (-1, size):
            with pytest.raises(InvalidInput, match="outside a batch"):
                tree.packed_hashes(outside)


def test_single_digest_batch_root_is_its_leaf_hash() -> None:
    (digest,) = _digests(1)
    assert batch_root([digest]) == hashlib.sha256(b"\x00" + digest).digest()
    assert BatchTree(digest).path(digest) == BatchPath(0, 1, ())


def test_empty_batch_root_is_the_empty_tree_hash() -> None:
    assert batch_root(b"") == EMPTY_ROOT == hashlib.sha256(b"").digest()


@st.composite
def batch_and_index(draw: st.DrawFn) -> tuple[list[bytes], int]:
    size = draw(st.integers(1, MAX_SIZE))
    salt = draw(st.binary(max_size=4))
    return _digests(size, salt), draw(st.integers(0, size - 1))


@given(batch_and_index(), st.data())
@fast
def test_tampered_path_hash_fails(case: tuple[list[bytes], int], data: st.DataObject) -> None:
    digests, index = case
    tree = BatchTree(encode_batch_digests(digests))
    path = tree.path(digests[index])
    assume(path.hashes)
    which = data.draw(st.integers(0, len(path.hashes) - 1))
    byte = data.draw(st.integers(0, 31))
    bit = data.draw(st.integers(0, 7))
    hashes = list(path.hashes)
    flipped = bytearray(hashes[which])
    flipped[byte] ^= 1 << bit
    hashes[which] = bytes(flipped)
    with pytest.raises(VerificationError):
        verify_batch_path(digests[index], BatchPath(index, path.batch_size, tuple(hashes)), tree.root)


@given(batch_and_index(), st.data())
@fast
def test_path_with_wrong_index_fails(case: tuple[list[bytes], int], data: st.DataObject) -> None:
    digests, index = case
    tree = BatchTree(encode_batch_digests(digests))
    path = tree.path(digests[index])
    wrong = data.draw(st.integers(-2, len(digests) + 2).filter(lambda i: i != index))
    with pytest.raises(VerificationError):
        verify_batch_path(digests[index], BatchPath(wrong, path.batch_size, path.hashes), tree.root)


@given(batch_and_index(), st.data())
@fast
def test_path_with_wrong_size_fails_unless_the_shape_is_identical(
    case: tuple[list[bytes], int], data: st.DataObject
) -> None:
    digests, index = case
    size = len(digests)
    tree = BatchTree(encode_batch_digests(digests))
    path = tree.path(digests[index])
    wrong = data.draw(st.integers(0, 2 * MAX_SIZE).filter(lambda n: n != size))
    forged = BatchPath(index, wrong, path.hashes)
    if index < wrong and path_shape(index, wrong) == path_shape(index, size):
        # RFC 9162 inclusion binds the size only through the root; the signed
        # predicate's batch.size is what pins it (the client checks both).
        verify_batch_path(digests[index], forged, tree.root)
    else:
        with pytest.raises(VerificationError):
            verify_batch_path(digests[index], forged, tree.root)


def test_wrong_size_with_same_shape_is_the_documented_exception() -> None:
    # Leaf 0 of 3 and leaf 0 of 4 share a path shape: size alone is not bound.
    assert path_shape(0, 3) == path_shape(0, 4)
    assert path_shape(2, 3) != path_shape(2, 4)


@given(batch_and_index())
@fast
def test_truncated_or_extended_path_fails(case: tuple[list[bytes], int]) -> None:
    digests, index = case
    tree = BatchTree(encode_batch_digests(digests))
    path = tree.path(digests[index])
    longer = BatchPath(index, path.batch_size, (*path.hashes, bytes(32)))
    with pytest.raises(VerificationError, match="hashes, expected"):
        verify_batch_path(digests[index], longer, tree.root)
    if path.hashes:
        shorter = BatchPath(index, path.batch_size, path.hashes[:-1])
        with pytest.raises(VerificationError, match="hashes, expected"):
            verify_batch_path(digests[index], shorter, tree.root)


@given(batch_and_index())
@fast
def test_path_for_another_digest_or_root_fails(case: tuple[list[bytes], int]) -> None:
    digests, index = case
    tree = BatchTree(encode_batch_digests(digests))
    path = tree.path(digests[index])
    outsider = hashlib.sha256(b"not in any batch").digest()
    with pytest.raises(VerificationError):
        verify_batch_path(outsider, path, tree.root)
    other_root = batch_root(_digests(len(digests), b"other"))
    with pytest.raises(VerificationError):
        verify_batch_path(digests[index], path, other_root)


@pytest.mark.parametrize("digest", [b"", b"\x00" * 31, b"\x00" * 33, "00" * 16, None])
def test_verify_rejects_a_sample_digest_that_is_not_32_bytes(digest: object) -> None:
    (only,) = _digests(1)
    with pytest.raises(VerificationError, match="32 bytes"):
        verify_batch_path(digest, BatchPath(0, 1, ()), batch_root([only]))  # type: ignore[arg-type]


def test_path_of_a_digest_not_in_the_batch_is_not_found() -> None:
    digests = _digests(10)
    tree = BatchTree(encode_batch_digests(digests))
    for probe in (b"\x00" * 32, b"\xff" * 32, hashlib.sha256(b"absent").digest()):
        with pytest.raises(NotFound, match=probe.hex()):
            tree.path(probe)
    assert [tree.position(d) for d in digests] == list(range(10))


@pytest.mark.parametrize("blob", [b"", b"\x01" * 31, b"\x01" * 33])
def test_batch_tree_needs_whole_digests(blob: bytes) -> None:
    with pytest.raises(InvalidInput) as err:
        BatchTree(blob)
    assert err.value.field == "batch_digests"


# --- sort_digests ----------------------------------------------------------------


@given(st.lists(st.binary(min_size=32, max_size=32), min_size=1, max_size=40))
@fast
def test_sorted_batch_is_ascending_deduplicated_and_parses(digests: list[bytes]) -> None:
    ordered = sort_digests(digests)
    assert ordered == sorted(set(digests))
    blob = encode_batch_digests(ordered)
    assert parse_batch_digests(blob, max_count=len(ordered)) == blob
    # The root is a function of the set of samples, whatever the input order.
    assert batch_root(sort_digests(reversed(digests))) == batch_root(ordered)


def test_sort_digests_names_the_bad_digest() -> None:
    good = _digests(3)
    with pytest.raises(InvalidInput) as err:
        sort_digests([good[0], good[1], b"\x00" * 31, good[2]])
    assert err.value.field == "digests[2]"
    with pytest.raises(InvalidInput) as err:
        sort_digests([good[0], "00" * 32])  # type: ignore[list-item]
    assert err.value.field == "digests[1]"
    with pytest.raises(InvalidInput, match="at least one digest"):
        sort_digests([])


# --- parse_batch_digests -----------------------------------------------------------


def _field_and_message(blob: object, max_count: int = 1000) -> tuple[str, str]:
    with pytest.raises(InvalidInput) as err:
        parse_batch_digests(blob, max_count=max_count)  # type: ignore[arg-type]
    return err.value.field, err.value.message


@pytest.mark.parametrize("count", [1, 2, 3, 17, 256])
def test_sorted_batches_parse_unchanged(count: int) -> None:
    blob = encode_batch_digests(_digests(count))
    assert parse_batch_digests(blob, max_count=count) == blob


def test_two_digest_batch_in_either_order() -> None:
    low, high = b"\x00" * 31 + b"\x01", b"\x00" * 31 + b"\x02"
    assert parse_batch_digests(low + high, max_count=2) == low + high
    assert _field_and_message(high + low) == (
        "batch_digests[1]", "digest is out of order after the previous one; sort and dedupe"
    )
    assert _field_and_message(low + low) == (
        "batch_digests[1]", "digest repeats the previous one; sort and dedupe"
    )


def test_order_is_unsigned_bytewise() -> None:
    # 0x7f < 0x80 as unsigned bytes; a signed comparison would reverse them.
    a, b = b"\x7f" + b"\xff" * 31, b"\x80" + b"\x00" * 31
    assert parse_batch_digests(a + b, max_count=2) == a + b
    assert _field_and_message(b + a)[0] == "batch_digests[1]"


@given(st.lists(st.binary(min_size=32, max_size=32), min_size=2, max_size=30))
@fast
def test_parse_accepts_exactly_strictly_ascending_batches(digests: list[bytes]) -> None:
    blob = b"".join(digests)
    first_bad = next((i for i in range(1, len(digests)) if digests[i - 1] >= digests[i]), None)
    if first_bad is None:
        assert parse_batch_digests(blob, max_count=len(digests)) == blob
        return
    field, message = _field_and_message(blob)
    assert field == f"batch_digests[{first_bad}]"
    expected = "repeats" if digests[first_bad - 1] == digests[first_bad] else "out of order"
    assert expected in message


def test_unsorted_deep_in_a_long_batch_names_the_position() -> None:
    digests = _digests(50)
    digests[30], digests[31] = digests[31], digests[30]
    assert _field_and_message(b"".join(digests))[0] == "batch_digests[31]"
    digests = _digests(50)
    digests[40] = digests[39]
    field, message = _field_and_message(b"".join(digests))
    assert (field, "repeats" in message) == ("batch_digests[40]", True)


@pytest.mark.parametrize("length", [1, 31, 33, 63, 65, 32 * 5 + 7])
def test_wrong_length_is_refused(length: int) -> None:
    assert _field_and_message(b"\x01" * length) == (
        "batch_digests", f"length {length} is not a multiple of 32"
    )


def test_empty_batch_is_refused() -> None:
    assert _field_and_message(b"") == ("batch_digests", "is empty")


def test_over_limit_is_refused_before_anything_else() -> None:
    blob = encode_batch_digests(_digests(11))
    assert parse_batch_digests(blob, max_count=11) == blob
    assert _field_and_message(blob, max_count=10) == (
        "batch_digests", "11 digests exceeds the limit of 10"
    )
    # Unsorted but over the limit: the limit is reported, not the order.
    assert _field_and_message(blob[::-1], max_count=10)[1] == "11 digests exceeds the limit of 10"


@pytest.mark.parametrize("blob", [bytearray(32), memoryview(bytes(32)), "00" * 32, None])
def test_non_bytes_input_is_refused(blob: object) -> None:
    field, message = _field_and_message(blob)
    assert field == "batch_digests"
    assert message.startswith("must be bytes, got ")


# --- the server's lookup structure: kept tails and the sparse position index -----


@fast
@given(size=st.integers(1, 200), tail_nodes=st.integers(1, 70), salt=st.binary(max_size=4))
def test_paths_with_kept_tails_match_rfc6962(size: int, tail_nodes: int, salt: bytes) -> None:
    digests = _digests(size, salt)
    reference = Reference(digests)
    tree = BatchTree(encode_batch_digests(digests), tail_nodes=tail_nodes)
    assert tree.root == reference.root()
    for index, digest in enumerate(digests):
        assert tree.position(digest) == index
        assert tree.hashes(index) == reference.path(index)
        assert tree.path(digest) == BatchPath(index, size, tuple(reference.path(index)))


def test_a_large_batch_keeps_only_its_top_and_answers_every_path() -> None:
    digests = _digests(5000)
    reference = Reference(digests)
    tree = BatchTree(encode_batch_digests(digests))  # 5000 leaves: the tails start one level up
    for index in (0, 1, 2, 2499, 2500, 4095, 4096, 4998, 4999):
        assert tree.hashes(index) == reference.path(index)
    with pytest.raises(InvalidInput):
        tree.hashes(5000)
    with pytest.raises(InvalidInput):
        tree.hashes(-1)


def test_position_ignores_a_match_that_straddles_two_digests() -> None:
    # ``probe`` is spelled by the end of ``a`` and the start of ``b``, neighbours
    # (both below the probe) in the middle of a block of 16.
    probe = b"\x85" * 16 + b"\x82" * 16
    a = b"\x80" * 16 + probe[:16]
    b = probe[16:] + b"\x00" * 16
    low = [bytes([i]) * 32 for i in range(1, 4)]
    high = [bytes([i]) * 32 for i in range(0x90, 0xA4)]
    digests = [*low, a, b, *high]
    blob = encode_batch_digests(digests)
    assert blob.find(probe) == 3 * 32 + 16
    with pytest.raises(NotFound):
        BatchTree(blob).position(probe)
    # With the probe itself in the batch, the straddle comes first in its block.
    digests = [*low, a, b, probe, *high]
    blob = encode_batch_digests(digests)
    assert blob.find(probe) == 3 * 32 + 16
    tree = BatchTree(blob)
    assert [tree.position(d) for d in digests] == list(range(len(digests)))


@pytest.mark.parametrize("probe", [b"", b"\x00" * 31, b"\xff" * 33])
def test_position_of_a_wrong_length_digest_is_not_found(probe: bytes) -> None:
    tree = BatchTree(encode_batch_digests(_digests(40)))
    with pytest.raises(NotFound):
        tree.position(probe)
