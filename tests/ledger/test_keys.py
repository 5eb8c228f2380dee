"""The vendor key registry: key events as log entries in a real SQLite log, replayed from it."""

from __future__ import annotations

import string
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from anchorlog.ledger.checkpoint import sign_checkpoint
from anchorlog.ledger.dsse import PAYLOAD_TYPE_INTOTO, ed25519_key_id, pae, sign_envelope
from anchorlog.ledger.entry import ZERO_HASH, EntryKind, LogEntry
from anchorlog.ledger.errors import InvalidInput, VerificationError
from anchorlog.ledger.keys import (
    KEY_EVENT_V1,
    NO_EXPIRY,
    KeyEvent,
    KeyEventType,
    KeyRegistry,
    check_vendor_id,
    key_event_envelope,
    open_key_event,
    parse_key_event,
    replay_registry,
)
from anchorlog.ledger.note import NoteSigner
from anchorlog.ledger.predicates import parse_time
from anchorlog.ledger.statement import Subject, build_statement, parse_statement
from anchorlog.ledger.store import LogStore, PendingEntry, dedup_key
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from hypothesis import given, settings
from hypothesis import strategies as st

ORIGIN = "keys.test.example/log"
T0 = datetime(2026, 1, 1, tzinfo=UTC)
fast = settings(deadline=None, max_examples=200)


def _public(key: Ed25519PrivateKey) -> bytes:
    return key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)


def _new_key() -> bytes:
    return _public(Ed25519PrivateKey.generate())


def created(vendor: str, name: str = "") -> KeyEvent:
    return KeyEvent(KeyEventType.VENDOR_CREATED, vendor, display_name=name)


def registered(
    vendor: str, public_key: bytes, not_before: datetime = T0, not_after: datetime = NO_EXPIRY
) -> KeyEvent:
    return KeyEvent(
        KeyEventType.KEY_REGISTERED, vendor, public_key=public_key,
        not_before=not_before, not_after=not_after,
    )


def rotated(vendor: str, old: bytes, new: bytes) -> KeyEvent:
    return KeyEvent(
        KeyEventType.KEY_ROTATED, vendor, public_key=new, old_key_id=ed25519_key_id(old),
        not_before=T0, not_after=NO_EXPIRY,
    )


def revoked(vendor: str, key: bytes, *, compromised: bool = False) -> KeyEvent:
    return KeyEvent(
        KeyEventType.KEY_REVOKED, vendor, key_id=ed25519_key_id(key), compromised=compromised,
        reason="test",
    )


class Log:
    """A real log file plus the registry the service keeps in memory beside it."""

    def __init__(self, path: Path) -> None:
        self.signer = NoteSigner.generate(ORIGIN)
        self.store = LogStore(path, origin=ORIGIN)
        self.registry = KeyRegistry()
        self.clock_ms = 1_700_000_000_000

    def _append(self, kind: EntryKind, envelope: bytes, submitter: str = "admin") -> int:
        self.clock_ms += 1000
        pending = PendingEntry(
            kind=kind, submitter=submitter, envelope=envelope,
            dedup_key=dedup_key(submitter, pae(PAYLOAD_TYPE_INTOTO, envelope)),
        )
        result = self.store.append(
            [pending], now_ms=self.clock_ms, sign=lambda cp: sign_checkpoint(cp, self.signer)
        )
        return result.entries[0].index

    def envelope(self, event: KeyEvent) -> bytes:
        return key_event_envelope(event, self.signer.sign, ed25519_key_id(self.signer.public_key))

    def key_event(self, event: KeyEvent) -> int:
        """What the service does: check, append durably, then apply."""
        self.registry.check(event)
        index = self._append(EntryKind.KEY_EVENT, self.envelope(event))
        self.registry.apply(event, index)
        return index

    def raw_key_event(self, envelope: bytes) -> int:
        """Append a key-event entry without any check (a misbehaving log)."""
        return self._append(EntryKind.KEY_EVENT, envelope)

    def attestation(self, n: int) -> int:
        return self._append(EntryKind.ATTESTATION, b'{"attestation":%d}' % n, submitter="acme")

    def key_entries(self) -> Iterator[tuple[int, bytes]]:
        indices = self.store.key_event_indices()
        stored = self.store.entries_by_index(indices)
        return ((i, stored[i].data) for i in indices)

    def replay(self) -> KeyRegistry:
        return replay_registry(self.key_entries(), self.signer.public_key)


