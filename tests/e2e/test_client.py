"""The verifying client against a real server subprocess, honest and malicious.

A malicious server is either a real server whose database was written under it
by someone holding the log key, or a small in-process gRPC server that proxies
the real one and alters its answers. In every case the client must refuse with
a specific error, and never move its trusted checkpoint.
"""

from __future__ import annotations

import contextlib
import itertools
import shutil
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import grpc
import pytest
from anchorlog.client.ledger import LedgerClient, LedgerRpcError, Submission
from anchorlog.client.receipts import Bundle, dumps, load_document, save_receipt, verify_document
from anchorlog.client.state import load_trusted, pinned_vkey
from anchorlog.client.vendor import (
    ClaimDetails,
    VendorKeyPair,
    attest_batch,
    attest_samples,
    hash_text,
    revoke_entries,
)
from anchorlog.client.verify import (
    BatchPathError,
    CheckpointError,
    InclusionProofError,
    SignatureError,
)
from anchorlog.ledger.digests import Canonicalization
from anchorlog.ledger.dsse import Envelope
from anchorlog.ledger.errors import InconsistentLogError, VerificationError
from anchorlog.ledger.note import NoteSigner, NoteVerifier
from anchorlog.ledger.predicates import Claim
from anchorlog.ledger.status import Status
from anchorlog.v1 import anchorlog_pb2 as pb
from anchorlog.v1 import anchorlog_pb2_grpc as pb_grpc

from tests.conftest import ServerProcess, start_server

VALIDATED = ClaimDetails(
    claim=Claim.HUMAN_VALIDATED, canonicalization=Canonicalization.UTF8_NFC_V1,
    actor_id="reviewer-7", method="two-pass review",
)
CREATED = ClaimDetails(
    claim=Claim.HUMAN_CREATED, canonicalization=Canonicalization.UTF8_NFC_V1,
    actor_id="author-3", method="written by staff",
)


@dataclass
class World:
    server: ServerProcess
    key: VendorKeyPair
    vendor_token: str
    reader_token: str
    tmp: Path
    vendor_id: str

    def client(self, token: str, state: str, **kwargs: Any) -> LedgerClient:
        return LedgerClient(
            self.server.address, token=token, log_key=self.server.log_key,
            state_path=self.tmp / f"{state}.json", **kwargs,
        )


def _world(server: ServerProcess, tmp: Path, vendor_id: str = "acme") -> World:
    with LedgerClient(server.address, token=server.admin_token, log_key=server.log_key,
                      state_path=tmp / "admin.json") as admin:
        admin.create_vendor(vendor_id, "Acme Validation")
        key = VendorKeyPair.generate()
        admin.register_key(vendor_id, key.public_key)
        vendor_token = admin.issue_token(vendor_id, "vendor")
        reader_token = admin.issue_token("builder-1", "reader")
    return World(server, key, vendor_token, reader_token, tmp, vendor_id)


@pytest.fixture(scope="module")
def shared_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """One server for the tests that do not stop or rewrite it; each test has its own vendor."""
    proc = start_server(tmp_path_factory.mktemp("shared") / "data", "--auth-failures-per-minute", "10000")
    try:
        yield proc
    finally:
        proc.stop()


@pytest.fixture
def world(shared_server: ServerProcess, tmp_path: Path) -> World:
    return _world(shared_server, tmp_path, f"v-{uuid.uuid4().hex[:12]}")


@pytest.fixture
def own_world(server: ServerProcess, tmp_path: Path) -> World:
    """A server of its own, for tests that stop it or write its database."""
    return _world(server, tmp_path)


# ---------------------------------------------------------------- honest server


def test_vendor_attests_reader_verifies_and_receipts_verify_offline_after_stop(
    own_world: World, tmp_path: Path
) -> None:
    world = own_world
    texts = [f"sample {i}" for i in range(40)]
    digests = [hash_text(t) for t in texts]
    with world.client(world.vendor_token, "vendor") as vendor:
        direct = vendor.submit([attest_samples(world.key, digests[:5], VALIDATED)])
        streamed = list(vendor.submit_stream([
            attest_batch(world.key, digests[5:], VALIDATED),
            attest_samples(world.key, digests[:1], CREATED),
        ]))
        outcomes = direct + streamed
        assert all(o.ok for o in outcomes), [o.error for o in outcomes]
        receipts = [o.receipt for o in outcomes if o.receipt is not None]
        paths = [save_receipt(r, tmp_path / "receipts") for r in receipts]
        # A vendor withdraws the human-created claim of sample 0.
        created_index = receipts[2].index
        target = vendor.entry(created_index)
        (revocation,) = vendor.submit([revoke_entries(world.key, [(created_index, target.leaf_hash)], "typo")])
        assert revocation.ok, revocation.error

    bundles: list[Bundle] = []
    with world.client(world.reader_token, "reader") as reader:
        only = reader.provenance(digests[3])
        assert only.status is Status.HUMAN_VALIDATED
        assert [a.vendor_id for a in only.attestations] == ["acme"]
        assert only.attestations[0].key_id == world.key.key_id
        asked = [digests[0], digests[7], hash_text("never attested"), digests[39]]
        results = list(reader.provenance_many(asked, chunk=2, bundle=bundles))
        assert [r.digest for r in results] == asked
        statuses = [r.status for r in results]
        # Sample 0: validated, and a human-created claim that was revoked.
        assert statuses == [Status.HUMAN_VALIDATED, Status.HUMAN_VALIDATED, Status.UNKNOWN,
                            Status.HUMAN_VALIDATED]
        assert results[0].revoked_entries == frozenset({created_index})
        trusted = reader.trusted_checkpoint
        assert trusted is not None and trusted.size >= revocation.receipt.index + 1
    bundle_path = tmp_path / "bundle.json"
    bundle_path.write_text(dumps(bundles[0].to_json()))

    assert world.server.stop() == 0
    verifier = NoteVerifier.from_vkey(world.server.log_key)
    for path, receipt in zip(paths, receipts, strict=True):
        report = verify_document(load_document(path), verifier)
        assert report["valid"] and report["index"] == receipt.index and report["submitter"] == "acme"
    report = verify_document(load_document(bundle_path), verifier)
    assert report["samples"] == 4
    assert report["statuses"] == {"human-validated": 3, "unknown": 1}
    # The same documents against another log's key prove nothing.
    other = NoteSigner.generate("anchorlog.local/log").verifier()
    with pytest.raises(CheckpointError):
        verify_document(load_document(paths[0]), other)
    with pytest.raises(CheckpointError):
        verify_document(load_document(bundle_path), other)


