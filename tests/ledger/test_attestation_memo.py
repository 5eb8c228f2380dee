"""check_attestation with a warm PredicateMemo gives check_attestation's own verdicts."""

from __future__ import annotations

import base64
import json
from typing import Any

import rfc8785
from anchorlog.ledger.attestation import check_attestation
from anchorlog.ledger.dsse import PAYLOAD_TYPE_INTOTO
from anchorlog.ledger.errors import InvalidInput
from anchorlog.ledger.predicates import PROVENANCE_V1, PredicateMemo
from hypothesis import given, settings
from hypothesis import strategies as st

_PREDICATE = {
    "claim": "human-created",
    "canonicalization": "utf8-nfc-v1",
    "digitalSourceType": "http://cv.iptc.org/newscodes/digitalsourcetype/digitalCreation",
    "actorId": "author-1",
    "method": "written by staff",
    "performedAt": "2026-11-01T09:30:00Z",
}


def _envelope(predicate: dict[str, Any]) -> bytes:
    payload = rfc8785.dumps({
        "_type": "https://in-toto.io/Statement/v1",
        "subject": [{"name": "sample/1", "digest": {"sha256": "ab" * 32}}],
        "predicateType": PROVENANCE_V1,
        "predicate": predicate,
    })
    return json.dumps({
        "payload": base64.b64encode(payload).decode(),
        "payloadType": PAYLOAD_TYPE_INTOTO,
        "signatures": [{"keyid": "k", "sig": base64.b64encode(b"s" * 64).decode()}],
    }, separators=(",", ":")).encode()


def _verdict(envelope: bytes, memo: PredicateMemo | None) -> object:
    try:
        return check_attestation(envelope, max_subjects=10, max_batch=10, predicates=memo)
    except InvalidInput as exc:
        return ("refused", str(exc))


@settings(max_examples=100, deadline=None)
@given(
    changes=st.lists(
        st.tuples(
            st.sampled_from([*_PREDICATE, "evidence", "generatorModel", "parentDigests", "extra"]),
            st.one_of(
                st.none(),
                st.sampled_from(["human-validated", "synthetic", "", "2026-13-01T00:00:00Z", "x" * 300, "a\nb"]),
                st.integers(-1, 1),
                st.lists(st.text(max_size=2), max_size=2),
            ),
        ),
        max_size=3,
    )
)
def test_warm_memo_gives_the_plain_verdicts(changes: list[tuple[str, Any]]) -> None:
    memo = PredicateMemo(capacity=4)
    assert _verdict(_envelope(_PREDICATE), memo) == _verdict(_envelope(_PREDICATE), None)
    doc: dict[str, Any] = dict(_PREDICATE)
    for name, value in changes:
        if value is None:
            doc.pop(name, None)
        else:
            doc[name] = value
        envelope = _envelope(doc)
        plain = _verdict(envelope, None)
        for _ in range(2):  # the second answer may come from the memo
            assert _verdict(envelope, memo) == plain
