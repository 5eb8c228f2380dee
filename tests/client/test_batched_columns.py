"""Batched columns of a provenance answer: their shape is checked before anything
is verified, and the answers come back in the query's order."""

from __future__ import annotations

from itertools import pairwise

import pytest
from anchorlog.client.ledger import _BatchedColumns
from anchorlog.ledger.errors import VerificationError
from anchorlog.v1 import anchorlog_pb2 as pb
from hypothesis import given, settings
from hypothesis import strategies as st


def _answer(asked: list[bytes], batched: list[int]) -> pb.ProvenanceResponse:
    response = pb.ProvenanceResponse()
    for position, digest in enumerate(asked):
        if position not in batched:
            response.digests.add(digest=digest)
    columns = response.batched
    columns.positions.extend(batched)
    columns.entry_indices.extend([7] * len(batched))
    columns.leaf_indices.extend(range(len(batched)))
    return response


@settings(max_examples=200, deadline=None)
@given(st.integers(min_value=1, max_value=60).flatmap(
    lambda n: st.tuples(st.just(n), st.sets(st.integers(min_value=0, max_value=n - 1)))
))
def test_the_merge_puts_every_answer_at_its_position(case: tuple[int, set[int]]) -> None:
    count, chosen = case
    asked = [bytes([i]) * 32 for i in range(count)]
    batched = sorted(chosen)
    columns = _BatchedColumns.read(_answer(asked, batched), asked, keep_claims=False)
    records = [("record", d) for i, d in enumerate(asked) if i not in chosen]
    samples = [("batched", asked[p]) for p in batched]
    merged = columns.merge(records, samples)  # type: ignore[arg-type]  # any values keep their order
    assert [d for _, d in merged] == asked
    assert {i for i, (kind, _) in enumerate(merged) if kind == "batched"} == chosen


@settings(max_examples=200, deadline=None)
@given(
    count=st.integers(min_value=2, max_value=40),
    positions=st.lists(st.integers(min_value=0, max_value=45), min_size=1, max_size=10),
)
def test_positions_out_of_order_repeated_or_beyond_the_query_are_refused(count: int, positions: list[int]) -> None:
    asked = [bytes([i]) * 32 for i in range(count)]
    response = _answer(asked, [])
    del response.digests[len(asked) - len(positions):]  # the counts agree: only the positions are wrong
    response.batched.positions.extend(positions)
    response.batched.entry_indices.extend([7] * len(positions))
    response.batched.leaf_indices.extend([0] * len(positions))
    valid = all(a < b for a, b in pairwise(positions)) and positions[-1] < count
    if valid:
        assert _BatchedColumns.read(response, asked, keep_claims=False).positions == positions
    else:
        with pytest.raises(VerificationError, match="positions are not ascending"):
            _BatchedColumns.read(response, asked, keep_claims=False)


def test_columns_are_refused_where_not_asked_for_and_must_agree_in_number() -> None:
    asked = [bytes([i]) * 32 for i in range(4)]
    with pytest.raises(VerificationError, match="did not ask for"):
        _BatchedColumns.read(_answer(asked, [1]), None, keep_claims=False)
    with pytest.raises(VerificationError, match="did not ask for"):
        _BatchedColumns.read(_answer(asked, [1]), asked, keep_claims=True)
    uneven = _answer(asked, [1, 2])
    del uneven.batched.entry_indices[-1]
    with pytest.raises(VerificationError, match="2 positions, 1 entries and 2 leaves differ in number"):
        _BatchedColumns.read(uneven, asked, keep_claims=False)
    extra_record = _answer(asked, [1, 2])
    extra_record.digests.add(digest=asked[1])
    with pytest.raises(VerificationError, match="asked about 4 digests, the server answered 5"):
        _BatchedColumns.read(extra_record, asked, keep_claims=False)