def test_entry_signed_by_a_revoked_key_is_refused(own_world: World, tmp_path: Path) -> None:
    world = own_world
    early = hash_text("attested before the key was revoked")
    with world.client(world.vendor_token, "vendor") as vendor:
        (first,) = vendor.submit([attest_samples(world.key, [early], VALIDATED)])
        assert first.ok
    with world.client(world.server.admin_token, "admin") as admin:
        admin.revoke_key("acme", world.key.key_id, reason="retired")
    # The honest server refuses new envelopes signed by the revoked key ...
    late = hash_text("signed after the revocation")
    forged = attest_samples(world.key, [late], VALIDATED)
    with world.client(world.vendor_token, "vendor") as vendor:
        (refused,) = vendor.submit([forged])
    assert refused.error is not None and refused.error.code == "PERMISSION_DENIED"
    assert "was revoked" in refused.error.message
    # ... so the operator, holding the log key, writes it into the database directly.
    world.server.stop()
    _append_behind_the_servers_back(world.server.data_dir, "acme", forged.envelope, [late])
    restarted = start_server(world.server.data_dir, "--auth-failures-per-minute", "10000")
    try:
        world.server = restarted
        with world.client(world.reader_token, "reader") as reader:
            # Not revoked as compromised: what the key signed before still counts.
            assert reader.provenance(early).status is Status.HUMAN_VALIDATED
            with pytest.raises(SignatureError, match="not signed by any key of vendor 'acme' valid"):
                reader.provenance(late)
            with pytest.raises(SignatureError):
                list(reader.provenance_many([early, late]))
    finally:
        restarted.stop()


def _append_behind_the_servers_back(data_dir: Path, vendor: str, envelope: bytes, digests: list[bytes]) -> None:
    """Append an entry with the real store code, bypassing every check the service makes."""
    from anchorlog.ledger.checkpoint import sign_checkpoint
    from anchorlog.ledger.entry import EntryKind
    from anchorlog.ledger.store import LogStore, PendingEntry, dedup_key
    from anchorlog.server.app import DB_FILE, KEY_FILE, load_signer

    signer = load_signer(data_dir / KEY_FILE)
    store = LogStore(data_dir / DB_FILE, origin=signer.name)
    try:
        pending = PendingEntry(
            kind=EntryKind.ATTESTATION, submitter=vendor, envelope=envelope,
            dedup_key=dedup_key(vendor, Envelope.parse(envelope).pae()), subject_digests=tuple(digests),
        )
        store.append([pending], now_ms=int(time.time() * 1000), sign=lambda cp: sign_checkpoint(cp, signer))
    finally:
        store.close()


def test_compromised_key_taints_everything_it_signed(world: World) -> None:
    digest = hash_text("signed by a key that leaked")
    with world.client(world.vendor_token, "vendor") as vendor:
        assert vendor.submit([attest_samples(world.key, [digest], CREATED)])[0].ok
    with world.client(world.reader_token, "reader") as reader:
        assert reader.provenance(digest).status is Status.HUMAN_CREATED
        with world.client(world.server.admin_token, "admin") as admin:
            admin.revoke_key(world.vendor_id, world.key.key_id, compromised=True, reason="leaked")
        result = reader.provenance(digest)
        assert result.status is Status.REVOKED
        assert result.attestations[0].key_compromised