@pytest.fixture
def log(tmp_path: Path) -> Iterator[Log]:
    opened = Log(tmp_path / "log.db")
    yield opened
    opened.store.close()


# --- replay from the log --------------------------------------------------------------


def test_vendor_lifecycle_replays_from_a_sqlite_log(log: Log, tmp_path: Path) -> None:
    key_a, key_b, key_c = _new_key(), _new_key(), _new_key()
    i_vendor = log.key_event(created("acme", "Acme Validation"))
    i_reg_a = log.key_event(registered("acme", key_a))
    i_att_1 = log.attestation(1)
    i_rot = log.key_event(rotated("acme", key_a, key_b))
    i_att_2 = log.attestation(2)
    i_rev_b = log.key_event(revoked("acme", key_b))
    i_reg_c = log.key_event(registered("acme", key_c, T0, T0 + timedelta(days=30)))
    i_comp_a = log.key_event(revoked("acme", key_a, compromised=True))
    assert [i_vendor, i_reg_a, i_att_1, i_rot, i_att_2, i_rev_b, i_reg_c, i_comp_a] == list(range(8))

    replayed = log.replay()
    assert replayed == log.registry  # the in-memory state is exactly what the log says
    assert set(replayed.vendors) == {"acme"}
    assert replayed.vendors["acme"].display_name == "Acme Validation"
    assert replayed.vendors["acme"].created_index == i_vendor
    a, b, c = (replayed.keys[ed25519_key_id(k)] for k in (key_a, key_b, key_c))
    # Rotation revoked A at the rotation; the later compromise keeps that index.
    assert (a.registered_index, a.revoked_index, a.compromised) == (i_reg_a, i_rot, True)
    assert (b.registered_index, b.revoked_index, b.compromised) == (i_rot, i_rev_b, False)
    assert (c.registered_index, c.revoked_index, c.compromised) == (i_reg_c, None, False)
    assert (c.not_before, c.not_after) == (T0, T0 + timedelta(days=30))
    assert a.public_key == key_a and a.not_after == NO_EXPIRY

    now = T0 + timedelta(days=1)
    assert a.valid_for(i_att_1, now) and not b.valid_for(i_att_1, now)
    assert b.valid_for(i_att_2, now) and not a.valid_for(i_att_2, now)

    # Reopening the file replays to the same state.
    log.store.close()
    reopened = LogStore(tmp_path / "log.db", origin=ORIGIN)
    try:
        indices = reopened.key_event_indices()
        assert indices == [i_vendor, i_reg_a, i_rot, i_rev_b, i_reg_c, i_comp_a]
        stored = reopened.entries_by_index(indices)
        again = replay_registry(((i, stored[i].data) for i in indices), log.signer.public_key)
        assert again == log.registry
    finally:
        reopened.close()
    log.store = LogStore(tmp_path / "log.db", origin=ORIGIN)


def test_replay_of_a_prefix_is_the_state_at_that_index(log: Log) -> None:
    key_a, key_b = _new_key(), _new_key()
    log.key_event(created("acme"))
    log.key_event(registered("acme", key_a))
    snapshot = log.replay()
    i_rot = log.key_event(rotated("acme", key_a, key_b))
    prefix = [(i, data) for i, data in log.key_entries() if i < i_rot]
    assert replay_registry(prefix, log.signer.public_key) == snapshot
    assert snapshot.keys[ed25519_key_id(key_a)].revoked_index is None
    assert ed25519_key_id(key_b) not in snapshot.keys


def test_key_event_signed_by_another_key_is_refused(log: Log) -> None:
    log.key_event(created("acme"))
    impostor = Ed25519PrivateKey.generate()
    event = registered("acme", _public(impostor))
    forged = sign_envelope(PAYLOAD_TYPE_INTOTO, event.statement_bytes(), impostor)
    with pytest.raises(VerificationError, match="no envelope signature verifies"):
        open_key_event(forged, log.signer.public_key)
    index = log.raw_key_event(forged)
    with pytest.raises(VerificationError, match=f"key event at entry {index} does not replay"):
        log.replay()


def test_replay_with_the_wrong_log_key_is_refused(log: Log) -> None:
    log.key_event(created("acme"))
    with pytest.raises(VerificationError, match="key event at entry 0 does not replay"):
        replay_registry(log.key_entries(), _new_key())


