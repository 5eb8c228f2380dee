"""Helpers for end-to-end tests that talk to a real server through the generated stubs.

Envelopes are built here from the ledger's public building blocks (or by hand,
for malformed ones); every call goes through ``anchorlog_pb2_grpc.LedgerStub``.
"""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import grpc
import rfc8785
from anchorlog.ledger.batch import BATCH_SUBJECT_NAME, batch_root, sort_digests
from anchorlog.ledger.checkpoint import verify_checkpoint
from anchorlog.ledger.dsse import PAYLOAD_TYPE_INTOTO, ed25519_key_id, pae
from anchorlog.ledger.merkle import leaf_hash, verify_inclusion
from anchorlog.ledger.note import NoteVerifier
from anchorlog.ledger.predicates import PROVENANCE_V1, REVOCATION_V1
from anchorlog.v1 import anchorlog_pb2 as pb
from anchorlog.v1 import anchorlog_pb2_grpc as pb_grpc
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status

from tests.conftest import ServerProcess

RPC_NAMES: tuple[str, ...] = tuple(pb.DESCRIPTOR.services_by_name["Ledger"].methods_by_name)


def auth(token: str) -> list[tuple[str, str]]:
    return [("authorization", f"Bearer {token}")]


def connect(address: str) -> grpc.Channel:
    channel = grpc.insecure_channel(address)
    grpc.channel_ready_future(channel).result(timeout=15)
    return channel


# ---------------------------------------------------------------- keys and envelopes


@dataclass(frozen=True)
class Key:
    private: Ed25519PrivateKey

    @classmethod
    def generate(cls) -> Key:
        return cls(Ed25519PrivateKey.generate())

    @property
    def public(self) -> bytes:
        return self.private.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)

    @property
    def key_id(self) -> str:
        return ed25519_key_id(self.public)

    def sign(self, message: bytes) -> bytes:
        return self.private.sign(message)


def predicate(claim: str = "human-validated", **extra: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "claim": claim,
        "canonicalization": "utf8-nfc-v1",
        "actorId": "reviewer-1",
        "method": "two-pass review",
        "performedAt": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
    }
    doc.update(extra)
    return doc


def subject(digest: bytes, name: str | None = None) -> dict[str, Any]:
    return {"name": name or f"sample/{digest.hex()[:12]}", "digest": {"sha256": digest.hex()}}


def statement(
    subjects: Sequence[dict[str, Any]],
    predicate_doc: dict[str, Any] | None = None,
    predicate_type: str = PROVENANCE_V1,
    type_: str = "https://in-toto.io/Statement/v1",
) -> bytes:
    return rfc8785.dumps({
        "_type": type_,
        "subject": list(subjects),
        "predicateType": predicate_type,
        "predicate": predicate() if predicate_doc is None else predicate_doc,
    })


def envelope(
    payload: bytes,
    key: Key,
    *,
    payload_type: str = PAYLOAD_TYPE_INTOTO,
    keyid: str | None = None,
) -> bytes:
    """A DSSE envelope over ``payload`` signed by ``key`` (standard base64)."""
    sig = key.sign(pae(payload_type, payload))
    return json.dumps({
        "payload": base64.b64encode(payload).decode(),
        "payloadType": payload_type,
        "signatures": [{"keyid": key.key_id if keyid is None else keyid,
                        "sig": base64.b64encode(sig).decode()}],
    }, separators=(",", ":")).encode()


def attest(key: Key, digests: Sequence[bytes], claim: str = "human-validated", **extra: Any) -> pb.SubmitItem:
    payload = statement([subject(d) for d in digests], predicate(claim, **extra))
    return pb.SubmitItem(envelope=envelope(payload, key))


def attest_batch(key: Key, digests: Sequence[bytes], **extra: Any) -> pb.SubmitItem:
    ordered = sort_digests(digests)
    payload = statement(
        [subject(batch_root(ordered), BATCH_SUBJECT_NAME)],
        predicate(batch={"size": len(ordered), "rule": "rfc6962-sorted-sha256-v1"}, **extra),
    )
    return pb.SubmitItem(envelope=envelope(payload, key), batch_digests=b"".join(ordered))


