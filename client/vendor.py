"""Vendor side: keys, sample hashing and signed statements ready to submit.

Hashing (the rule names go into every predicate, so vendors and builders hash alike):
``hash_bytes`` (``raw-bytes``), ``hash_file`` (``raw-bytes``, streamed),
``hash_text`` (``utf8-nfc-v1``), ``hash_json`` (``rfc8785-jcs-v1``).
"""

from __future__ import annotations

import base64
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from anchorlog.client.ledger import Submission
from anchorlog.ledger.batch import (
    BATCH_SUBJECT_NAME,
    batch_root,
    encode_batch_digests,
    sort_digests,
)
from anchorlog.ledger.digests import Canonicalization
from anchorlog.ledger.digests import digest_bytes as hash_bytes
from anchorlog.ledger.digests import digest_file as hash_file
from anchorlog.ledger.digests import digest_json as hash_json
from anchorlog.ledger.digests import digest_text as hash_text
from anchorlog.ledger.dsse import PAYLOAD_TYPE_INTOTO, ed25519_key_id, sign_envelope
from anchorlog.ledger.errors import InvalidInput
from anchorlog.ledger.predicates import (
    PROVENANCE_V1,
    REVOCATION_V1,
    BatchInfo,
    Claim,
    ProvenancePredicate,
    RevocationPredicate,
    default_source_type,
    revocation_subject,
)
from anchorlog.ledger.statement import Subject, build_statement
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

KEY_HEADER = "anchorlog-ed25519-private-key-v1"

__all__ = [
    "ClaimDetails",
    "VendorKeyPair",
    "attest_batch",
    "attest_samples",
    "hash_bytes",
    "hash_file",
    "hash_json",
    "hash_text",
    "revoke_entries",
]


@dataclass(frozen=True)
class VendorKeyPair:
    """A vendor's Ed25519 signing key. ``repr`` never shows the secret."""

    private_key: Ed25519PrivateKey

    @classmethod
    def generate(cls) -> VendorKeyPair:
        return cls(Ed25519PrivateKey.generate())

    @property
    def public_key(self) -> bytes:
        return self.private_key.public_key().public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw
        )

    @property
    def key_id(self) -> str:
        return ed25519_key_id(self.public_key)

    def __repr__(self) -> str:
        return f"VendorKeyPair(key_id={self.key_id!r})"

    def save(self, path: Path) -> None:
        """Write the private key, mode 0600 from creation; refuses to overwrite."""
        seed = self.private_key.private_bytes(
            serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption()
        )
        text = f"{KEY_HEADER}\n{base64.b64encode(seed).decode()}\n"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(text)

    @classmethod
    def load(cls, path: Path) -> VendorKeyPair:
        """Read a key written by :meth:`save`; refuses a file others can read."""
        mode = path.stat().st_mode & 0o777
        if mode & 0o077:
            raise InvalidInput(str(path), f"private key file is mode {mode:o}; it must be 0600")
        lines = path.read_text().split()
        if len(lines) != 2 or lines[0] != KEY_HEADER:
            raise InvalidInput(str(path), f"not an {KEY_HEADER} file")
        try:
            seed = base64.b64decode(lines[1], validate=True)
        except ValueError:
            raise InvalidInput(str(path), "key is not valid base64") from None
        if len(seed) != 32:
            raise InvalidInput(str(path), "key must be a 32-byte Ed25519 seed")
        return cls(Ed25519PrivateKey.from_private_bytes(seed))


@dataclass(frozen=True)
class ClaimDetails:
    """What the vendor attests about the samples (the provenance predicate)."""

    claim: Claim
    canonicalization: Canonicalization
    actor_id: str
    method: str
    performed_at: datetime | None = None
    source_type: str | None = None
    evidence: str | None = None
    generator_model: str | None = None
    parent_digests: tuple[bytes, ...] = ()

    def predicate(self, batch: BatchInfo | None = None) -> ProvenancePredicate:
        return ProvenancePredicate(
            claim=self.claim,
            canonicalization=self.canonicalization,
            source_type=self.source_type or default_source_type(self.claim),
            actor_id=self.actor_id,
            method=self.method,
            performed_at=(self.performed_at or datetime.now(UTC)).replace(microsecond=0),
            evidence=self.evidence,
            generator_model=self.generator_model,
            parent_digests=self.parent_digests,
            batch=batch,
        )


def attest_samples(
    key: VendorKeyPair, digests: Sequence[bytes], details: ClaimDetails, *, names: Sequence[str] | None = None
) -> Submission:
    """One envelope naming each sample digest as a subject."""
    subjects = [
        Subject(name=(names[i] if names else f"sample/{d.hex()[:16]}"), digest=d)
        for i, d in enumerate(digests)
    ]
    payload = build_statement(subjects, PROVENANCE_V1, details.predicate().to_json())
    return Submission(envelope=sign_envelope(PAYLOAD_TYPE_INTOTO, payload, key.private_key))


def attest_batch(key: VendorKeyPair, digests: Iterable[bytes], details: ClaimDetails) -> Submission:
    """One envelope committing to a batch root over the sorted sample digests."""
    ordered = sort_digests(digests)
    root = batch_root(ordered)
    subject = Subject(name=BATCH_SUBJECT_NAME, digest=root)
    predicate = details.predicate(BatchInfo(size=len(ordered)))
    payload = build_statement([subject], PROVENANCE_V1, predicate.to_json())
    return Submission(
        envelope=sign_envelope(PAYLOAD_TYPE_INTOTO, payload, key.private_key),
        batch_digests=encode_batch_digests(ordered),
    )


def revoke_entries(
    key: VendorKeyPair, targets: Sequence[tuple[int, bytes]], reason: str
) -> Submission:
    """A revocation of earlier entries ``(log index, leaf hash)`` of the same vendor."""
    subjects = [revocation_subject(index, leaf) for index, leaf in targets]
    predicate = RevocationPredicate(reason=reason, revoked_at=datetime.now(UTC).replace(microsecond=0))
    payload = build_statement(subjects, REVOCATION_V1, predicate.to_json())
    return Submission(envelope=sign_envelope(PAYLOAD_TYPE_INTOTO, payload, key.private_key))