def _self_signed(tmp: Path) -> tuple[Path, Path]:
    import datetime as dt
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName(
            [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = tmp / "tls.crt", tmp / "tls.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    key_path.chmod(0o600)
    return cert_path, key_path


def test_tls_with_pinned_roots(tmp_path: Path) -> None:
    cert, key = _self_signed(tmp_path)
    tls = start_server(tmp_path / "tls-data", "--tls-cert", str(cert), "--tls-key", str(key))
    try:
        with LedgerClient(tls.address, token=tls.admin_token, log_key=tls.log_key,
                          state_path=tmp_path / "s.json", root_certificates=cert.read_bytes()) as client:
            assert client.whoami() == ("admin", "admin")
            assert client.checkpoint().size == 0
        # Plaintext to a TLS port is refused by the transport, reported as a service error.
        with (
            LedgerClient(tls.address, token=tls.admin_token, log_key=tls.log_key,
                         state_path=tmp_path / "p.json", timeout=5) as plain,
            pytest.raises(LedgerRpcError) as refused,
        ):
            plain.whoami()
        assert refused.value.code in {"UNAVAILABLE", "DEADLINE_EXCEEDED"}
    finally:
        tls.stop()


# ---------------------------------------------------------------- a rewritten log


def test_checkpoint_inconsistent_with_the_trusted_one_is_refused_loudly(
    own_world: World, tmp_path: Path
) -> None:
    world = own_world
    sample = hash_text("in the original log")
    with world.client(world.vendor_token, "vendor") as vendor:
        assert vendor.submit([attest_samples(world.key, [sample], VALIDATED)])[0].ok
    state = tmp_path / "reader.json"
    with world.client(world.reader_token, "reader") as reader:
        trusted = reader.checkpoint()
        assert reader.provenance(sample).status is Status.HUMAN_VALIDATED
    saved = state.read_bytes()
    world.server.stop()

    # The operator rebuilds a different log in a fresh data dir with the same log key.
    rewritten_dir = tmp_path / "rewritten"
    rewritten_dir.mkdir(mode=0o700)
    shutil.copy2(world.server.data_dir / "log.key", rewritten_dir / "log.key")
    rewritten = start_server(rewritten_dir, "--auth-failures-per-minute", "10000")
    try:
        assert rewritten.log_key == world.server.log_key
        token = rewritten.admin_token

        def reader() -> LedgerClient:
            return LedgerClient(rewritten.address, token=token, log_key=rewritten.log_key, state_path=state)

        # 1. Smaller than what the client trusts: a rollback.
        with reader() as client, pytest.raises(InconsistentLogError, match="rolled back or forked"):
            client.checkpoint()
        with reader() as client, pytest.raises(InconsistentLogError):
            client.provenance(sample)
        # 2. The same size with another root.
        with LedgerClient(rewritten.address, token=token, log_key=rewritten.log_key,
                          state_path=tmp_path / "operator.json") as operator:
            for n in range(trusted.size):
                operator.create_vendor(f"other-{n}")
                if operator.checkpoint().size == trusted.size:
                    break
            assert operator.checkpoint().size == trusted.size
            with reader() as client, pytest.raises(InconsistentLogError, match="differs from the trusted root"):
                client.checkpoint()
            # 3. Larger, but not an extension of the trusted tree.
            operator.create_vendor("one-more")
            operator.create_vendor("and-another")
        for call in (lambda c: c.checkpoint(), lambda c: c.provenance(sample),
                     lambda c: list(c.provenance_many([sample])), lambda c: c.entry(0)):
            with reader() as client, pytest.raises(InconsistentLogError, match="forked or rewritten"):
                call(client)
        # The trusted checkpoint never moved.
        assert state.read_bytes() == saved
        # The command line says so loudly, with its own exit code.
        run = subprocess.run(
            [sys.executable, "-m", "anchorlog.client.cli", "checkpoint", "--server", rewritten.address,
             "--token", token, "--log-key", rewritten.log_key, "--state", str(state)],
            capture_output=True, text=True, timeout=60, check=False,
        )
        assert run.returncode == 4, run.stderr
        assert "INCONSISTENT WITH A CHECKPOINT THIS CLIENT TRUSTED" in run.stderr
    finally:
        rewritten.stop()


# ---------------------------------------------------------------- a tampering proxy

Tamper = Callable[[Any], Any]


class _TamperingProxy(pb_grpc.LedgerServicer):
    """Forwards every unary call to the real server and lets a test alter the answers."""

    def __init__(self, upstream: str, tamper: dict[str, Tamper]) -> None:
        self._channel = grpc.insecure_channel(upstream)
        self._stub = pb_grpc.LedgerStub(self._channel)
        self.tamper = tamper
        # Alters what the proxy asks the real server, by method name (a lying server).
        self.tamper_request: dict[str, Tamper] = {}
        # Unary methods answered UNAVAILABLE without asking the server, and how often each was asked.
        self.refuse: set[str] = set()
        self.refused: dict[str, int] = {}

    def _forward(self, method: str, request: Any, context: grpc.ServicerContext) -> Any:
        if method in self.refuse:
            self.refused[method] = self.refused.get(method, 0) + 1
            context.abort(grpc.StatusCode.UNAVAILABLE, f"{method} refused by the test proxy")
        metadata = tuple((k, v) for k, v in context.invocation_metadata() if k == "authorization")
        if method in self.tamper_request:
            request = self.tamper_request[method](request)
        try:
            response = getattr(self._stub, method)(request, metadata=metadata, timeout=30)
        except grpc.RpcError as exc:
            context.abort(exc.code(), exc.details() or "")
        change = self.tamper.get(method)
        if change is None:
            return response
        altered = type(response)()
        altered.CopyFrom(response)
        return change(altered)

    def GetCheckpoint(self, request: Any, context: grpc.ServicerContext) -> Any:
        return self._forward("GetCheckpoint", request, context)

    def GetConsistencyProof(self, request: Any, context: grpc.ServicerContext) -> Any:
        return self._forward("GetConsistencyProof", request, context)

    def GetProvenance(self, request: Any, context: grpc.ServicerContext) -> Any:
        return self._forward("GetProvenance", request, context)

    def GetInclusionProof(self, request: Any, context: grpc.ServicerContext) -> Any:
        return self._forward("GetInclusionProof", request, context)

    def Submit(self, request: Any, context: grpc.ServicerContext) -> Any:
        return self._forward("Submit", request, context)

    def WhoAmI(self, request: Any, context: grpc.ServicerContext) -> Any:
        return self._forward("WhoAmI", request, context)

    def CreateVendor(self, request: Any, context: grpc.ServicerContext) -> Any:
        return self._forward("CreateVendor", request, context)

    def RegisterKey(self, request: Any, context: grpc.ServicerContext) -> Any:
        return self._forward("RegisterKey", request, context)

    def RevokeKey(self, request: Any, context: grpc.ServicerContext) -> Any:
        return self._forward("RevokeKey", request, context)

    def _forward_stream(self, method: str, requests: Iterator[Any], context: grpc.ServicerContext) -> Iterator[Any]:
        """A streaming call; ``tamper[method]`` gets the iterator of real answers and yields its own,
        ``tamper_request[method]`` alters each message asked."""
        metadata = tuple((k, v) for k, v in context.invocation_metadata() if k == "authorization")
        if method in self.tamper_request:
            requests = map(self.tamper_request[method], requests)
        call = getattr(self._stub, method)(requests, metadata=metadata, timeout=30)
        try:
            yield from self.tamper.get(method, lambda answers: answers)(call)
        finally:
            call.cancel()  # a truncating tamper leaves the real stream open

    def StreamProvenance(self, requests: Iterator[Any], context: grpc.ServicerContext) -> Iterator[Any]:
        return self._forward_stream("StreamProvenance", requests, context)

    def SubmitStream(self, requests: Iterator[Any], context: grpc.ServicerContext) -> Iterator[Any]:
        return self._forward_stream("SubmitStream", requests, context)


@contextlib.contextmanager
def tampering_proxy(upstream: str, tamper: dict[str, Tamper] | None = None) -> Iterator[tuple[str, _TamperingProxy]]:
    """A ``_TamperingProxy`` to ``upstream`` served on a free loopback port: its address, and it."""
    servicer = _TamperingProxy(upstream, dict(tamper or {}))
    server = grpc.server(ThreadPoolExecutor(max_workers=4))
    pb_grpc.add_LedgerServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        yield f"127.0.0.1:{port}", servicer
    finally:
        server.stop(0).wait()
        servicer._channel.close()


@pytest.fixture
def proxy(world: World) -> Iterator[tuple[str, _TamperingProxy]]:
    with tampering_proxy(world.server.address) as served:
        yield served


def _flip(data: bytes, at: int) -> bytes:
    return data[:at] + bytes([data[at] ^ 0x01]) + data[at + 1 :]


def _forge_signature(response: Any) -> Any:
    note = response.checkpoint.note
    # Flip one bit inside the base64 of the signature line.
    at = note.rindex(b" ") + 10
    response.checkpoint.note = note[:at] + (b"A" if note[at : at + 1] != b"A" else b"B") + note[at + 1 :]
    return response


def _resign_with_another_key(response: Any) -> Any:
    from anchorlog.ledger.checkpoint import Checkpoint, sign_checkpoint

    forger = NoteSigner.generate("anchorlog.local/log")
    response.checkpoint.note = sign_checkpoint(
        Checkpoint(origin="anchorlog.local/log", size=response.checkpoint.size + 5,
                   root_hash=bytes(32)), forger,
    )
    return response


def _attested(world: World) -> tuple[bytes, bytes]:
    direct, batched = hash_text(f"direct {world.vendor_id}"), hash_text(f"batched {world.vendor_id}")
    with world.client(world.vendor_token, "vendor") as vendor:
        outcomes = vendor.submit([
            attest_samples(world.key, [direct], VALIDATED),
            attest_batch(world.key, [batched, hash_text(f"b2 {world.vendor_id}"),
                                     hash_text(f"b3 {world.vendor_id}")], VALIDATED),
        ])
        assert all(o.ok for o in outcomes)
    return direct, batched


@pytest.mark.parametrize("forge", [_forge_signature, _resign_with_another_key],
                         ids=["bit-flipped-signature", "signed-by-another-key"])
def test_forged_checkpoint_signature_is_refused(world: World, proxy: tuple[str, _TamperingProxy],
                                                forge: Tamper, tmp_path: Path) -> None:
    address, servicer = proxy
    direct, _ = _attested(world)
    servicer.tamper["GetCheckpoint"] = forge
    servicer.tamper["GetProvenance"] = forge
    state = tmp_path / "reader.json"
    with LedgerClient(address, token=world.reader_token, log_key=world.server.log_key, state_path=state) as c:
        with pytest.raises(CheckpointError, match="not signed by the pinned log key"):
            c.checkpoint()
        with pytest.raises(CheckpointError):
            c.provenance(direct)
    assert not state.exists()


def _tamper_attestation_entry(response: pb.ProvenanceResponse) -> pb.ProvenanceResponse:
    hit = response.digests[0].hits[0].entry_index
    for proved in response.entries:
        if proved.entry.index == hit:
            # One bit inside the envelope JSON (the tail of the entry bytes).
            proved.entry.data = _flip(proved.entry.data, len(proved.entry.data) - 30)
    return response


def _wrong_inclusion_proof(response: pb.ProvenanceResponse) -> pb.ProvenanceResponse:
    hit = response.digests[0].hits[0].entry_index
    for proved in response.entries:
        if proved.entry.index == hit:
            proved.inclusion.hashes[0] = _flip(proved.inclusion.hashes[0], 0)
    return response


def _proof_for_another_size(response: pb.ProvenanceResponse) -> pb.ProvenanceResponse:
    response.entries[0].inclusion.tree_size -= 1
    return response


def _wrong_batch_path(response: pb.ProvenanceResponse) -> pb.ProvenanceResponse:
    path = response.digests[0].hits[0].batch_path
    path.hashes[0] = _flip(path.hashes[0], 5)
    return response


def _batch_path_dropped(response: pb.ProvenanceResponse) -> pb.ProvenanceResponse:
    response.digests[0].hits[0].ClearField("batch_path")
    return response


@pytest.mark.parametrize(
    ("tamper", "batched", "error", "message"),
    [
        (_tamper_attestation_entry, False, InclusionProofError, "not included in the checkpoint"),
        (_wrong_inclusion_proof, False, InclusionProofError, "not included in the checkpoint"),
        (_proof_for_another_size, False, InclusionProofError, "proof is for tree size"),
        (_wrong_batch_path, True, BatchPathError, "batch path for .* does not verify"),
        (_batch_path_dropped, True, BatchPathError, "no batch path was sent"),
    ],
    ids=["tampered-entry", "wrong-inclusion-proof", "proof-for-another-size", "wrong-batch-path",
         "batch-path-dropped"],
)
def test_tampered_provenance_answers_are_refused(
    world: World, proxy: tuple[str, _TamperingProxy], tamper: Tamper, batched: bool,
    error: type[VerificationError], message: str, tmp_path: Path,
) -> None:
    address, servicer = proxy
    direct, batch_member = _attested(world)
    digest = batch_member if batched else direct
    state = tmp_path / "reader.json"
    with LedgerClient(address, token=world.reader_token, log_key=world.server.log_key, state_path=state) as c:
        assert c.provenance(digest).status is Status.HUMAN_VALIDATED  # untampered first
        servicer.tamper["GetProvenance"] = tamper
        with pytest.raises(error, match=message):
            c.provenance(digest)


def test_tampered_entry_and_receipt_are_refused(world: World, proxy: tuple[str, _TamperingProxy],
                                                tmp_path: Path) -> None:
    address, servicer = proxy

    def tamper_entry(response: pb.GetInclusionProofResponse) -> pb.GetInclusionProofResponse:
        response.entry.entry.data = _flip(response.entry.entry.data, 50)
        return response

    def tamper_receipts(response: pb.SubmitResponse) -> pb.SubmitResponse:
        for result in response.results:
            result.receipt.entry.inclusion.hashes[0] = _flip(result.receipt.entry.inclusion.hashes[0], 1)
        return response

    servicer.tamper["GetInclusionProof"] = tamper_entry
    servicer.tamper["Submit"] = tamper_receipts
    with LedgerClient(address, token=world.vendor_token, log_key=world.server.log_key,
                      state_path=tmp_path / "v.json") as client:
        with pytest.raises(InclusionProofError):
            client.entry(1)
        with pytest.raises(InclusionProofError):
            client.submit([attest_samples(world.key, [hash_text("x")], VALIDATED)])


def test_status_hint_of_the_server_is_ignored(world: World, proxy: tuple[str, _TamperingProxy],
                                              tmp_path: Path) -> None:
    address, servicer = proxy

    def claim_human(response: pb.ProvenanceResponse) -> pb.ProvenanceResponse:
        response.digests[0].status_hint = "human-created"
        return response

    servicer.tamper["GetProvenance"] = claim_human
    with LedgerClient(address, token=world.reader_token, log_key=world.server.log_key,
                      state_path=tmp_path / "r.json") as client:
        result = client.provenance(hash_text("nobody attested this"))
    assert result.status is Status.UNKNOWN
    assert result.server_status_hint == "human-created"


def test_provenance_many_asks_for_status_hints_only_when_told(world: World) -> None:
    direct, batched = _attested(world)
    asked = [direct, batched, hash_text(f"nobody {world.vendor_id}")]
    with world.client(world.reader_token, "reader") as reader:
        plain = list(reader.provenance_many(asked))
        hinted = list(reader.provenance_many(asked, status_hints=True))
    expected = [Status.HUMAN_VALIDATED, Status.HUMAN_VALIDATED, Status.UNKNOWN]
    assert [r.status for r in plain] == [r.status for r in hinted] == expected
    assert [r.server_status_hint for r in plain] == ["", "", ""]
    assert [r.server_status_hint for r in hinted] == [str(s) for s in expected]


def test_trust_on_first_use_only_when_asked_and_then_pinned(
    world: World, proxy: tuple[str, _TamperingProxy], tmp_path: Path
) -> None:
    address, servicer = proxy
    with pytest.raises(ValueError, match="verifier key is required"):
        LedgerClient(address, token=world.reader_token, state_path=tmp_path / "x.json")
    state = tmp_path / "tofu.json"
    with LedgerClient(address, token=world.reader_token, state_path=state, trust_on_first_use=True) as client:
        assert client.verifier.vkey() == world.server.log_key
        assert client.trusted_checkpoint is not None
    assert pinned_vkey(state) == world.server.log_key
    # The server now signs with another key (and says so): the pin from the state file wins.
    servicer.tamper["GetCheckpoint"] = _resign_with_another_key
    with (
        LedgerClient(address, token=world.reader_token, state_path=state, trust_on_first_use=True) as client,
        pytest.raises(CheckpointError, match="not signed by the pinned log key"),
    ):
        client.checkpoint()
    assert pinned_vkey(state) == world.server.log_key


def test_service_errors_are_typed(world: World, tmp_path: Path) -> None:
    with world.client(world.reader_token, "reader") as reader, pytest.raises(LedgerRpcError) as refused:
        reader.create_vendor("sneaky")
    assert refused.value.code == "PERMISSION_DENIED"
    with (
        LedgerClient(world.server.address, token="not-a-token", log_key=world.server.log_key,
                     state_path=tmp_path / "x.json") as anonymous,
        pytest.raises(LedgerRpcError) as unauthenticated,
    ):
        anonymous.checkpoint()
    assert unauthenticated.value.code == "UNAUTHENTICATED"
    with world.client(world.vendor_token, "vendor") as vendor:
        bad = vendor.submit([attest_samples(VendorKeyPair.generate(), [hash_text("y")], VALIDATED)])
    assert not bad[0].ok and bad[0].error is not None
    assert bad[0].error.code == "INVALID_ARGUMENT"
    assert [f for f, _ in bad[0].error.fields] == ["envelope.signatures"]


# ---------------------------------------------------------------- review fixes: streams ended early


def _truncate(answers: Iterator[Any]) -> Iterator[Any]:
    """A server that answers the first message and then ends the stream with status OK."""
    yield from itertools.islice(answers, 1)


def _twice(answers: Iterator[Any]) -> Iterator[Any]:
    first = next(answers)
    yield first
    yield first


def test_provenance_stream_ended_early_is_refused(world: World, proxy: tuple[str, _TamperingProxy],
                                                  tmp_path: Path) -> None:
    address, servicer = proxy
    digests = [hash_text(f"never attested {i} {world.vendor_id}") for i in range(3)]
    state = tmp_path / "reader.json"
    with LedgerClient(address, token=world.reader_token, log_key=world.server.log_key, state_path=state) as c:
        assert [r.status for r in c.provenance_many(digests, chunk=1)] == [Status.UNKNOWN] * 3
        servicer.tamper["StreamProvenance"] = _truncate
        with pytest.raises(VerificationError, match="ended the provenance stream after answering 1 of"):
            list(c.provenance_many(digests, chunk=1))


def test_gate_refuses_a_source_that_drops_samples(world: World, tmp_path: Path) -> None:
    from anchorlog.client.gate.check import evaluate
    from anchorlog.client.gate.manifests import ManifestSample
    from anchorlog.client.gate.policy import Policy

    human = [hash_text(f"gate human {i} {world.vendor_id}") for i in range(3)]
    with world.client(world.vendor_token, "vendor") as vendor:
        assert vendor.submit([attest_samples(world.key, human, CREATED)])[0].ok
    samples = [ManifestSample(d, None, f"row {i}") for i, d in enumerate([*human, hash_text("synthetic?")])]

    class DropsTheLastAnswer:
        """A provenance source that stops short without saying so."""

        def __init__(self, client: LedgerClient) -> None:
            self.client = client

        def provenance_many(self, digests: Any, *, chunk: int = 2000, bundle: Any = None) -> Iterator[Any]:
            answers = self.client.provenance_many(digests, chunk=chunk, bundle=bundle)
            yield from itertools.islice(answers, len(samples) - 1)
            answers.close()

    with world.client(world.reader_token, "reader") as reader:
        verdicts = list(evaluate(reader, samples, Policy(), chunk=1))
        assert [v.counted for v in verdicts] == [True, True, True, False]
        with pytest.raises(VerificationError, match="row 3: no provenance answer for 1 sample"):
            list(evaluate(DropsTheLastAnswer(reader), samples, Policy(), chunk=1))


def _results_as(order: Sequence[int]) -> Tamper:
    """A server that answers each SubmitStream message with the real results rearranged."""
    def tamper(answers: Iterator[Any]) -> Iterator[Any]:
        for answer in answers:
            real = list(answer.results)
            del answer.results[:]
            answer.results.extend(real[i] for i in order)
            yield answer
    return tamper


def _shifted(answers: Iterator[Any]) -> Iterator[Any]:
    for answer in answers:
        for result in answer.results:
            result.position += 1
        yield answer


def _one_more_answer(answers: Iterator[Any]) -> Iterator[Any]:
    last = None
    for answer in answers:
        last = answer
        yield answer
    yield last


@pytest.mark.parametrize(("tamper", "per_message", "message"), [
    (_truncate, 1, "ended the submission stream without answering 1 of 2 items"),
    (_twice, 1, "answered (a message that was never sent|item 0, not one of the message's items 1..1)"),
    (_one_more_answer, 2, "answered a message that was never sent"),
    (_results_as([0, 0]), 2, "answered item 0 twice"),
    (_results_as([0]), 2, "answered 1 of the 2 items of a message"),
    (_results_as([1, 0]), 2, "out of order"),
    (_shifted, 2, "answered item 2, not one of the message's items 0..1"),
], ids=["truncated", "message-twice", "extra-message", "duplicate-position", "item-missing", "out-of-order",
        "shifted"])
def test_submit_stream_needs_one_answer_per_item(world: World, proxy: tuple[str, _TamperingProxy],
                                                 tamper: Tamper, per_message: int, message: str,
                                                 tmp_path: Path) -> None:
    address, servicer = proxy
    items = [attest_samples(world.key, [hash_text(f"stream {i} {uuid.uuid4()}")], VALIDATED) for i in range(2)]
    servicer.tamper["SubmitStream"] = tamper
    with (
        LedgerClient(address, token=world.vendor_token, log_key=world.server.log_key,
                     state_path=tmp_path / "v.json") as client,
        pytest.raises(VerificationError, match=message),
    ):
        list(client.submit_stream(items, max_items_per_message=per_message))


def test_submit_stream_sends_what_is_ready_without_waiting_for_a_full_message(
    world: World, proxy: tuple[str, _TamperingProxy], tmp_path: Path
) -> None:
    """A producer that makes its next item only after the previous one's receipt: packing
    must not wait for a full message (that would never come), and still answers every item."""
    address, servicer = proxy
    sizes: list[int] = []

    def record(answers: Iterator[pb.SubmitResponse]) -> Iterator[pb.SubmitResponse]:
        for answer in answers:
            sizes.append(len(answer.results))
            yield answer

    servicer.tamper["SubmitStream"] = record
    answered = threading.Semaphore(0)

    def one_at_a_time() -> Iterator[Submission]:
        for i in range(3):
            if i:
                assert answered.acquire(timeout=30), "item was held back waiting for a full message"
            yield attest_samples(world.key, [hash_text(f"ready {i} {uuid.uuid4()}")], VALIDATED)

    with LedgerClient(address, token=world.vendor_token, log_key=world.server.log_key,
                      state_path=tmp_path / "v.json") as client:
        outcomes = []
        for outcome in client.submit_stream(one_at_a_time()):
            outcomes.append(outcome)
            answered.release()
    assert [o.position for o in outcomes] == [0, 1, 2] and all(o.ok for o in outcomes)
    assert sizes == [1, 1, 1]


def test_submit_stream_reports_a_failing_producer_after_answering_what_was_sent(
    world: World, tmp_path: Path
) -> None:
    def breaks_after_two() -> Iterator[Submission]:
        for i in range(2):
            yield attest_samples(world.key, [hash_text(f"producer {i} {uuid.uuid4()}")], VALIDATED)
        raise OSError("manifest unreadable")

    outcomes = []
    with world.client(world.vendor_token, "vendor") as client, pytest.raises(OSError, match="manifest unreadable"):
        outcomes.extend(client.submit_stream(breaks_after_two()))
    assert len(outcomes) <= 2 and all(o.ok for o in outcomes)


def test_submit_stream_brings_its_own_consistency_proofs(world: World, proxy: tuple[str, _TamperingProxy],
                                                         tmp_path: Path) -> None:
    address, servicer = proxy
    seen: list[pb.ItemResult] = []

    def record(answers: Iterator[pb.SubmitResponse]) -> Iterator[pb.SubmitResponse]:
        for answer in answers:
            seen.extend(answer.results)
            yield answer

    items = [attest_samples(world.key, [hash_text(f"own proof {i} {uuid.uuid4()}")], VALIDATED) for i in range(40)]
    state = tmp_path / "v.json"
    with LedgerClient(address, token=world.vendor_token, log_key=world.server.log_key, state_path=state) as client:
        start = client.checkpoint().size
        assert start > 0
        servicer.refuse.add("GetConsistencyProof")
        servicer.tamper["SubmitStream"] = record
        # Small messages: several sequencer groups, so several checkpoints along the stream.
        outcomes = list(client.submit_stream(items, max_items_per_message=3))
        assert servicer.refused.get("GetConsistencyProof", 0) == 0
        servicer.refuse.clear()
    assert [o.position for o in outcomes] == list(range(40)) and all(o.ok for o in outcomes)
    # Every newer checkpoint came with a proof from the one before it (the first from `start`).
    previous = start
    for answer in seen:
        size = answer.receipt.checkpoint.size
        if size > previous:
            assert (answer.consistency.first_size, answer.consistency.second_size) == (previous, size)
            previous = size
        else:
            assert not answer.HasField("consistency")
    assert previous >= start + 40
    stored = load_trusted(state, NoteVerifier.from_vkey(world.server.log_key))
    assert stored is not None and stored.size == previous


def _tamper_first_stream_proof(answers: Iterator[pb.SubmitResponse]) -> Iterator[pb.SubmitResponse]:
    tampered = False
    for answer in answers:
        for result in answer.results:
            if not tampered and result.HasField("consistency") and result.consistency.hashes:
                result.consistency.hashes[0] = _flip(result.consistency.hashes[0], 0)
                tampered = True
        yield answer


def test_submit_stream_refuses_a_tampered_consistency_proof(world: World, proxy: tuple[str, _TamperingProxy],
                                                            tmp_path: Path) -> None:
    address, servicer = proxy
    items = [attest_samples(world.key, [hash_text(f"bad proof {i} {uuid.uuid4()}")], VALIDATED) for i in range(5)]
    state = tmp_path / "v.json"
    with LedgerClient(address, token=world.vendor_token, log_key=world.server.log_key, state_path=state) as client:
        start = client.checkpoint()
        servicer.tamper["SubmitStream"] = _tamper_first_stream_proof
        with pytest.raises((InconsistentLogError, VerificationError)):
            list(client.submit_stream(items))
        # The checkpoint the bad proof came with is not trusted: still the one from before.
        assert client._trusted == start
    stored = load_trusted(state, NoteVerifier.from_vkey(world.server.log_key))
    assert stored is not None and stored.size == start.size


# ---------------------------------------------------------------- review fixes: receipts match requests


def test_key_event_receipts_must_record_what_was_asked(world: World, proxy: tuple[str, _TamperingProxy],
                                                       tmp_path: Path) -> None:
    address, servicer = proxy
    captured: list[pb.KeyEventResponse] = []

    def capture(response: pb.KeyEventResponse) -> pb.KeyEventResponse:
        captured.append(response)
        return response

    def not_compromised(request: pb.RevokeKeyRequest) -> pb.RevokeKeyRequest:
        request.compromised = False
        return request

    with LedgerClient(address, token=world.server.admin_token, log_key=world.server.log_key,
                      state_path=tmp_path / "admin.json") as admin:
        other = f"o-{uuid.uuid4().hex[:12]}"
        servicer.tamper["CreateVendor"] = capture
        admin.create_vendor(other)
        key = VendorKeyPair.generate()
        # A receipt for another, genuinely logged key event is not a receipt for this one.
        servicer.tamper["RegisterKey"] = lambda response: _with_key_id(captured[0], key.key_id)
        with pytest.raises(VerificationError, match="records type vendor-created, the request said key-registered"):
            admin.register_key(other, key.public_key)
        # (the server did register it). The key id comes from the key, not from the server.
        second, third = VendorKeyPair.generate(), VendorKeyPair.generate()
        servicer.tamper["RegisterKey"] = lambda response: _with_key_id(response, "f" * 64)
        with pytest.raises(VerificationError, match="reported key id 'f{64}', the key's id is"):
            admin.register_key(other, second.public_key)
        del servicer.tamper["RegisterKey"]
        assert admin.register_key(other, third.public_key)[0] == third.key_id
        # A server that logs a plain revocation when asked to record a compromise.
        servicer.tamper_request["RevokeKey"] = not_compromised
        with pytest.raises(VerificationError, match="records compromised False, the request said True"):
            admin.revoke_key(other, key.key_id, compromised=True, reason="leaked")


def _with_key_id(response: pb.KeyEventResponse, key_id: str) -> pb.KeyEventResponse:
    altered = pb.KeyEventResponse()
    altered.CopyFrom(response)
    altered.key_id = key_id
    return altered


@pytest.mark.parametrize(("duplicate", "message"), [
    (True, "names submitter"), (False, "different envelope than submitted"),
], ids=["as-duplicate", "as-new"])
def test_submit_receipt_for_another_vendors_entry_is_refused(
    world: World, proxy: tuple[str, _TamperingProxy], duplicate: bool, message: str, tmp_path: Path
) -> None:
    address, servicer = proxy
    other_id = f"o-{uuid.uuid4().hex[:12]}"
    with world.client(world.server.admin_token, "admin") as admin:
        admin.create_vendor(other_id)
        other_key = VendorKeyPair.generate()
        admin.register_key(other_id, other_key.public_key)
        other_token = admin.issue_token(other_id, "vendor")
    fixed = replace(VALIDATED, performed_at=datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC))
    sample = hash_text(f"copied statement {other_id}")
    mine, theirs = attest_samples(world.key, [sample], fixed), attest_samples(other_key, [sample], fixed)
    assert Envelope.parse(mine.envelope).pae() == Envelope.parse(theirs.envelope).pae()
    captured: list[pb.SubmitResponse] = []

    def capture(response: pb.SubmitResponse) -> pb.SubmitResponse:
        captured.append(response)
        return response

    def swap(response: pb.SubmitResponse) -> pb.SubmitResponse:
        response.results[0].receipt.CopyFrom(captured[0].results[0].receipt)
        response.results[0].receipt.duplicate = duplicate
        return response

    servicer.tamper["Submit"] = capture
    with LedgerClient(address, token=world.vendor_token, log_key=world.server.log_key,
                      state_path=tmp_path / "v.json") as vendor:
        assert vendor.submit([mine])[0].ok
    servicer.tamper["Submit"] = swap
    with (
        LedgerClient(address, token=other_token, log_key=world.server.log_key,
                     state_path=tmp_path / "o.json") as other,
        pytest.raises(VerificationError, match=message),
    ):
        other.submit([theirs])


# ---------------------------------------------------------------- review fixes: dedup and dates


def test_same_statement_under_a_new_key_is_a_new_entry(world: World) -> None:
    fixed = replace(CREATED, performed_at=datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC))
    sample = hash_text(f"re-signed {world.vendor_id}")
    first = attest_samples(world.key, [sample], fixed)
    new_key = VendorKeyPair.generate()
    with world.client(world.server.admin_token, "admin") as admin:
        admin.register_key(world.vendor_id, new_key.public_key)
    with world.client(world.vendor_token, "vendor") as vendor:
        (logged,) = vendor.submit([first])
        (again,) = vendor.submit([first])  # idempotent for the same key
        (resigned,) = vendor.submit([attest_samples(new_key, [sample], fixed)])
    assert logged.receipt and again.receipt and resigned.receipt
    assert (again.receipt.index, again.receipt.duplicate) == (logged.receipt.index, True)
    assert resigned.receipt.index != logged.receipt.index and not resigned.receipt.duplicate