def revoke(key: Key, targets: Sequence[tuple[int, bytes]], reason: str = "mistake") -> pb.SubmitItem:
    subjects = [subject(leaf, f"anchorlog:entry/{index}") for index, leaf in targets]
    doc = {"reason": reason, "revokedAt": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")}
    return pb.SubmitItem(envelope=envelope(statement(subjects, doc, REVOCATION_V1), key))


def fresh_digests(tag: str, count: int) -> list[bytes]:
    """Digests nobody else in a test run uses."""
    import hashlib

    salt = f"{tag}/{time.time_ns()}"
    return [hashlib.sha256(f"{salt}/{i}".encode()).digest() for i in range(count)]


# ---------------------------------------------------------------- a populated server


@dataclass
class World:
    """A server with two vendors (each with a key and a token), a reader and an auditor."""

    server: ServerProcess
    channel: grpc.Channel
    stub: pb_grpc.LedgerStub
    tokens: dict[str, str]
    keys: dict[str, Key] = field(default_factory=dict)
    verifier: NoteVerifier | None = None
    # Log indices a test module set up once (e.g. a batch entry), by name.
    indices: dict[str, int] = field(default_factory=dict)

    @property
    def admin(self) -> list[tuple[str, str]]:
        return auth(self.tokens["admin"])

    def md(self, role: str) -> list[tuple[str, str]]:
        return auth(self.tokens[role])

    def head(self) -> tuple[int, bytes]:
        cp = self.stub.GetCheckpoint(pb.GetCheckpointRequest(), metadata=self.admin).checkpoint
        return cp.size, cp.root_hash

    def submit_ok(self, role: str, *items: pb.SubmitItem) -> list[pb.Receipt]:
        response = self.stub.Submit(pb.SubmitRequest(items=items), metadata=self.md(role))
        errors = [r.error for r in response.results if r.WhichOneof("outcome") == "error"]
        assert not errors, errors
        return [r.receipt for r in response.results]


def populate(server: ServerProcess) -> World:
    channel = connect(server.address)
    stub = pb_grpc.LedgerStub(channel)
    admin = auth(server.admin_token)
    tokens = {"admin": server.admin_token}
    keys: dict[str, Key] = {}
    for vendor in ("acme", "globex"):
        stub.CreateVendor(pb.CreateVendorRequest(vendor_id=vendor, display_name=vendor.title()),
                          metadata=admin)
        keys[vendor] = Key.generate()
        stub.RegisterKey(pb.RegisterKeyRequest(vendor_id=vendor, public_key=keys[vendor].public),
                         metadata=admin)
        tokens[vendor] = stub.IssueToken(
            pb.IssueTokenRequest(principal=vendor, role=pb.ROLE_VENDOR), metadata=admin).token
    tokens["vendor"] = tokens["acme"]
    keys["vendor"] = keys["acme"]
    tokens["reader"] = stub.IssueToken(
        pb.IssueTokenRequest(principal="builder-1", role=pb.ROLE_READER), metadata=admin).token
    tokens["auditor"] = stub.IssueToken(
        pb.IssueTokenRequest(principal="audit-1", role=pb.ROLE_AUDITOR), metadata=admin).token
    return World(server, channel, stub, tokens, keys, NoteVerifier.from_vkey(server.log_key))


# ---------------------------------------------------------------- checking answers


def status_of(error: grpc.RpcError) -> status_pb2.Status | None:
    return rpc_status.from_call(error)  # type: ignore[arg-type]


def field_violations(details: Sequence[Any]) -> list[tuple[str, str]]:
    out = []
    for packed in details:
        if packed.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            bad = error_details_pb2.BadRequest()
            packed.Unpack(bad)
            out.extend((v.field, v.description) for v in bad.field_violations)
    return out


@dataclass(frozen=True)
class Failure:
    """A refusal, either of a whole RPC or of one submitted item."""

    code: grpc.StatusCode
    message: str
    fields: tuple[tuple[str, str], ...]


_CODES = {c.value[0]: c for c in grpc.StatusCode}


def failure_of_rpc(error: grpc.RpcError) -> Failure:
    status = status_of(error)
    fields = tuple(field_violations(status.details)) if status is not None else ()
    return Failure(error.code(), error.details() or "", fields)  # type: ignore[attr-defined]


def failure_of_item(result: pb.ItemResult) -> Failure:
    assert result.WhichOneof("outcome") == "error", f"expected a rejection, got a receipt: {result}"
    return Failure(_CODES[result.error.code], result.error.message,
                   tuple(field_violations(result.error.details)))


def verify_receipt(receipt: pb.Receipt, verifier: NoteVerifier) -> None:
    """A receipt's checkpoint is signed by the log and its entry is included in it."""
    cp = verify_checkpoint(receipt.checkpoint.note, verifier)
    assert (cp.size, cp.root_hash) == (receipt.checkpoint.size, receipt.checkpoint.root_hash)
    proof = receipt.entry.inclusion
    assert proof.tree_size == cp.size and proof.leaf_index == receipt.entry.entry.index
    verify_inclusion(leaf_hash(receipt.entry.entry.data), proof.leaf_index, proof.tree_size,
                     list(proof.hashes), cp.root_hash)


def verify_proved(entry: pb.ProvedEntry, size: int, root: bytes) -> None:
    assert entry.inclusion.tree_size == size and entry.inclusion.leaf_index == entry.entry.index
    verify_inclusion(leaf_hash(entry.entry.data), entry.entry.index, size,
                     list(entry.inclusion.hashes), root)


def blocking_requests(first: Any, release: Any) -> Iterator[Any]:
    """Yield ``first`` and then wait (without half-closing) until ``release`` is set."""
    yield first
    release.wait()


OK = code_pb2.OK
