"""Malformed requests against a real server: each gets a precise status and changes nothing.

Every case names the status code it must get, a phrase the message must contain,
and for INVALID_ARGUMENT the google.rpc.BadRequest field violation (read with
grpcio-status). The log head (size and root) is compared before and after each.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest
from anchorlog.ledger.batch import batch_root
from anchorlog.ledger.merkle import leaf_hash
from anchorlog.v1 import anchorlog_pb2 as pb

from tests.conftest import start_server
from tests.e2e.support import (
    Failure,
    Key,
    World,
    attest,
    attest_batch,
    auth,
    envelope,
    failure_of_item,
    failure_of_rpc,
    fresh_digests,
    populate,
    predicate,
    revoke,
    statement,
    subject,
)

MAX_MESSAGE = 1 << 20
MAX_ENVELOPE = 64 << 10
MAX_ITEMS = 50
MAX_SUBJECTS = 20

INVALID = grpc.StatusCode.INVALID_ARGUMENT
DENIED = grpc.StatusCode.PERMISSION_DENIED
UNAUTH = grpc.StatusCode.UNAUTHENTICATED
EXHAUSTED = grpc.StatusCode.RESOURCE_EXHAUSTED
NOT_FOUND = grpc.StatusCode.NOT_FOUND
EXISTS = grpc.StatusCode.ALREADY_EXISTS


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    server = start_server(
        Path(tmp_path_factory.mktemp("bad")) / "data",
        "--auth-failures-per-minute", "100000",
        "--max-message-bytes", str(MAX_MESSAGE),
        "--max-envelope-bytes", str(MAX_ENVELOPE),
        "--max-items-per-request", str(MAX_ITEMS),
        "--max-subjects", str(MAX_SUBJECTS),
    )
    try:
        w = populate(server)
        plain, batch = w.submit_ok(
            "acme", attest(w.keys["acme"], fresh_digests("bad", 2)),
            attest_batch(w.keys["acme"], fresh_digests("bad-batch", 4)),
        )
        w.indices["attestation"] = plain.entry.entry.index
        w.indices["batch"] = batch.entry.entry.index
        w.indices["key-event"] = 0  # CreateVendor acme
        yield w
        w.channel.close()
    finally:
        server.stop()


def _rpc(call: Callable[[], object]) -> Failure:
    try:
        call()
    except grpc.RpcError as error:
        return failure_of_rpc(error)
    pytest.fail("the call succeeded")


def _submit_one(w: World, item: pb.SubmitItem, role: str = "acme") -> Failure:
    response = w.stub.Submit(pb.SubmitRequest(items=[item]), metadata=w.md(role))
    assert len(response.results) == 1 and response.results[0].position == 0
    return failure_of_item(response.results[0])


def _raw(w: World, doc: object) -> Failure:
    """Submit an envelope given as a JSON document (or raw bytes)."""
    data = doc if isinstance(doc, bytes) else json.dumps(doc).encode()
    return _submit_one(w, pb.SubmitItem(envelope=data))


def _signed(w: World, payload: bytes, **kw: object) -> Failure:
    return _submit_one(w, pb.SubmitItem(envelope=envelope(payload, w.keys["acme"], **kw)))  # type: ignore[arg-type]


def _with_subjects(w: World, subjects: list[dict[str, object]]) -> Failure:
    return _signed(w, statement(subjects))


def _good_envelope(w: World) -> dict[str, object]:
    payload = statement([subject(d) for d in fresh_digests("good", 1)])
    return json.loads(envelope(payload, w.keys["acme"]))


def _mutated(w: World, **changes: object) -> Failure:
    doc = _good_envelope(w)
    doc.update(changes)
    return _raw(w, doc)


def _bad_sig(w: World, sig: str) -> Failure:
    doc = _good_envelope(w)
    doc["signatures"] = [{"keyid": "", "sig": sig}]
    return _raw(w, doc)


def _digest_hex(value: str, algorithm: str = "sha256") -> list[dict[str, object]]:
    return [{"name": "sample", "digest": {algorithm: value}}]


def _batch(w: World, digests: bytes, size: int, root: bytes | None = None) -> Failure:
    """A batch-root statement of ``size`` signing ``root`` (default: the true root of ``digests``)."""
    signed_root = root if root is not None else batch_root(digests)
    payload = statement([subject(signed_root, "anchorlog:batch-root")],
                        predicate(batch={"size": size, "rule": "rfc6962-sorted-sha256-v1"}))
    return _submit_one(w, pb.SubmitItem(envelope=envelope(payload, w.keys["acme"]),
                                        batch_digests=digests))


def _sorted_digests(count: int) -> bytes:
    return b"".join(sorted(fresh_digests("batch", count)))


def _entry_leaf(w: World, index: int) -> bytes:
    entry = w.stub.GetEntries(pb.GetEntriesRequest(start=index, end=index + 1), metadata=w.admin)
    return leaf_hash(entry.entries[0].data)


def _revoke(w: World, index: int, leaf: bytes | None = None, role: str = "acme",
            batch_digests: bytes = b"") -> Failure:
    item = revoke(w.keys[role], [(index, leaf if leaf is not None else _entry_leaf(w, index))])
    item.batch_digests = batch_digests
    return _submit_one(w, item, role)


def _unregistered_key(w: World) -> Failure:
    return _submit_one(w, attest(Key.generate(), fresh_digests("stranger", 1)))


def _too_big_message(w: World) -> Failure:
    item = pb.SubmitItem(envelope=b"x" * (MAX_MESSAGE + 1024))
    return _rpc(lambda: w.stub.Submit(pb.SubmitRequest(items=[item]), metadata=w.md("acme")))


def _stream_bad_digest(w: World) -> Failure:
    query = pb.ProvenanceQuery(digests=[b"\x01" * 32, b"\x02" * 31])
    return _rpc(lambda: list(w.stub.StreamProvenance(iter([query]), metadata=w.md("reader"))))


def _stream_too_many(w: World) -> Failure:
    query = pb.ProvenanceQuery(digests=[bytes([i % 256]) * 32 for i in range(10_001)])
    return _rpc(lambda: list(w.stub.StreamProvenance(iter([query]), metadata=w.md("reader"))))


def _submit_stream_trusting_beyond(w: World) -> Failure:
    """A valid first message whose trusted size is beyond the log: the stream is refused, nothing logged."""
    item = pb.SubmitItem(envelope=envelope(statement([subject(d) for d in fresh_digests("beyond", 1)]),
                                           w.keys["acme"]))
    request = pb.SubmitRequest(items=[item], trusted_size=1 << 40)
    return _rpc(lambda: list(w.stub.SubmitStream(iter([request]), metadata=w.md("acme"))))


def _with_metadata(w: World, metadata: list[tuple[str, str]]) -> Failure:
    return _rpc(lambda: w.stub.GetCheckpoint(pb.GetCheckpointRequest(), metadata=metadata))


@dataclass(frozen=True)
class Case:
    run: Callable[[World], Failure]
    code: grpc.StatusCode
    says: str
    field: str | None = None


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


H = "ab" * 32
CASES: dict[str, Case] = {
    # --- authentication and roles
    "no-token": Case(lambda w: _with_metadata(w, []), UNAUTH, "missing authorization"),
    "unknown-token": Case(lambda w: _with_metadata(w, auth("alt_" + "x" * 43)), UNAUTH,
                          "unknown or revoked token"),
    "basic-scheme": Case(lambda w: _with_metadata(w, [("authorization", "Basic dXNlcjpwYXNz")]),
                         UNAUTH, "'Bearer <token>'"),
    "bearer-without-token": Case(lambda w: _with_metadata(w, [("authorization", "Bearer ")]),
                                 UNAUTH, "'Bearer <token>'"),
    "reader-submits": Case(
        lambda w: _rpc(lambda: w.stub.Submit(pb.SubmitRequest(items=[attest(w.keys["acme"], [b"\1" * 32])]),
                                             metadata=w.md("reader"))),
        DENIED, "role reader may not call Submit"),
    "vendor-creates-vendor": Case(
        lambda w: _rpc(lambda: w.stub.CreateVendor(pb.CreateVendorRequest(vendor_id="sneaky"),
                                                   metadata=w.md("acme"))),
        DENIED, "role vendor may not call CreateVendor"),
    "reader-reads-entries": Case(
        lambda w: _rpc(lambda: w.stub.GetEntries(pb.GetEntriesRequest(start=0, end=1), metadata=w.md("reader"))),
        DENIED, "role reader may not call GetEntries"),
    # --- envelope framing
    "envelope-not-json": Case(lambda w: _raw(w, b"{not json"), INVALID, "not valid JSON", "envelope"),
    "envelope-not-utf8": Case(lambda w: _raw(w, b'{"payload": "\xff\xfe"}'), INVALID, "not valid UTF-8",
                              "envelope"),
    "envelope-is-array": Case(lambda w: _raw(w, [1, 2]), INVALID, "must be a JSON object", "envelope"),
    "envelope-empty": Case(lambda w: _raw(w, b""), INVALID, "not valid JSON", "envelope"),
    "envelope-unknown-field": Case(lambda w: _mutated(w, extra=1), INVALID, "unknown fields ['extra']",
                                   "envelope"),
    "envelope-duplicate-key": Case(
        lambda w: _raw(w, b'{"payload":"e30=","payload":"e30=","payloadType":"x","signatures":[]}'),
        INVALID, "duplicate JSON key 'payload'", "envelope"),
    "payload-bad-base64": Case(lambda w: _mutated(w, payload="not*base64!"), INVALID,
                               "not valid base64", "envelope.payload"),
    "payload-missing": Case(lambda w: _raw(w, {"payloadType": "x", "signatures": []}), INVALID,
                            "is missing", "envelope.payload"),
    "signature-bad-base64": Case(lambda w: _bad_sig(w, "%%%%"), INVALID, "not valid base64",
                                 "envelope.signatures[0].sig"),
    "signatures-empty": Case(lambda w: _mutated(w, signatures=[]), INVALID, "non-empty list",
                             "envelope.signatures"),
    "signature-forged": Case(lambda w: _bad_sig(w, _b64(b"\0" * 64)), INVALID,
                             "no signature verifies with a key registered to vendor 'acme'",
                             "envelope.signatures"),
    "payload-type-wrong": Case(
        lambda w: _signed(w, statement([subject(b"\3" * 32)]), payload_type="text/plain"),
        INVALID, "must be 'application/vnd.in-toto+json'", "envelope.payloadType"),
    "oversized-envelope": Case(
        lambda w: _raw(w, b" " * (MAX_ENVELOPE + 1)), INVALID, f"exceeds the limit of {MAX_ENVELOPE}",
        "envelope"),
    # --- statement
    "statement-not-json": Case(lambda w: _signed(w, b"\x00garbage"), INVALID, "not valid JSON", "statement"),
    "statement-wrong-type": Case(
        lambda w: _signed(w, statement([subject(b"\4" * 32)], type_="https://in-toto.io/Statement/v0.1")),
        INVALID, "must be 'https://in-toto.io/Statement/v1'", "statement._type"),
    "unknown-predicate-type": Case(
        lambda w: _signed(w, statement([subject(b"\5" * 32)], predicate_type="https://example.com/other/v1")),
        INVALID, "unknown predicate type", "statement.predicateType"),
    "subjects-empty": Case(lambda w: _with_subjects(w, []), INVALID, "at least one subject",
                           "statement.subject"),
    "subjects-duplicate": Case(lambda w: _with_subjects(w, [subject(b"\6" * 32), subject(b"\6" * 32, "again")]),
                               INVALID, "duplicate digest", "statement.subject[1]"),
    "too-many-subjects": Case(
        lambda w: _with_subjects(w, [subject(d) for d in fresh_digests("many", MAX_SUBJECTS + 1)]),
        INVALID, f"exceeds the limit of {MAX_SUBJECTS}", "statement.subject"),
    "digest-too-short": Case(lambda w: _with_subjects(w, _digest_hex(H[:63])), INVALID,
                             "must be 64 hex characters", "statement.subject[0].digest.sha256"),
    "digest-too-long": Case(lambda w: _with_subjects(w, _digest_hex(H + "00")), INVALID,
                            "must be 64 hex characters", "statement.subject[0].digest.sha256"),
    "digest-upper-case": Case(lambda w: _with_subjects(w, _digest_hex(H.upper())), INVALID,
                              "lower-case hex", "statement.subject[0].digest.sha256"),
    "digest-not-hex": Case(lambda w: _with_subjects(w, _digest_hex("zz" * 32)), INVALID, "is not hex",
                           "statement.subject[0].digest.sha256"),
    "digest-wrong-algorithm": Case(lambda w: _with_subjects(w, _digest_hex("ab" * 64, "sha512")), INVALID,
                                   "exactly one sha256 digest", "statement.subject[0].digest"),
    # --- predicate
    "predicate-unknown-claim": Case(
        lambda w: _signed(w, statement([subject(b"\7" * 32)], predicate("probably-human"))),
        INVALID, "unknown claim 'probably-human'", "predicate.claim"),
    "predicate-no-canonicalization": Case(
        lambda w: _signed(w, statement([subject(b"\x08" * 32)],
                                       {k: v for k, v in predicate().items() if k != "canonicalization"})),
        INVALID, "is missing", "predicate.canonicalization"),
    "predicate-source-type-mismatch": Case(
        lambda w: _signed(w, statement([subject(b"\x09" * 32)], predicate(
            "human-created",
            digitalSourceType="http://cv.iptc.org/newscodes/digitalsourcetype/trainedAlgorithmicMedia"))),
        INVALID, "trainedAlgorithmicMedia", "predicate.digitalSourceType"),
    # --- keys
    "unregistered-signing-key": Case(_unregistered_key, INVALID,
                                     "no signature verifies with a key registered to vendor 'acme'",
                                     "envelope.signatures"),
    "other-vendors-key": Case(
        lambda w: _submit_one(w, attest(w.keys["globex"], fresh_digests("other", 1))), DENIED,
        "not registered to vendor 'acme'"),
    # --- batch roots
    "batch-root-mismatch": Case(lambda w: _batch(w, _sorted_digests(3), 3, root=b"\x11" * 32), INVALID,
                                "not the signed batch root", "batch_digests"),
    "batch-size-mismatch": Case(lambda w: _batch(w, _sorted_digests(3), 4), INVALID,
                                "3 digests sent but the statement signs a batch of 4", "batch_digests"),
    "batch-digests-ragged": Case(lambda w: _batch(w, _sorted_digests(2) + b"\1\2\3", 2, root=b"\x10" * 32), INVALID,
                                 "not a multiple of 32", "batch_digests"),
    "batch-digests-unsorted": Case(
        lambda w: _batch(w, b"".join(sorted(fresh_digests("u", 2), reverse=True)), 2, root=b"\x12" * 32),
        INVALID, "out of order", "batch_digests[1]"),
    "batch-digests-missing": Case(lambda w: _batch(w, b"", 2, root=b"\x13" * 32), INVALID,
                                  "required: the statement commits to a batch root", "batch_digests"),
    "batch-digests-without-batch": Case(
        lambda w: _submit_one(w, pb.SubmitItem(envelope=attest(w.keys["acme"], [b"\x14" * 32]).envelope,
                                               batch_digests=b"\x15" * 32)),
        INVALID, "no batch root", "batch_digests"),
    "batch-size-zero": Case(lambda w: _batch(w, b"", 0, root=b"\x16" * 32), INVALID, "positive integer",
                            "predicate.batch.size"),
    # --- revocations
    "revoke-missing-entry": Case(lambda w: _revoke(w, 10_000, b"\x17" * 32), INVALID,
                                 "entry 10000 does not exist", "statement.subject[0]"),
    "revoke-wrong-leaf-hash": Case(lambda w: _revoke(w, w.indices["attestation"], b"\x18" * 32), INVALID,
                                   "does not match the leaf hash", "statement.subject[0]"),
    "revoke-key-event": Case(lambda w: _revoke(w, w.indices["key-event"]), INVALID,
                             "is not an attestation", "statement.subject[0]"),
    "revoke-other-vendors-entry": Case(lambda w: _revoke(w, w.indices["attestation"], role="globex"),
                                       DENIED, "submitted by another vendor"),
    "revoke-with-batch-digests": Case(
        lambda w: _revoke(w, w.indices["attestation"], batch_digests=b"\x19" * 32), INVALID,
        "a revocation carries no batch digests", "batch_digests"),
    "revoke-bad-subject-name": Case(
        lambda w: _signed(w, statement([subject(b"\x1a" * 32, "anchorlog:entry/-1")],
                                       {"reason": "x", "revokedAt": "2026-01-01T00:00:00Z"},
                                       "https://anchorlog.dev/attestation/revocation/v1")),
        INVALID, "is not a log index", "statement.subject[0].name"),
    # --- request shape and size
    "submit-no-items": Case(lambda w: _rpc(lambda: w.stub.Submit(pb.SubmitRequest(), metadata=w.md("acme"))),
                            INVALID, "at least one item", "items"),
    "submit-too-many-items": Case(
        lambda w: _rpc(lambda: w.stub.Submit(pb.SubmitRequest(items=[pb.SubmitItem()] * (MAX_ITEMS + 1)),
                                             metadata=w.md("acme"))),
        EXHAUSTED, f"exceeds the limit of {MAX_ITEMS} per request"),
    "message-over-server-limit": Case(_too_big_message, EXHAUSTED, "larger than max"),
    # --- queries
    "provenance-digest-short": Case(
        lambda w: _rpc(lambda: w.stub.GetProvenance(pb.GetProvenanceRequest(digest=b"\1" * 31),
                                                    metadata=w.md("reader"))),
        INVALID, "must be a 32-byte SHA-256 digest, got 31 bytes", "digest"),
    "provenance-digest-empty": Case(
        lambda w: _rpc(lambda: w.stub.GetProvenance(pb.GetProvenanceRequest(), metadata=w.md("reader"))),
        INVALID, "got 0 bytes", "digest"),
    "provenance-trusted-size-beyond": Case(
        lambda w: _rpc(lambda: w.stub.GetProvenance(pb.GetProvenanceRequest(digest=b"\1" * 32,
                                                                            trusted_size=1 << 40),
                                                    metadata=w.md("reader"))),
        INVALID, "is beyond the latest checkpoint size", "trusted_size"),
    "submit-stream-trusted-size-beyond": Case(_submit_stream_trusting_beyond, INVALID,
                                              "is beyond the latest checkpoint size", "trusted_size"),
    "stream-digest-short": Case(_stream_bad_digest, INVALID, "got 31 bytes", "digests[1]"),
    "stream-too-many-digests": Case(_stream_too_many, EXHAUSTED, "10001 digests in one message"),
    "checkpoint-trusted-size-beyond": Case(
        lambda w: _rpc(lambda: w.stub.GetCheckpoint(pb.GetCheckpointRequest(trusted_size=1 << 63),
                                                    metadata=w.md("reader"))),
        INVALID, "is beyond the latest checkpoint size", "trusted_size"),
    "consistency-second-beyond": Case(
        lambda w: _rpc(lambda: w.stub.GetConsistencyProof(
            pb.GetConsistencyProofRequest(first_size=1, second_size=(1 << 64) - 1), metadata=w.md("reader"))),
        INVALID, "is beyond the log size", "second_size"),
    "consistency-first-above-second": Case(
        lambda w: _rpc(lambda: w.stub.GetConsistencyProof(
            pb.GetConsistencyProofRequest(first_size=3, second_size=2), metadata=w.md("reader"))),
        INVALID, "must not exceed second_size", "first_size"),
    "inclusion-index-beyond": Case(
        lambda w: _rpc(lambda: w.stub.GetInclusionProof(pb.GetInclusionProofRequest(index=1 << 50),
                                                        metadata=w.md("reader"))),
        INVALID, "is not below the tree size", "index"),
    "inclusion-tree-size-beyond": Case(
        lambda w: _rpc(lambda: w.stub.GetInclusionProof(
            pb.GetInclusionProofRequest(index=0, tree_size=1 << 40), metadata=w.md("reader"))),
        INVALID, "is beyond the latest checkpoint size", "tree_size"),
    "entries-empty-range": Case(
        lambda w: _rpc(lambda: w.stub.GetEntries(pb.GetEntriesRequest(start=2, end=2), metadata=w.md("auditor"))),
        INVALID, "must be greater than start", "end"),
    "entries-start-beyond": Case(
        lambda w: _rpc(lambda: w.stub.GetEntries(pb.GetEntriesRequest(start=1 << 40, end=(1 << 40) + 5),
                                                 metadata=w.md("auditor"))),
        INVALID, "is not below the log size", "start"),
    "batch-digests-of-plain-entry": Case(
        lambda w: _rpc(lambda: w.stub.GetBatchDigests(
            pb.GetBatchDigestsRequest(entry_index=w.indices["attestation"]), metadata=w.md("auditor"))),
        NOT_FOUND, "does not commit to a batch"),
    "batch-digests-beyond-log": Case(
        lambda w: _rpc(lambda: w.stub.GetBatchDigests(pb.GetBatchDigestsRequest(entry_index=1 << 40),
                                                      metadata=w.md("auditor"))),
        INVALID, "is beyond the log", "entry_index"),
    "key-history-bad-vendor-id": Case(
        lambda w: _rpc(lambda: w.stub.GetKeyHistory(pb.GetKeyHistoryRequest(vendor_id="Bad Vendor!"),
                                                    metadata=w.md("auditor"))),
        INVALID, "must be 1-63 characters", "vendor_id"),
    # --- administration
    "create-vendor-bad-id": Case(
        lambda w: _rpc(lambda: w.stub.CreateVendor(pb.CreateVendorRequest(vendor_id="-x"), metadata=w.admin)),
        INVALID, "must be 1-63 characters", "vendor_id"),
    "create-vendor-twice": Case(
        lambda w: _rpc(lambda: w.stub.CreateVendor(pb.CreateVendorRequest(vendor_id="acme"), metadata=w.admin)),
        EXISTS, "vendor 'acme' already exists"),
    "register-key-wrong-length": Case(
        lambda w: _rpc(lambda: w.stub.RegisterKey(pb.RegisterKeyRequest(vendor_id="acme", public_key=b"k" * 33),
                                                  metadata=w.admin)),
        INVALID, "must be a raw 32-byte Ed25519 key, got 33 bytes", "public_key"),
    # The identity point: a small-order key under which OpenSSL accepts one forged
    # signature for every message (see ledger/ed25519.py).
    "register-key-small-order": Case(
        lambda w: _rpc(lambda: w.stub.RegisterKey(
            pb.RegisterKeyRequest(vendor_id="acme", public_key=b"\x01" + bytes(31)), metadata=w.admin)),
        INVALID, "is not a usable Ed25519 public key", "public_key"),
    "rotate-to-small-order-key": Case(
        lambda w: _rpc(lambda: w.stub.RotateKey(
            pb.RotateKeyRequest(vendor_id="acme", old_key_id="00" * 32, new_public_key=b"\x01" + bytes(31)),
            metadata=w.admin)),
        INVALID, "is not a usable Ed25519 public key", "new_public_key"),
    "register-key-unknown-vendor": Case(
        lambda w: _rpc(lambda: w.stub.RegisterKey(
            pb.RegisterKeyRequest(vendor_id="nobody", public_key=Key.generate().public), metadata=w.admin)),
        NOT_FOUND, "unknown vendor 'nobody'"),
    "register-key-twice": Case(
        lambda w: _rpc(lambda: w.stub.RegisterKey(
            pb.RegisterKeyRequest(vendor_id="globex", public_key=w.keys["acme"].public), metadata=w.admin)),
        EXISTS, "is already registered"),
    "register-key-ends-before-start": Case(
        lambda w: _rpc(lambda: w.stub.RegisterKey(
            pb.RegisterKeyRequest(vendor_id="acme", public_key=Key.generate().public, not_before=2_000_000_000,
                                  not_after=1_900_000_000), metadata=w.admin)),
        INVALID, "must be after not_before", "not_after"),
    "register-key-negative-time": Case(
        lambda w: _rpc(lambda: w.stub.RegisterKey(
            pb.RegisterKeyRequest(vendor_id="acme", public_key=Key.generate().public, not_before=-5),
            metadata=w.admin)),
        INVALID, "non-negative", "not_before"),
    "rotate-unknown-key-id": Case(
        lambda w: _rpc(lambda: w.stub.RotateKey(
            pb.RotateKeyRequest(vendor_id="acme", old_key_id="00" * 32, new_public_key=Key.generate().public),
            metadata=w.admin)),
        NOT_FOUND, "has no key", ),
    "revoke-unknown-key-id": Case(
        lambda w: _rpc(lambda: w.stub.RevokeKey(pb.RevokeKeyRequest(vendor_id="acme", key_id="ff" * 32),
                                                metadata=w.admin)),
        NOT_FOUND, "vendor 'acme' has no key"),
    "revoke-key-of-other-vendor": Case(
        lambda w: _rpc(lambda: w.stub.RevokeKey(
            pb.RevokeKeyRequest(vendor_id="globex", key_id=w.keys["acme"].key_id), metadata=w.admin)),
        NOT_FOUND, "vendor 'globex' has no key"),
    "revoke-key-without-id": Case(
        lambda w: _rpc(lambda: w.stub.RevokeKey(pb.RevokeKeyRequest(vendor_id="acme"), metadata=w.admin)),
        INVALID, "required", "key_id"),
    "issue-token-no-role": Case(
        lambda w: _rpc(lambda: w.stub.IssueToken(pb.IssueTokenRequest(principal="someone"), metadata=w.admin)),
        INVALID, "must be one of ROLE_ADMIN", "role"),
    "issue-vendor-token-unknown-vendor": Case(
        lambda w: _rpc(lambda: w.stub.IssueToken(pb.IssueTokenRequest(principal="ghost", role=pb.ROLE_VENDOR),
                                                 metadata=w.admin)),
        INVALID, "no vendor 'ghost'", "principal"),
    "revoke-token-no-identifier": Case(
        lambda w: _rpc(lambda: w.stub.RevokeToken(pb.RevokeTokenRequest(), metadata=w.admin)),
        INVALID, "set exactly one of token_id, token, principal", "request"),
    "revoke-token-two-identifiers": Case(
        lambda w: _rpc(lambda: w.stub.RevokeToken(
            pb.RevokeTokenRequest(token_id="0" * 16, principal="builder-1"), metadata=w.admin)),
        INVALID, "set exactly one of token_id, token, principal", "request"),
    "revoke-token-short-id": Case(
        lambda w: _rpc(lambda: w.stub.RevokeToken(pb.RevokeTokenRequest(token_id="abc123"), metadata=w.admin)),
        INVALID, "must be 16 lowercase hex characters", "token_id"),
    "revoke-token-uppercase-id": Case(
        lambda w: _rpc(lambda: w.stub.RevokeToken(pb.RevokeTokenRequest(token_id="ABCDEF0123456789"),
                                                  metadata=w.admin)),
        INVALID, "must be 16 lowercase hex characters", "token_id"),
    "revoke-token-bad-principal": Case(
        lambda w: _rpc(lambda: w.stub.RevokeToken(pb.RevokeTokenRequest(principal="-x"), metadata=w.admin)),
        INVALID, "must be 1-63 characters", "principal"),
    "revoke-token-unknown-id": Case(
        lambda w: _rpc(lambda: w.stub.RevokeToken(pb.RevokeTokenRequest(token_id="0" * 16), metadata=w.admin)),
        NOT_FOUND, "no live token has id 0000000000000000"),
    "revoke-token-unknown-principal": Case(
        lambda w: _rpc(lambda: w.stub.RevokeToken(pb.RevokeTokenRequest(principal="nobody"), metadata=w.admin)),
        NOT_FOUND, "no live token belongs to principal 'nobody'"),
    "revoke-token-unknown-token": Case(
        lambda w: _rpc(lambda: w.stub.RevokeToken(pb.RevokeTokenRequest(token="alt_" + "B" * 43),
                                                  metadata=w.admin)),
        NOT_FOUND, "no live token matches the given token"),
    "revoke-token-last-admin": Case(
        lambda w: _rpc(lambda: w.stub.RevokeToken(pb.RevokeTokenRequest(principal="admin"), metadata=w.admin)),
        grpc.StatusCode.FAILED_PRECONDITION, "refusing to revoke the last live admin token"),
}


def test_there_are_at_least_30_distinct_cases() -> None:
    assert len(CASES) >= 30


@pytest.mark.parametrize("name", sorted(CASES))
def test_bad_request_is_refused_precisely_and_changes_nothing(world: World, name: str) -> None:
    case = CASES[name]
    before = world.head()
    failure = case.run(world)
    assert failure.code is case.code, failure
    assert case.says in failure.message, failure
    if case.code is INVALID:
        assert case.field is not None, "an INVALID_ARGUMENT case must name its field"
        assert (case.field, ) == tuple(f for f, _ in failure.fields[:1]), failure
        assert failure.fields[0][1], "the field violation needs a description"
    assert "Traceback" not in failure.message and world.tokens["admin"] not in failure.message
    assert world.head() == before, "a refused request changed the log"
    # Nor any token: every principal of the world can still call.
    for role in ("admin", "acme", "reader", "auditor"):
        world.stub.WhoAmI(pb.WhoAmIRequest(), metadata=world.md(role))


def test_valid_requests_still_work_afterwards(world: World) -> None:
    """The refusals above are about the requests, not a broken server."""
    (receipt,) = world.submit_ok("acme", attest(world.keys["acme"], fresh_digests("after", 1)))
    assert not receipt.duplicate and receipt.checkpoint.size == world.head()[0]


def test_remembered_predicate_does_not_let_a_bad_envelope_through(world: World) -> None:
    """The server checks a repeated predicate once; every other check still runs per envelope."""
    key, other = world.keys["acme"], Key.generate()
    doc = predicate()
    (digest,) = fresh_digests("memo", 1)
    (first,) = world.submit_ok("acme", pb.SubmitItem(envelope=envelope(statement([subject(digest)], doc), key)))
    assert not first.duplicate
    before = world.head()
    variants = {
        "bad signature": envelope(statement([subject(d) for d in fresh_digests("memo", 1)], doc), other,
                                  keyid=key.key_id),
        "unknown claim": envelope(statement([subject(d) for d in fresh_digests("memo", 1)],
                                            {**doc, "claim": "human-made"}), key),
        "future time": envelope(statement([subject(d) for d in fresh_digests("memo", 1)],
                                          {**doc, "performedAt": "2099-01-01T00:00:00Z"}), key),
    }
    for _ in range(2):  # the second time after the server has seen each predicate once
        response = world.stub.Submit(
            pb.SubmitRequest(items=[pb.SubmitItem(envelope=e) for e in variants.values()]),
            metadata=world.md("acme"),
        )
        failures = [failure_of_item(r) for r in response.results]
        assert [f.code for f in failures] == [INVALID] * 3, failures
        assert "no signature verifies" in failures[0].message
        assert "unknown claim" in failures[1].message
        assert "in the future" in failures[2].message
    assert world.head() == before
