"""The envelope-checking workers only accelerate: whatever they pass, the handler's own
``prepare`` accepts with the same result; whatever ``prepare`` refuses, they do not pass.

``check_order`` is pure, so most of this runs it in-process; one test runs it in a
real spawned worker, and tests/e2e/test_check_workers.py runs it inside the server.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import signal
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from anchorlog.client.vendor import (
    ClaimDetails,
    VendorKeyPair,
    attest_batch,
    attest_samples,
    revoke_entries,
)
from anchorlog.ledger.dsse import PAYLOAD_TYPE_INTOTO, pae, sign_envelope
from anchorlog.ledger.keys import KeyEvent, KeyEventType, KeyRegistry
from anchorlog.ledger.predicates import PROVENANCE_V1, Canonicalization, Claim
from anchorlog.ledger.statement import Subject, build_statement
from anchorlog.ledger.store import LogStore
from anchorlog.server.errors import Denied
from anchorlog.server.sequencer import SequencedItem
from anchorlog.server.submissions import SubmissionLimits, VendorSubmissions
from anchorlog.server.validation_pool import CheckPool, Passed, _cgroup_cpus, check_order
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import spawned_workers

NOW = datetime.now(UTC).replace(microsecond=0)
DETAILS = ClaimDetails(
    claim=Claim.HUMAN_VALIDATED, canonicalization=Canonicalization.RAW_BYTES, actor_id="reviewer-1", method="test",
)
LIMITS = SubmissionLimits(max_envelope_bytes=1 << 20, max_subjects=50, max_batch=1000)


def _digests(tag: str, count: int) -> list[bytes]:
    return [hashlib.sha256(f"{tag}/{i}".encode()).digest() for i in range(count)]


class Vendors:
    """acme with a valid key, an expired one and a revoked one; globex with one key."""

    def __init__(self) -> None:
        self.valid, self.expired, self.revoked, self.foreign, self.unknown = (
            VendorKeyPair.generate() for _ in range(5)
        )
        self.registry = KeyRegistry()
        events = [
            KeyEvent(KeyEventType.VENDOR_CREATED, "acme", display_name="Acme"),
            KeyEvent(KeyEventType.VENDOR_CREATED, "globex", display_name="Globex"),
            KeyEvent(KeyEventType.KEY_REGISTERED, "acme", public_key=self.valid.public_key,
                     not_before=NOW - timedelta(days=2)),
            KeyEvent(KeyEventType.KEY_REGISTERED, "acme", public_key=self.expired.public_key,
                     not_before=NOW - timedelta(days=2), not_after=NOW - timedelta(days=1)),
            KeyEvent(KeyEventType.KEY_REGISTERED, "acme", public_key=self.revoked.public_key,
                     not_before=NOW - timedelta(days=2)),
            KeyEvent(KeyEventType.KEY_REVOKED, "acme", key_id=self.revoked.key_id, reason="lost"),
            KeyEvent(KeyEventType.KEY_REGISTERED, "globex", public_key=self.foreign.public_key,
                     not_before=NOW - timedelta(days=2)),
        ]
        for index, event in enumerate(events):
            self.registry.apply(event, index)


@pytest.fixture(scope="module")
def vendors() -> Vendors:
    return Vendors()


@pytest.fixture
def store(tmp_path: Path) -> Iterator[LogStore]:
    opened = LogStore(tmp_path / "log.db", origin="test.example/pool")
    yield opened
    opened.close()


def _submissions(vendors: Vendors, store: LogStore) -> VendorSubmissions:
    return VendorSubmissions("acme", registry=vendors.registry, store=store, limits=LIMITS, now=NOW)


def _signed_with_hint(key: VendorKeyPair, hint: str, digests: list[bytes]) -> bytes:
    payload = build_statement([Subject(f"s/{d.hex()[:8]}", d) for d in digests], PROVENANCE_V1,
                              DETAILS.predicate().to_json())
    return sign_envelope(PAYLOAD_TYPE_INTOTO, payload, key.private_key, keyid=hint)


def _items(vendors: Vendors) -> dict[str, tuple[bytes, bytes]]:
    batch = attest_batch(vendors.valid, _digests("batch", 40), DETAILS)
    wrong_batch = bytearray(batch.batch_digests)
    wrong_batch[5] ^= 1
    future = ClaimDetails(**{**DETAILS.__dict__, "performed_at": NOW + timedelta(hours=1)})
    tampered = bytearray(attest_samples(vendors.valid, _digests("tampered", 1), DETAILS).envelope)
    tampered[tampered.index(b'"sig":"') + 10] ^= 0x01
    return {
        "one sample": (attest_samples(vendors.valid, _digests("one", 1), DETAILS).envelope, b""),
        "many subjects": (attest_samples(vendors.valid, _digests("many", 20), DETAILS).envelope, b""),
        "batch": (batch.envelope, batch.batch_digests),
        # The hint names another key of the vendor: that one is tried first and fails.
        "hint names the expired key": (_signed_with_hint(vendors.valid, vendors.expired.key_id,
                                                         _digests("hint", 2)), b""),
        "batch digests changed": (batch.envelope, bytes(wrong_batch)),
        "unregistered key": (attest_samples(vendors.unknown, _digests("unknown", 1), DETAILS).envelope, b""),
        "another vendor's key": (attest_samples(vendors.foreign, _digests("foreign", 1), DETAILS).envelope, b""),
        "expired key": (attest_samples(vendors.expired, _digests("expired", 1), DETAILS).envelope, b""),
        "revoked key": (attest_samples(vendors.revoked, _digests("revoked", 1), DETAILS).envelope, b""),
        "dated in the future": (attest_samples(vendors.valid, _digests("future", 1), future).envelope, b""),
        "revocation": (revoke_entries(vendors.valid, [(0, b"\x00" * 32)], "mistake").envelope, b""),
        "too many subjects": (attest_samples(vendors.valid, _digests("toomany", 51), DETAILS).envelope, b""),
        "signature changed": (bytes(tampered), b""),
        "not JSON": (b"{", b""),
    }


# Items the workers pass: every check they can make holds. The expired and revoked
# keys' signatures verify; the handler's registry checks then refuse them.
PASSED = {"one sample", "many subjects", "batch", "hint names the expired key", "expired key", "revoked key"}
ACCEPTED = PASSED - {"expired key", "revoked key"}


def _outcome(run: Callable[[], object]) -> object:
    """What the handler answers: the result, or the refusal's type and message."""
    try:
        return run()
    except Exception as exc:  # noqa: BLE001 - any refusal
        return (type(exc), str(exc))


