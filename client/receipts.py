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
from pathlib import Path
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
from anchorlog.ledger.status import Status

RECEIPT_FORMAT = "anchorlog-receipt/v1"
BUNDLE_FORMAT = "anchorlog-bundle/v1"


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _unb64(value: Any, where: str) -> bytes:
    if not isinstance(value, str):
        raise VerificationError(f"{where}: expected a base64 string")
    try:
        raw = base64.b64decode(value, validate=True)
    except ValueError:
        raise VerificationError(f"{where}: invalid base64") from None
    # Only the canonical spelling: every change to the text is a change to the bytes.
    if _b64(raw) != value:
        raise VerificationError(f"{where}: non-canonical base64")
    return raw


def _text(value: Any, where: str) -> bytes:
    if not isinstance(value, str):
        raise VerificationError(f"{where}: expected a string")
    try:
        return value.encode("utf-8")
    except UnicodeEncodeError as exc:  # a lone surrogate (a JSON "\\ud800" escape)
        raise VerificationError(f"{where}: not valid Unicode text (position {exc.start})") from None


def _list(value: Any, where: str) -> list[Any]:
    if not isinstance(value, list):
        raise VerificationError(f"{where}: expected a list")
    return value


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
                hashes=tuple(
                    _unb64(h, "inclusionProof.hashes") for h in _list(proof["hashes"], "inclusionProof.hashes")
                ),
                checkpoint=_text(doc["checkpoint"], "checkpoint"),
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
        statuses = {str(s) for s in Status}
        try:
            entries: dict[int, tuple[bytes, tuple[bytes, ...]]] = {}
            for e in _list(doc["entries"], "entries"):
                index = _int(e["index"], "entries.index")
                if index in entries:
                    raise VerificationError(f"entries: index {index} appears twice")
                hashes = tuple(_unb64(h, "entries.hashes") for h in _list(e["hashes"], "entries.hashes"))
                entries[index] = (_unb64(e["data"], "entries.data"), hashes)
            samples = []
            for s in _list(doc["samples"], "samples"):
                digest = _digest_hex(s["digest"])
                hits = tuple(
                    (_int(h["entryIndex"], "hits.entryIndex"), _path_from_json(h.get("batchPath")))
                    for h in _list(s["hits"], "samples.hits")
                )
                revocations = tuple(
                    _int(r, "revocations") for r in _list(s["revocations"], "samples.revocations")
                )
                status = s["status"]
                if status not in statuses:
                    raise VerificationError(f"samples.status: unknown status {status!r}")
                samples.append((DigestClaim(digest, hits, revocations), status))
            return cls(_text(doc["checkpoint"], "checkpoint"), entries, tuple(samples))
        except (KeyError, TypeError, AttributeError) as exc:
            raise VerificationError(f"bundle is malformed: missing or wrong field {exc}") from None


def _digest_hex(value: Any) -> bytes:
    if not isinstance(value, str) or len(value) != 64 or value != value.lower():
        raise VerificationError("samples.digest: expected 64 lower-case hex characters")
    try:
        return bytes.fromhex(value)
    except ValueError:
        raise VerificationError("samples.digest: expected 64 lower-case hex characters") from None


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
    if not isinstance(doc, Mapping):
        raise VerificationError("batchPath: expected an object or null")
    return BatchPath(
        leaf_index=_int(doc["leafIndex"], "batchPath.leafIndex"),
        batch_size=_int(doc["batchSize"], "batchPath.batchSize"),
        hashes=tuple(_unb64(h, "batchPath.hashes") for h in _list(doc["hashes"], "batchPath.hashes")),
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
    receipt = Receipt.from_json(doc)
    entry = verify_receipt(receipt, verifier)
    return {
        "valid": True, "kind": "receipt", "index": entry.index, "submitter": entry.entry.submitter,
        "entry_kind": entry.entry.kind.name.lower().replace("_", "-"),
        "leaf_hash": entry.leaf_hash.hex(), "tree_size": receipt.tree_size,
        "summary": f"receipt valid: entry {entry.index} by {entry.entry.submitter} is in the log "
        f"(checkpoint size {receipt.tree_size})",
    }


def dumps(doc: Mapping[str, Any]) -> str:
    return json.dumps(doc, indent=2, sort_keys=False) + "\n"


def save_receipt(receipt: Receipt, directory: Path) -> Path:
    """Write ``receipt-<index>.json`` in ``directory`` (created if needed); returns its path."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"receipt-{receipt.index}.json"
    path.write_text(dumps(receipt.to_json()))
    return path


def load_document(path: Path) -> Any:
    """Read a receipt or bundle file as JSON (verification is separate: :func:`verify_document`)."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except ValueError as exc:  # JSONDecodeError, UnicodeDecodeError, ints beyond the digit limit
        raise VerificationError(f"{path} is not a JSON document: {exc}") from exc
