"""Offline receipts and bundles made by the real server and client: they verify with the
log key alone, survive a JSON round trip, and no mutation of them ever verifies."""

from __future__ import annotations

import base64
import copy
import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from anchorlog.client.receipts import (
    BUNDLE_FORMAT,
    RECEIPT_FORMAT,
    Bundle,
    Receipt,
    load_document,
    save_receipt,
    verify_bundle,
    verify_document,
    verify_receipt,
)
from anchorlog.client.verify import CheckpointError
from anchorlog.ledger.errors import VerificationError
from anchorlog.ledger.note import NoteSigner
from anchorlog.ledger.status import Status
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.client.conftest import LedgerData

MUTATION_SETTINGS = settings(
    max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


def test_every_receipt_verifies_offline_after_a_json_round_trip(ledger_data: LedgerData, tmp_path: Path) -> None:
    for receipt in ledger_data.receipts:
        path = save_receipt(receipt, tmp_path)
        assert path.name == f"receipt-{receipt.index}.json"
        doc = load_document(path)
        assert doc["format"] == RECEIPT_FORMAT
        assert Receipt.from_json(doc) == replace(receipt, duplicate=False)
        assert verify_receipt(Receipt.from_json(doc), ledger_data.verifier).data == receipt.data
        report = verify_document(doc, ledger_data.verifier)
        assert report["valid"] and report["index"] == receipt.index


def test_bundle_verifies_offline_and_rederives_every_status(ledger_data: LedgerData) -> None:
    doc = json.loads(json.dumps(ledger_data.bundle_json()))
    assert doc["format"] == BUNDLE_FORMAT
    results = verify_bundle(Bundle.from_json(doc), ledger_data.verifier)
    assert {r.digest: r.status for r in results} == ledger_data.expected
    report = verify_document(doc, ledger_data.verifier)
    assert report["samples"] == len(ledger_data.expected)


def test_documents_against_another_log_key_are_refused(ledger_data: LedgerData) -> None:
    other = NoteSigner.generate(ledger_data.verifier.name).verifier()
    with pytest.raises(CheckpointError):
        verify_document(ledger_data.receipts[0].to_json(), other)
    with pytest.raises(CheckpointError):
        verify_document(ledger_data.bundle_json(), other)


def test_a_bundle_that_lies_about_a_status_is_refused(ledger_data: LedgerData) -> None:
    doc = ledger_data.bundle_json()
    for sample in doc["samples"]:
        if sample["status"] == "unknown":
            sample["status"] = "human-created"
    with pytest.raises(VerificationError, match="bundle states 'human-created' but the evidence gives 'unknown'"):
        verify_document(doc, ledger_data.verifier)


def test_a_bundle_missing_the_key_events_is_refused(ledger_data: LedgerData) -> None:
    doc = ledger_data.bundle_json()
    doc["entries"] = [e for e in doc["entries"] if e["index"] > 1]  # vendor creation and key registration
    with pytest.raises(VerificationError):
        verify_document(doc, ledger_data.verifier)


# ---------------------------------------------------------------- mutations


def _paths(doc: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every leaf value's path in a JSON document."""
    if isinstance(doc, dict):
        return [p for k, v in doc.items() for p in _paths(v, (*prefix, k))]
    if isinstance(doc, list):
        return [p for i, v in enumerate(doc) for p in _paths(v, (*prefix, i))]
    return [prefix]


def _get(doc: Any, path: tuple[Any, ...]) -> Any:
    for part in path:
        doc = doc[part]
    return doc


def _set(doc: Any, path: tuple[Any, ...], value: Any) -> None:
    _get(doc, path[:-1])[path[-1]] = value


def _mutated(value: Any, draw: st.DrawFn) -> Any:
    """A different value of the same kind: bytes behind base64 or hex, text, or numbers."""
    if isinstance(value, bool) or value is None:
        return draw(st.sampled_from([0, "x", [], {}]))
    if isinstance(value, int):
        return draw(st.integers(min_value=0, max_value=1 << 20).filter(lambda v: v != value))
    if isinstance(value, str):
        try:
            raw = base64.b64decode(value, validate=True)
            if base64.b64encode(raw).decode() != value or not raw:
                raise ValueError
        except ValueError:
            raw = b""
        if raw and len(value) != 64:
            at = draw(st.integers(0, len(raw) - 1))
            bit = draw(st.integers(0, 7))
            raw = raw[:at] + bytes([raw[at] ^ (1 << bit)]) + raw[at + 1 :]
            return base64.b64encode(raw).decode()
        if value:
            at = draw(st.integers(0, len(value) - 1))
            replacement = draw(st.characters(codec="utf-8").filter(lambda c: c != value[at]))
            return value[:at] + replacement + value[at + 1 :]
        return "x"
    raise AssertionError(f"unexpected leaf {value!r}")


@st.composite
def _mutation(draw: st.DrawFn, doc: dict[str, Any], skip: frozenset[str]) -> dict[str, Any]:
    out = copy.deepcopy(doc)
    path = draw(st.sampled_from([p for p in _paths(doc) if p[0] not in skip]))
    _set(out, path, _mutated(_get(doc, path), draw))
    return out


@MUTATION_SETTINGS
@given(data=st.data())
def test_mutated_receipts_never_verify(ledger_data: LedgerData, data: st.DataObject) -> None:
    receipt = data.draw(st.sampled_from(ledger_data.receipts))
    doc = data.draw(_mutation(receipt.to_json(), frozenset()))
    with pytest.raises(VerificationError):
        verify_document(doc, ledger_data.verifier)


@MUTATION_SETTINGS
@given(data=st.data())
def test_mutated_bundles_never_verify(ledger_data: LedgerData, data: st.DataObject) -> None:
    doc = ledger_data.bundle_json()
    mutated = data.draw(_mutation(doc, frozenset()))
    try:
        verify_document(mutated, ledger_data.verifier)
    except VerificationError:
        return
    # The one change that still verifies: another digest for a sample with no hits,
    # an equally true "nothing is known about it" (unknown, never human).
    changed = [(a, b) for a, b in zip(doc["samples"], mutated["samples"], strict=True) if a != b]
    assert {k: v for k, v in doc.items() if k != "samples"} == {
        k: v for k, v in mutated.items() if k != "samples"
    }
    assert len(changed) == 1, changed
    before, after = changed[0]
    assert before["hits"] == after["hits"] == [] and before["revocations"] == after["revocations"] == []
    assert before["status"] == after["status"] == "unknown" and before["digest"] != after["digest"]


@settings(max_examples=150, deadline=None)
@given(doc=st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=5),
    max_leaves=20,
), fmt=st.sampled_from([RECEIPT_FORMAT, BUNDLE_FORMAT, None]))
def test_arbitrary_json_is_refused_with_a_verification_error(
    ledger_data: LedgerData, doc: Any, fmt: str | None
) -> None:
    if fmt is not None and isinstance(doc, dict):
        doc["format"] = fmt
    with pytest.raises(VerificationError):
        verify_document(doc, ledger_data.verifier)


def test_statuses_named_in_bundles_are_the_documented_ones(ledger_data: LedgerData) -> None:
    stated = {s["status"] for s in ledger_data.bundle_json()["samples"]}
    assert stated <= {str(s) for s in Status}
    doc = ledger_data.bundle_json()
    doc["samples"][0]["status"] = "probably-human"
    with pytest.raises(VerificationError, match="unknown status"):
        verify_document(doc, ledger_data.verifier)