def test_a_logged_event_that_breaks_the_rules_does_not_replay(log: Log) -> None:
    log.key_event(created("acme"))
    # A log that signs a registration for a vendor that does not exist.
    index = log.raw_key_event(log.envelope(registered("nobody", _new_key())))
    with pytest.raises(VerificationError, match=f"entry {index} does not replay.*unknown vendor 'nobody'"):
        log.replay()


def test_replay_refuses_entries_that_are_not_key_events(log: Log) -> None:
    log.key_event(created("acme"))
    index = log.attestation(1)
    data = log.store.entry(index).data
    with pytest.raises(InvalidInput) as err:
        replay_registry([(index, data)], log.signer.public_key)
    assert (err.value.field, err.value.message) == (f"entry[{index}]", "is not a key event")


def test_replay_refuses_an_entry_under_another_index(log: Log) -> None:
    log.key_event(created("acme"))
    ((_, data),) = list(log.key_entries())
    with pytest.raises(InvalidInput) as err:
        replay_registry([(7, data)], log.signer.public_key)
    assert (err.value.field, err.value.message) == ("entry[7]", "its bytes say index 0")


def test_replay_refuses_undecodable_bytes(log: Log) -> None:
    with pytest.raises(InvalidInput) as err:
        replay_registry([(0, b"\x01\x03")], log.signer.public_key)
    assert err.value.field == "entry[0]"
    assert "truncated" in err.value.message


def test_key_event_envelope_must_be_in_toto(log: Log) -> None:
    event = created("acme")
    envelope = sign_envelope("text/plain", event.statement_bytes(), Ed25519PrivateKey.generate())
    with pytest.raises(InvalidInput) as err:
        open_key_event(envelope, log.signer.public_key)
    assert err.value.field == "envelope.payloadType"


# --- validity at an index and a time ----------------------------------------------------


def test_validity_at_index_boundaries(log: Log) -> None:
    key = _new_key()
    log.key_event(created("acme"))
    i_reg = log.key_event(registered("acme", key))
    log.attestation(1)
    i_rev = log.key_event(revoked("acme", key))
    vendor_key = log.replay().keys[ed25519_key_id(key)]
    now = T0 + timedelta(hours=1)
    assert not vendor_key.valid_for(i_reg - 1, now)
    assert not vendor_key.valid_for(i_reg, now)  # not by the entry that registers it
    assert vendor_key.valid_for(i_reg + 1, now)
    assert vendor_key.valid_for(i_rev, now)  # revocation applies from the next entry
    assert not vendor_key.valid_for(i_rev + 1, now)
    assert not vendor_key.valid_for(i_rev + 1000, now)


def test_validity_in_time_is_half_open(log: Log) -> None:
    key = _new_key()
    start, end = T0 + timedelta(days=10), T0 + timedelta(days=20)
    log.key_event(created("acme"))
    i_reg = log.key_event(registered("acme", key, start, end))
    vendor_key = log.replay().keys[ed25519_key_id(key)]
    after = i_reg + 1
    assert not vendor_key.valid_for(after, start - timedelta(seconds=1))
    assert vendor_key.valid_for(after, start)
    assert vendor_key.valid_for(after, end - timedelta(seconds=1))
    assert not vendor_key.valid_for(after, end)


def test_key_without_expiry_stays_valid_in_time(log: Log) -> None:
    key = _new_key()
    log.key_event(created("acme"))
    log.key_event(registered("acme", key))
    vendor_key = log.replay().keys[ed25519_key_id(key)]
    assert vendor_key.not_after == NO_EXPIRY
    assert vendor_key.valid_for(10, datetime(9000, 1, 1, tzinfo=UTC))


# --- rules of the registry ---------------------------------------------------------------


def _state(registry: KeyRegistry) -> tuple[dict[str, Any], dict[str, Any]]:
    return dict(registry.vendors), dict(registry.keys)


KEY_A, KEY_B, KEY_C, KEY_D = (_new_key() for _ in range(4))


def _base_registry() -> KeyRegistry:
    registry = KeyRegistry()
    for index, event in enumerate([
        created("acme"), created("beta"),
        registered("acme", KEY_A), registered("beta", KEY_B),
        registered("acme", KEY_C), revoked("acme", KEY_C),
        registered("acme", KEY_D), revoked("acme", KEY_D, compromised=True),
    ]):
        registry.apply(event, index)
    return registry