def _with_workers(submissions: VendorSubmissions, envelope: bytes, batch_digests: bytes, verdict: Passed | None) -> object:
    if verdict is None:
        return _outcome(lambda: submissions.prepare(envelope, batch_digests))
    return _outcome(lambda: submissions.accept(envelope, batch_digests, verdict))


def test_the_handler_answers_the_same_with_the_workers_verdicts(vendors: Vendors, store: LogStore) -> None:
    submissions = _submissions(vendors, store)
    items = _items(vendors)
    verdicts = dict(zip(items, check_order(submissions.order(list(items.values()))), strict=True))
    assert {name for name, verdict in verdicts.items() if verdict is not None} == PASSED
    for name, (envelope, batch_digests) in items.items():
        alone = _outcome(lambda e=envelope, b=batch_digests: submissions.prepare(e, b))
        assert _with_workers(submissions, envelope, batch_digests, verdicts[name]) == alone, name
        assert (type(alone) is SequencedItem) == (name in ACCEPTED), (name, alone)


def test_accept_still_applies_the_registry_checks_made_after_the_workers(vendors: Vendors, store: LogStore) -> None:
    submissions = _submissions(vendors, store)
    envelope = attest_samples(vendors.valid, _digests("late", 1), DETAILS).envelope
    passed = check_order(submissions.order([(envelope, b"")]))[0]
    assert passed is not None
    # The key the worker named was revoked meanwhile: refused as prepare would.
    revoked = Passed(vendors.revoked.key_id, passed.dedup_key, passed.subject_digests)
    with pytest.raises(Denied, match="revoked"):
        submissions.accept(envelope, b"", revoked)
    # A key that is not the caller's: checked again from the start.
    foreign = Passed(vendors.foreign.key_id, passed.dedup_key, passed.subject_digests)
    assert submissions.accept(envelope, b"", foreign) == submissions.prepare(envelope, b"")


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(position=st.integers(min_value=0), value=st.integers(min_value=0, max_value=255))
def test_a_changed_byte_gets_the_same_answer_with_the_workers(
    vendors: Vendors, store: LogStore, position: int, value: int
) -> None:
    original = attest_samples(vendors.valid, _digests("mutate", 3), DETAILS).envelope
    changed = bytearray(original)
    changed[position % len(changed)] = value
    envelope = bytes(changed)
    submissions = _submissions(vendors, store)
    verdict = check_order(submissions.order([(envelope, b"")]))[0]
    alone = _outcome(lambda: submissions.prepare(envelope, b""))
    assert _with_workers(submissions, envelope, b"", verdict) == alone
    if type(alone) is not SequencedItem:
        assert verdict is None  # every check here is the worker's: a refusal is never passed


def test_a_spawned_worker_answers_as_the_pure_function(vendors: Vendors, store: LogStore) -> None:
    submissions = _submissions(vendors, store)
    order = submissions.order(list(_items(vendors).values()))
    pool = CheckPool(1)
    try:
        assert list(pool.check(order)) == check_order(order)
    finally:
        pool.close()


def test_a_pool_needs_a_worker() -> None:
    with pytest.raises(ValueError, match="at least one worker"):
        CheckPool(0)


def test_an_order_names_only_the_callers_public_keys(vendors: Vendors, store: LogStore) -> None:
    order = _submissions(vendors, store).order([(b"{}", b"")])
    assert {k.key_id for k in order.keys} == {vendors.valid.key_id, vendors.expired.key_id, vendors.revoked.key_id}
    assert all(len(k.public_key) == 32 for k in order.keys)


