"""Checking a submitted attestation envelope before any key is consulted.

``check_attestation`` does everything that needs no key registry: the DSSE
envelope parses, its payload type is in-toto, the statement is a valid Statement
v1 under one of anchorlog's predicate types, the predicate is valid, and for a
batch statement the digests sent along hash to the signed batch root. The
signature is checked afterwards against keys from the registry (the envelope's
``keyid`` is never trusted to pick one).
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass

from anchorlog.ledger.batch import BATCH_SUBJECT_NAME, batch_root, parse_batch_digests
from anchorlog.ledger.dsse import PAYLOAD_TYPE_INTOTO, Envelope
from anchorlog.ledger.errors import InvalidInput
from anchorlog.ledger.predicates import (
    PROVENANCE_V1,
    REVOCATION_V1,
    PredicateMemo,
    ProvenancePredicate,
    RevocationPredicate,
    parse_revocation_targets,
)
from anchorlog.ledger.statement import Statement, parse_statement

DEFAULT_MAX_ENVELOPE_BYTES = 4 << 20


@dataclass(frozen=True)
class Attestation:
    envelope: Envelope
    statement: Statement
    predicate: ProvenancePredicate | RevocationPredicate
    # Digests of the samples named directly as subjects (empty for batches and revocations).
    sample_digests: tuple[bytes, ...]
    # For a batch statement: its sorted sample digests, concatenated.
    batch_digests: bytes = b""


def check_attestation(
    envelope_bytes: bytes,
    batch_digests: bytes = b"",
    *,
    max_subjects: int,
    max_batch: int,
    max_envelope_bytes: int = DEFAULT_MAX_ENVELOPE_BYTES,
    predicates: PredicateMemo | None = None,
) -> Attestation:
    """Validate an envelope (and its batch digests) fully, except its signature.

    ``predicates`` parses provenance predicates (the same verdicts as
    ``ProvenancePredicate.parse``, remembering the valid ones).
    """
    envelope = Envelope.parse(envelope_bytes, max_bytes=max_envelope_bytes)
    if envelope.payload_type != PAYLOAD_TYPE_INTOTO:
        raise InvalidInput(
            "envelope.payloadType",
            f"must be {PAYLOAD_TYPE_INTOTO!r}, got {envelope.payload_type[:80]!r}",
        )
    statement = parse_statement(envelope.payload, max_subjects=max_subjects)
    if statement.predicate_type == REVOCATION_V1:
        predicate: ProvenancePredicate | RevocationPredicate = RevocationPredicate.parse(
            statement.predicate
        )
        parse_revocation_targets(statement)
        if batch_digests:
            raise InvalidInput("batch_digests", "a revocation carries no batch digests")
        return Attestation(envelope, statement, predicate, ())
    if statement.predicate_type != PROVENANCE_V1:
        raise InvalidInput(
            "statement.predicateType",
            f"unknown predicate type {statement.predicate_type[:120]!r}; "
            f"expected {PROVENANCE_V1} or {REVOCATION_V1}",
        )
    predicate = (
        ProvenancePredicate.parse(statement.predicate)
        if predicates is None
        else predicates.parse(statement.predicate)
    )
    if predicate.batch is None:
        if batch_digests:
            raise InvalidInput(
                "batch_digests", "sent with a statement that has no batch root (predicate.batch)"
            )
        if BATCH_SUBJECT_NAME in statement.subject_names:
            raise InvalidInput(
                f"statement.subject[{statement.subject_names.index(BATCH_SUBJECT_NAME)}].name",
                f"{BATCH_SUBJECT_NAME} is reserved for batch statements",
            )
        return Attestation(envelope, statement, predicate, statement.digests())
    if len(statement.subjects) != 1 or statement.subjects[0].name != BATCH_SUBJECT_NAME:
        raise InvalidInput(
            "statement.subject", f"a batch statement has exactly one subject {BATCH_SUBJECT_NAME!r}"
        )
    if not batch_digests:
        raise InvalidInput("batch_digests", "required: the statement commits to a batch root")
    blob = parse_batch_digests(batch_digests, max_count=max_batch)
    count = len(blob) // 32
    if count != predicate.batch.size:
        raise InvalidInput(
            "batch_digests", f"{count} digests sent but the statement signs a batch of {predicate.batch.size}"
        )
    root = batch_root(blob)
    if not hmac.compare_digest(root, statement.subjects[0].digest):
        raise InvalidInput(
            "batch_digests",
            f"digests hash to root {root.hex()[:16]}…, not the signed batch root "
            f"{statement.subjects[0].digest.hex()[:16]}…",
        )
    return Attestation(envelope, statement, predicate, (), blob)