@pytest.mark.parametrize(
    ("event", "field", "message"),
    [
        (created("acme"), "vendor_id", "vendor 'acme' already exists"),
        (registered("nobody", _new_key()), "vendor_id", "unknown vendor 'nobody'"),
        (registered("acme", KEY_A), "public_key", "already registered"),
        (registered("acme", KEY_B), "public_key", "already registered"),  # beta's key
        (rotated("acme", KEY_B, _new_key()), "key_id", "vendor 'acme' has no key"),
        (rotated("acme", _new_key(), _new_key()), "key_id", "vendor 'acme' has no key"),
        (rotated("acme", KEY_C, _new_key()), "key_id", "already revoked"),
        (revoked("beta", KEY_A), "key_id", "vendor 'beta' has no key"),
        (revoked("acme", KEY_C), "key_id", "already revoked"),
        (revoked("acme", KEY_D), "key_id", "already revoked"),
        (revoked("acme", KEY_D, compromised=True), "key_id", "already revoked"),
        (revoked("nobody", KEY_A), "vendor_id", "unknown vendor"),
    ],
    ids=[
        "vendor-twice", "unknown-vendor", "key-twice", "key-of-other-vendor",
        "rotate-other-vendors-key", "rotate-unknown-key", "rotate-revoked-key",
        "revoke-other-vendors-key", "revoke-twice", "revoke-compromised-again",
        "compromise-twice", "revoke-for-unknown-vendor",
    ],
)
def test_refused_events_name_the_field_and_change_nothing(
    event: KeyEvent, field: str, message: str
) -> None:
    registry = _base_registry()
    before = _state(registry)
    with pytest.raises(InvalidInput) as err:
        registry.apply(event, 100)
    assert err.value.field == field
    assert message in err.value.message
    assert _state(registry) == before


def test_revoked_key_can_still_be_declared_compromised() -> None:
    registry = _base_registry()
    registry.apply(revoked("acme", KEY_C, compromised=True), 100)
    key = registry.keys[ed25519_key_id(KEY_C)]
    assert (key.revoked_index, key.compromised) == (5, True)


def test_rotation_revokes_the_old_key_and_registers_the_new() -> None:
    registry = _base_registry()
    new = _new_key()
    registry.apply(rotated("acme", KEY_A, new), 100)
    old_key, new_key = registry.keys[ed25519_key_id(KEY_A)], registry.keys[ed25519_key_id(new)]
    assert (old_key.revoked_index, old_key.compromised) == (100, False)
    assert (new_key.registered_index, new_key.revoked_index, new_key.vendor_id) == (100, None, "acme")


def test_candidate_keys_put_hinted_keys_first_and_only_the_vendors_own() -> None:
    registry = _base_registry()
    ids = [k.key_id for k in registry.candidate_keys("acme", [ed25519_key_id(KEY_D)])]
    assert ids == [ed25519_key_id(k) for k in (KEY_D, KEY_A, KEY_C)]
    # A hint naming another vendor's key adds nothing.
    beta_hint = [ed25519_key_id(KEY_B)]
    assert ed25519_key_id(KEY_B) not in [k.key_id for k in registry.candidate_keys("acme", beta_hint)]
    assert registry.candidate_keys("nobody", []) == []


# --- the key-event statement ----------------------------------------------------------------


@pytest.mark.parametrize(
    "event",
    [
        created("acme", "Acme Validation"),
        registered("acme", KEY_A, T0, T0 + timedelta(days=365)),
        registered("acme", KEY_A),
        rotated("acme", KEY_A, KEY_B),
        revoked("acme", KEY_A, compromised=True),
        revoked("acme", KEY_A),
    ],
    ids=["created", "registered", "registered-no-expiry", "rotated", "compromised", "revoked"],
)
def test_key_event_statement_round_trip(event: KeyEvent) -> None:
    statement = parse_statement(event.statement_bytes())
    assert statement.predicate_type == KEY_EVENT_V1
    assert parse_key_event(statement) == event


def _predicate(key_event: KeyEvent, changes: dict[str, Any]) -> dict[str, Any]:
    predicate = key_event.to_predicate()
    for name, value in changes.items():
        if value is _DROP:
            predicate.pop(name)
        else:
            predicate[name] = value
    return predicate


_DROP = object()