def _signed_twice(first: VendorKeyPair, second: VendorKeyPair, hints: tuple[str, str]) -> bytes:
    """One statement with two DSSE signatures, each key's, with the given keyid hints."""
    payload = build_statement([Subject("s/twice", hashlib.sha256(repr(hints).encode()).digest())],
                              PROVENANCE_V1, DETAILS.predicate().to_json())
    message = pae(PAYLOAD_TYPE_INTOTO, payload)
    return json.dumps({
        "payload": base64.b64encode(payload).decode(),
        "payloadType": PAYLOAD_TYPE_INTOTO,
        "signatures": [
            {"keyid": hint, "sig": base64.b64encode(key.private_key.sign(message)).decode()}
            for key, hint in zip((first, second), hints, strict=True)
        ],
    }).encode()


@pytest.mark.parametrize(
    ("hinted", "accepted"),
    [
        ("both", True),  # both hinted: registration order, the valid key (registered first) wins
        ("revoked", False),  # only the revoked key hinted: tried first, verifies, refused
        ("valid", True),
        ("neither", True),
    ],
)
def test_two_verifying_keys_are_tried_in_the_handlers_order(
    vendors: Vendors, store: LogStore, hinted: str, accepted: bool
) -> None:
    hints = (
        vendors.revoked.key_id if hinted in ("both", "revoked") else "",
        vendors.valid.key_id if hinted in ("both", "valid") else "",
    )
    envelope = _signed_twice(vendors.revoked, vendors.valid, hints)
    submissions = _submissions(vendors, store)
    verdict = check_order(submissions.order([(envelope, b"")]))[0]
    assert verdict is not None
    alone = _outcome(lambda: submissions.prepare(envelope, b""))
    assert _with_workers(submissions, envelope, b"", verdict) == alone
    assert (type(alone) is SequencedItem) == accepted, alone
    assert verdict.key_id == (vendors.valid.key_id if accepted else vendors.revoked.key_id)


def _spawned_children() -> list[int]:
    return spawned_workers(os.getpid())


def test_a_stuck_worker_is_given_up_and_ended(vendors: Vendors, store: LogStore, caplog: pytest.LogCaptureFixture) -> None:
    submissions = _submissions(vendors, store)
    order = submissions.order(list(_items(vendors).values()))
    before = set(_spawned_children())
    pool = CheckPool(1, timeout=3.0)
    try:
        assert list(pool.check(order)) == check_order(order)  # the worker is up
        (worker,) = set(_spawned_children()) - before
        os.kill(worker, signal.SIGSTOP)
        started = time.monotonic()
        assert list(pool.check(order)) == [None] * len(order.items)  # the handler checks them
        assert time.monotonic() - started >= 3.0
        assert "answered nothing for 3 s" in caplog.text
        assert worker not in _spawned_children()  # killed, not left stopped
        assert list(pool.check(order)) == [None] * len(order.items)  # and not asked again
    finally:
        pool.close()


def test_a_dead_worker_ends_the_others_at_once(vendors: Vendors, store: LogStore, caplog: pytest.LogCaptureFixture) -> None:
    order = _submissions(vendors, store).order(list(_items(vendors).values()))
    before = set(_spawned_children())
    pool = CheckPool(3)
    try:
        for _ in range(3):
            assert list(pool.check(order)) == check_order(order)
        workers = set(_spawned_children()) - before
        assert len(workers) == 3
        os.kill(workers.pop(), signal.SIGKILL)
        started = time.monotonic()
        while pool.check(order) != [None] * len(order.items):  # the pool may not have noticed yet
            assert time.monotonic() - started < 30
        assert time.monotonic() - started < 5  # not a grace period per survivor
        assert "envelope-checking workers died" in caplog.text
        assert not set(_spawned_children()) & workers
    finally:
        pool.close()


def test_workers_ignore_ctrl_c_sent_to_the_whole_group(vendors: Vendors, store: LogStore) -> None:
    order = _submissions(vendors, store).order(list(_items(vendors).values()))
    before = set(_spawned_children())
    pool = CheckPool(1)
    try:
        assert list(pool.check(order)) == check_order(order)
        (worker,) = set(_spawned_children()) - before
        os.kill(worker, signal.SIGINT)
        assert list(pool.check(order)) == check_order(order)  # still there, still answering
    finally:
        pool.close()
    assert worker not in _spawned_children()


@pytest.mark.parametrize(
    ("text", "cpus"),
    [("max 100000\n", None), ("150000 100000\n", 2), ("50000 100000", 1), ("200000 100000", 2),
     ("", None), ("lots 100000", None), ("100000 0", None)],
)
def test_a_cgroup_cpu_quota_is_read_rounded_up(tmp_path: Path, text: str, cpus: int | None) -> None:
    cpu_max = tmp_path / "cpu.max"
    cpu_max.write_text(text)
    assert _cgroup_cpus(cpu_max) == cpus
    assert _cgroup_cpus(tmp_path / "absent") is None