def test_future_performed_at_is_refused_by_the_service(world: World) -> None:
    now = datetime.now(UTC).replace(microsecond=0)
    with world.client(world.vendor_token, "vendor") as vendor:
        (future,) = vendor.submit([attest_samples(
            world.key, [hash_text(f"future {world.vendor_id}")], replace(CREATED, performed_at=now + timedelta(days=1))
        )])
        (skewed,) = vendor.submit([attest_samples(
            world.key, [hash_text(f"skewed {world.vendor_id}")], replace(CREATED, performed_at=now + timedelta(minutes=1))
        )])
    assert future.error is not None and future.error.code == "INVALID_ARGUMENT"
    assert [f for f, _ in future.error.fields] == ["predicate.performedAt"]
    assert skewed.ok, skewed.error


# ---------------------------------------------------------------- state file


def test_state_file_is_written_on_close_and_only_ever_holds_a_trusted_prefix(world: World) -> None:
    """Trust advances in memory with every verified checkpoint; the state file is
    written on the first trust, at most every STATE_SAVE_INTERVAL_S, and on close.
    Whatever it holds in between is a checkpoint this client verified and a prefix
    of the one it trusts in memory."""
    from anchorlog.client.state import load_trusted
    from anchorlog.client.verify import check_consistency

    state = world.tmp / "vendor-state.json"
    vendor = world.client(world.vendor_token, "vendor-state")
    try:
        first = vendor.checkpoint()
        assert load_trusted(state, vendor.verifier) == first  # the first trust is written at once
        outcomes = [
            vendor.submit([attest_samples(world.key, [hash_text(f"state {i}")], VALIDATED)])[0]
            for i in range(5)
        ]
        assert all(o.ok for o in outcomes)
        in_memory = vendor.trusted_checkpoint
        assert in_memory is not None and in_memory.size > first.size
        on_disk = load_trusted(state, vendor.verifier)
        assert on_disk is not None and first.size <= on_disk.size <= in_memory.size
        check_consistency(on_disk, in_memory, vendor.consistency_proof(on_disk.size, in_memory.size))
    finally:
        vendor.close()
    assert load_trusted(state, vendor.verifier) == in_memory
    # A new client starts from the saved checkpoint.
    with world.client(world.reader_token, "vendor-state") as again:
        assert again.trusted_checkpoint == in_memory


def test_closing_after_the_service_went_away_keeps_an_older_trusted_prefix(
    own_world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Writing a newer checkpoint over the file's needs a consistency proof from the
    service; when it is gone, close() succeeds and the file keeps the older one."""
    import anchorlog.client.ledger as ledger_module
    from anchorlog.client.state import load_trusted

    monkeypatch.setattr(ledger_module, "STATE_SAVE_INTERVAL_S", 3600.0)
    state = own_world.tmp / "gone-state.json"
    vendor = own_world.client(own_world.vendor_token, "gone-state")
    first = vendor.checkpoint()
    (outcome,) = vendor.submit([attest_samples(own_world.key, [hash_text("before the stop")], VALIDATED)])
    assert outcome.ok
    newer = vendor.trusted_checkpoint
    assert newer is not None and newer.size > first.size
    assert load_trusted(state, vendor.verifier) == first  # not written yet
    assert own_world.server.stop() == 0
    vendor.close()  # must not raise: the proof cannot be fetched, the file stays a valid prefix
    assert load_trusted(state, vendor.verifier) == first