@pytest.mark.parametrize(
    ("event", "changes", "field"),
    [
        (created("acme"), {"event": "vendor-deleted"}, "predicate.event"),
        (created("acme"), {"event": ["vendor-created"]}, "predicate.event"),
        (created("acme"), {"extra": 1}, "predicate"),
        (created("acme"), {"vendorId": "Acme"}, "predicate.vendorId"),
        (created("acme"), {"displayName": 5}, "predicate.displayName"),
        (created("acme"), {"displayName": "x" * 201}, "predicate.displayName"),
        (registered("acme", KEY_A), {"publicKey": "not base64!"}, "predicate.publicKey"),
        (registered("acme", KEY_A), {"publicKey": "AAAA"}, "predicate.publicKey"),
        (registered("acme", KEY_A), {"keyId": ed25519_key_id(KEY_B)}, "predicate.keyId"),
        (registered("acme", KEY_A), {"notBefore": _DROP}, "predicate.notBefore"),
        (registered("acme", KEY_A), {"notBefore": "2026-01-01"}, "predicate.notBefore"),
        (registered("acme", KEY_A), {"notBefore": "2026-1-01T00:00:00Z"}, "predicate.notBefore"),
        (registered("acme", KEY_A), {"notBefore": "2026-01-01T00:00:00+00:00"}, "predicate.notBefore"),
        (registered("acme", KEY_A), {"notBefore": "2026-02-30T00:00:00Z"}, "predicate.notBefore"),
        (registered("acme", KEY_A), {"notAfter": "2025-12-31T23:59:59Z"}, "predicate.notAfter"),
        (registered("acme", KEY_A), {"notAfter": "2026-01-01T00:00:00Z"}, "predicate.notAfter"),
        (rotated("acme", KEY_A, KEY_B), {"oldKeyId": ""}, "predicate.oldKeyId"),
        (rotated("acme", KEY_A, KEY_B), {"oldKeyId": _DROP}, "predicate.oldKeyId"),
        (revoked("acme", KEY_A), {"compromised": "yes"}, "predicate.compromised"),
        (revoked("acme", KEY_A), {"compromised": _DROP}, "predicate.compromised"),
        (revoked("acme", KEY_A), {"keyId": ""}, "predicate.keyId"),
        (revoked("acme", KEY_A), {"reason": "x" * 1001}, "predicate.reason"),
        (revoked("acme", KEY_A), {"publicKey": "AAAA"}, "predicate"),
    ],
)
def test_malformed_key_events_name_the_field(
    event: KeyEvent, changes: dict[str, Any], field: str
) -> None:
    payload = build_statement([event.subject()], KEY_EVENT_V1, _predicate(event, changes))
    with pytest.raises(InvalidInput) as err:
        parse_key_event(parse_statement(payload))
    assert err.value.field == field


def test_key_event_subject_must_match_the_event() -> None:
    event = registered("acme", KEY_A)
    other = registered("acme", KEY_B).subject()
    payload = build_statement([other], KEY_EVENT_V1, event.to_predicate())
    with pytest.raises(InvalidInput) as err:
        parse_key_event(parse_statement(payload))
    assert err.value.field == "statement.subject"
    two = build_statement(
        [event.subject(), Subject("extra", b"\x01" * 32)], KEY_EVENT_V1, event.to_predicate()
    )
    with pytest.raises(InvalidInput, match="statement.subject"):
        parse_key_event(parse_statement(two))


def test_other_predicate_types_are_not_key_events() -> None:
    event = created("acme")
    payload = build_statement([event.subject()], "https://example.com/other", event.to_predicate())
    with pytest.raises(InvalidInput) as err:
        parse_key_event(parse_statement(payload))
    assert err.value.field == "statement.predicateType"


@pytest.mark.parametrize(
    "value", ["٢٠٢٦-01-01T00:00:00Z", "2026-01-01T00:00:00z", "2026-01-01 00:00:00Z", " 2026-01-01T00:00:00Z"]
)
def test_times_are_one_ascii_spelling_in_key_events_and_predicates(value: str) -> None:
    event = registered("acme", KEY_A)
    payload = build_statement([event.subject()], KEY_EVENT_V1, _predicate(event, {"notBefore": value}))
    with pytest.raises(InvalidInput) as err:
        parse_key_event(parse_statement(payload))
    assert err.value.field == "predicate.notBefore"
    with pytest.raises(InvalidInput) as err:
        parse_time(value, "predicate.performedAt")
    assert err.value.field == "predicate.performedAt"


# --- vendor IDs --------------------------------------------------------------------------


@pytest.mark.parametrize("vendor", ["a", "0", "acme", "acme-2.eu_x", "a" * 63, "9lives"])
def test_valid_vendor_ids(vendor: str) -> None:
    assert check_vendor_id(vendor) == vendor


