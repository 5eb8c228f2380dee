"""Offline receipts and bundles: self-contained JSON that verifies with the log key alone.

Receipt (``anchorlog-receipt/v1``)::

    {"format": "anchorlog-receipt/v1",
     "checkpoint": "<signed note text>",
     "entry": {"index": 12, "data": "<base64 leaf bytes>"},
     "inclusionProof": {"treeSize": 40, "hashes": ["<base64>", ...]}}

Bundle (``anchorlog-bundle/v1``): the verified provenance of many samples
against one checkpoint::

    {"format": "anchorlog-bundle/v1",
     "checkpoint": "<signed note text>",
     "entries": [{"index": 3, "data": "<base64>", "hashes": ["<base64>", ...]}, ...],
     "samples": [{"digest": "<hex>", "status": "human-validated",
                  "hits": [{"entryIndex": 3, "batchPath": null |
                            {"leafIndex": 5, "batchSize": 100, "hashes": ["<base64>"]}}],
                  "revocations": [7]}, ...]}

``entries`` holds every attestation, revocation and key-event entry the samples
need, each with its inclusion proof against the checkpoint; verifying a bundle
replays the vendor key registry from its key-event entries, re-derives every
status and refuses the bundle if any stated status differs.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from anchorlog.client.verify import (
    DigestClaim,
    SampleProvenance,
    VerifiedCheckpoint,
    VerifiedEntry,
    check_checkpoint,
    check_entry,
    check_provenance,
    key_state,
)
from anchorlog.ledger.batch import BatchPath
from anchorlog.ledger.errors import VerificationError
from anchorlog.ledger.note import NoteVerifier

RECEIPT_FORMAT = "anchorlog-receipt/v1"
BUNDLE_FORMAT = "anchorlog-bundle/v1"


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _unb64(value: Any, where: str) -> bytes:
    if not isinstance(value, str):
        raise VerificationError(f"{where}: expected a base64 string")
    try:
        return base64.b64decode(value, validate=True)
    except ValueError:
        raise VerificationError(f"{where}: invalid base64") from None


def _int(value: Any, where: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise VerificationError(f"{where}: expected a non-negative integer")
    return value


@dataclass(frozen=True)
class Receipt:
    index: int
    data: bytes
    tree_size: int
    hashes: tuple[bytes, ...]
    checkpoint: bytes
    duplicate: bool = False

    def to_json(self) -> dict[str, Any]:
        return {
            "format": RECEIPT_FORMAT,
            "checkpoint": self.checkpoint.decode("utf-8"),
            "entry": {"index": self.index, "data": _b64(self.data)},
            "inclusionProof": {"treeSize": self.tree_size, "hashes": [_b64(h) for h in self.hashes]},
        }

    @classmethod
    def from_json(cls, doc: Mapping[str, Any]) -> Receipt:
        if not isinstance(doc, Mapping) or doc.get("format") != RECEIPT_FORMAT:
            raise VerificationError(f"not an {RECEIPT_FORMAT} document")
        try:
            entry, proof = doc["entry"], doc["inclusionProof"]
            return cls(
                index=_int(entry["index"], "entry.index"),
                data=_unb64(entry["data"], "entry.data"),
                tree_size=_int(proof["treeSize"], "inclusionProof.treeSize"),
                hashes=tuple(_unb64(h, "inclusionProof.hashes") for h in proof["hashes"]),
                checkpoint=str(doc["checkpoint"]).encode("utf-8"),
            )
        except (KeyError, TypeError) as exc:
            raise VerificationError(f"receipt is missing a field: {exc}") from None


def verify_receipt(receipt: Receipt, verifier: NoteVerifier) -> VerifiedEntry:
    """Offline: the checkpoint is signed by the log and includes the entry."""
    checkpoint = check_checkpoint(receipt.checkpoint, verifier)
    return check_entry(receipt.index, receipt.data, receipt.hashes, receipt.tree_size, checkpoint)


@dataclass(frozen=True)
class Bundle:
    checkpoint: bytes
    entries: Mapping[int, tuple[bytes, tuple[bytes, ...]]]
    samples: tuple[tuple[DigestClaim, str], ...]

    def to_json(self) -> dict[str, Any]:
        return {
            "format": BUNDLE_FORMAT,
            "checkpoint": self.checkpoint.decode("utf-8"),
            "entries": [
                {"index": i, "data": _b64(data), "hashes": [_b64(h) for h in hashes]}
                for i, (data, hashes) in sorted(self.entries.items())
            ],
            "samples": [
                {
                    "digest": claim.digest.hex(),
                    "status": status,
                    "hits": [
                        {"entryIndex": index, "batchPath": _path_json(path)}
                        for index, path in claim.hits
                    ],
                    "revocations": list(claim.revocation_indices),
                }
                for claim, status in self.samples
            ],
        }

    @classmethod
    def from_json(cls, doc: Mapping[str, Any]) -> Bundle:
        if not isinstance(doc, Mapping) or doc.get("format") != BUNDLE_FORMAT:
            raise VerificationError(f"not an {BUNDLE_FORMAT} document")
        try:
            entries = {
                _int(e["index"], "entries.index"): (
                    _unb64(e["data"], "entries.data"),
                    tuple(_unb64(h, "entries.hashes") for h in e["hashes"]),
                )
                for e in doc["entries"]
            }
            samples = []
            for s in doc["samples"]:
                digest = bytes.fromhex(s["digest"])
                hits = tuple(
                    (_int(h["entryIndex"], "hits.entryIndex"), _path_from_json(h.get("batchPath")))
                    for h in s["hits"]
                )
                revocations = tuple(_int(r, "revocations") for r in s["revocations"])
                samples.append((DigestClaim(digest, hits, revocations), str(s["status"])))
            return cls(str(doc["checkpoint"]).encode("utf-8"), entries, tuple(samples))
        except (KeyError, TypeError, ValueError) as exc:
            raise VerificationError(f"bundle is malformed: {exc}") from None


def _path_json(path: BatchPath | None) -> dict[str, Any] | None:
    if path is None:
        return None
    return {
        "leafIndex": path.leaf_index,
        "batchSize": path.batch_size,
        "hashes": [_b64(h) for h in path.hashes],
    }


def _path_from_json(doc: Any) -> BatchPath | None:
    if doc is None:
        return None
    return BatchPath(
        leaf_index=_int(doc["leafIndex"], "batchPath.leafIndex"),
        batch_size=_int(doc["batchSize"], "batchPath.batchSize"),
        hashes=tuple(_unb64(h, "batchPath.hashes") for h in doc["hashes"]),
    )


def verify_entries(
    entries: Mapping[int, tuple[bytes, Sequence[bytes]]], checkpoint: VerifiedCheckpoint
) -> dict[int, VerifiedEntry]:
    return {
        index: check_entry(index, data, hashes, checkpoint.size, checkpoint)
        for index, (data, hashes) in entries.items()
    }


def verify_bundle(bundle: Bundle, verifier: NoteVerifier) -> list[SampleProvenance]:
    """Offline: every entry included, key state replayed, every stated status re-derived."""
    checkpoint = check_checkpoint(bundle.checkpoint, verifier)
    verified = verify_entries(bundle.entries, checkpoint)
    registry = key_state(verified.values(), verifier)
    results = []
    for claim, stated in bundle.samples:
        result = check_provenance(claim, verified, registry, checkpoint)
        if str(result.status) != stated:
            raise VerificationError(
                f"sample {claim.digest.hex()}: bundle states {stated!r} but the evidence "
                f"gives {str(result.status)!r}"
            )
        results.append(result)
    return results


def verify_document(doc: Any, verifier: NoteVerifier) -> dict[str, Any]:
    """Verify a receipt or bundle JSON document; a summary of what it proves."""
    if isinstance(doc, Mapping) and doc.get("format") == BUNDLE_FORMAT:
        results = verify_bundle(Bundle.from_json(doc), verifier)
        counts: dict[str, int] = {}
        for r in results:
            counts[str(r.status)] = counts.get(str(r.status), 0) + 1
        return {
            "valid": True, "kind": "bundle", "samples": len(results), "statuses": counts,
            "summary": f"bundle valid: {len(results)} samples verified {counts}",
        }
    entry = verify_receipt(Receipt.from_json(doc), verifier)
    return {
        "valid": True, "kind": "receipt", "index": entry.index, "submitter": entry.entry.submitter,
        "summary": f"receipt valid: entry {entry.index} by {entry.entry.submitter} is in the log",
    }


def dumps(doc: Mapping[str, Any]) -> str:
    return json.dumps(doc, indent=2, sort_keys=False) + "\n"