@pytest.mark.parametrize(
    "vendor",
    ["", "-acme", ".acme", "_acme", "Acme", "acme corp", "a" * 64, "acme\n", "ácme", "acme/x",
     "acme\x00", None, 123, b"acme"],
)
def test_invalid_vendor_ids_name_the_field(vendor: object) -> None:
    with pytest.raises(InvalidInput) as err:
        check_vendor_id(vendor, "admin.vendor")  # type: ignore[arg-type]
    assert err.value.field == "admin.vendor"


_ID_CHARS = string.ascii_lowercase + string.digits


@given(st.text(alphabet=_ID_CHARS + "._-A\n é", max_size=70))
@fast
def test_vendor_id_rule_matches_its_definition(vendor: str) -> None:
    expected = (
        1 <= len(vendor) <= 63
        and vendor[0] in _ID_CHARS
        and all(c in _ID_CHARS + "._-" for c in vendor)
    )
    try:
        check_vendor_id(vendor)
    except InvalidInput:
        assert not expected
    else:
        assert expected


def test_key_event_for_invalid_vendor_does_not_parse() -> None:
    event = replace(created("acme"), vendor_id="Bad Vendor")
    payload = build_statement(
        [Subject("anchorlog:vendor/x", b"\x02" * 32)], KEY_EVENT_V1, event.to_predicate()
    )
    with pytest.raises(InvalidInput) as err:
        parse_key_event(parse_statement(payload))
    assert err.value.field == "predicate.vendorId"


def test_entry_encoding_of_key_events_keeps_the_envelope_verbatim(log: Log) -> None:
    envelope = log.envelope(created("acme"))
    index = log.raw_key_event(envelope)
    stored = log.store.entry(index)
    expected = LogEntry(index, EntryKind.KEY_EVENT, ZERO_HASH, log.clock_ms, "admin", envelope)
    assert stored.data == expected.encode()
    assert open_key_event(envelope, log.signer.public_key) == created("acme")


# --- times the log can record ---------------------------------------------------------------


def test_registration_without_expiry_equals_its_replay() -> None:
    event = KeyEvent(KeyEventType.KEY_REGISTERED, "acme", public_key=KEY_A, not_before=T0, not_after=None)
    assert event.not_after == NO_EXPIRY
    assert parse_key_event(parse_statement(event.statement_bytes())) == event


@pytest.mark.parametrize(
    ("changes", "field", "message"),
    [
        ({"not_before": datetime(2026, 1, 1)}, "not_before", "timezone-aware"),
        ({"not_after": datetime(2027, 1, 1)}, "not_after", "timezone-aware"),
        ({"not_before": T0 + timedelta(microseconds=1)}, "not_before", "whole second"),
        ({"not_after": T0 + timedelta(days=1, milliseconds=5)}, "not_after", "whole second"),
        ({"not_before": "2026-01-01T00:00:00Z"}, "not_before", "timezone-aware"),
    ],
)
def test_times_the_log_cannot_record_are_refused(
    changes: dict[str, Any], field: str, message: str
) -> None:
    fields: dict[str, Any] = {"public_key": KEY_A, "not_before": T0, "not_after": None, **changes}
    with pytest.raises(InvalidInput) as err:
        KeyEvent(KeyEventType.KEY_REGISTERED, "acme", **fields)
    assert err.value.field == field
    assert message in err.value.message


def test_in_memory_registry_equals_replay_for_every_recordable_time(log: Log) -> None:
    log.key_event(created("acme"))
    start = datetime(2026, 3, 4, 5, 6, 7, tzinfo=timezone(timedelta(hours=5, minutes=30)))
    log.key_event(registered("acme", _new_key(), start, start + timedelta(seconds=1)))
    assert log.replay() == log.registry


@settings(max_examples=100, deadline=None)
@given(st.integers(min_value=0, max_value=(1 << 63) - 1))
def test_integration_time_is_the_entry_time_or_the_end_of_time(ms: int) -> None:
    from datetime import UTC, datetime

    from anchorlog.ledger.entry import EntryKind, LogEntry
    from anchorlog.ledger.keys import integrated_at

    entry = LogEntry(index=0, kind=EntryKind.ATTESTATION, previous_hash=bytes(32), integrated_ms=ms,
                     submitter="acme", envelope=b"{}")
    try:
        expected = datetime.fromtimestamp(ms / 1000, UTC)
    except (ValueError, OverflowError, OSError):
        expected = NO_EXPIRY  # beyond the calendar: no key is valid then
    assert integrated_at(entry) == expected
    assert integrated_at(entry) == expected  # the remembered answer is the same
