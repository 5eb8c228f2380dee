"""``--bundle``: the verified provenance of every human-grounded sample, for offline re-checks.

The file is an ``anchorlog-bundle/v1`` document (see ``client/receipts.py``), so
``anchorlog verify`` checks it with the log's verifier key alone: every entry's
inclusion in the one checkpoint, the vendor key registry replayed from the
key-event entries, every sample's status re-derived. Its ``samples`` hold only
the samples the gate counted, and an extra ``gate`` member records the decision
and the policy, so :func:`verify_gate_bundle` can also re-derive each sample's
status under that policy (trusted vendors, maximum age at the time of the check)
and confirm that every one of them counts.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from typing import Any

from anchorlog.client.gate.check import GateResult, policy_status
from anchorlog.client.gate.policy import Policy, parse_duration
from anchorlog.client.receipts import Bundle, verify_bundle
from anchorlog.ledger.entry import EntryKind, decode_entry
from anchorlog.ledger.errors import InvalidInput, VerificationError
from anchorlog.ledger.note import NoteVerifier
from anchorlog.ledger.status import Status

GATE_BUNDLE_MEMBER = "gate"


def grounded_bundle(raw: Bundle, grounded: Collection[bytes]) -> Bundle:
    """The part of ``raw`` about the ``grounded`` digests, with only the entries they need."""
    samples = tuple((claim, status) for claim, status in raw.samples if claim.digest in grounded)
    missing = len(set(grounded)) - len(samples)
    if missing:
        raise VerificationError(f"{missing} counted samples are missing from the verified stream")
    needed = {
        index
        for index, (data, _) in raw.entries.items()
        if decode_entry(data).kind is EntryKind.KEY_EVENT
    }
    for claim, _ in samples:
        needed.update(index for index, _ in claim.hits)
        needed.update(claim.revocation_indices)
    return Bundle(
        checkpoint=raw.checkpoint,
        entries={i: raw.entries[i] for i in sorted(needed)},
        samples=samples,
    )


def gate_bundle_json(
    bundle: Bundle, result: GateResult, statuses: Mapping[bytes, Status]
) -> dict[str, Any]:
    """The bundle document with the gate's decision, policy and per-sample policy status."""
    if bundle.checkpoint != result.checkpoint.note:
        raise VerificationError(
            "bundle and gate result were verified against different checkpoints"
        )
    doc = bundle.to_json()
    for sample in doc["samples"]:
        sample["policyStatus"] = statuses[bytes.fromhex(sample["digest"])].value
    doc[GATE_BUNDLE_MEMBER] = {
        "result": "PASSED" if result.passed else "FAILED",
        "manifest": result.manifest,
        "datasetDigest": {"sha256": result.dataset_digest.hex()},
        "checkedAt": result.checked_at.isoformat().replace("+00:00", "Z"),
        "policy": result.policy.to_json(),
        "total": result.total,
        "grounded": result.grounded,
        "groundedUnique": len(bundle.samples),
    }
    return doc


def _policy_from_json(doc: Mapping[str, Any]) -> Policy:
    max_age = doc.get("max_age")
    return Policy().override(
        min_fraction=doc.get("min_fraction"),
        min_slice_fraction=doc.get("min_slice_fraction"),
        slice_column=doc.get("slice_column"),
        counted_statuses=doc.get("counted_statuses"),
        trusted_vendors=doc.get("trusted_vendors"),
        max_age=parse_duration(max_age) if max_age is not None else None,
    )


def verify_gate_bundle(doc: Mapping[str, Any], verifier: NoteVerifier) -> dict[str, Any]:
    """Offline: the bundle verifies and every sample in it counts under the recorded policy."""
    from datetime import datetime

    gate = doc.get(GATE_BUNDLE_MEMBER)
    if not isinstance(gate, Mapping):
        raise VerificationError("not a gate bundle: no 'gate' member")
    try:
        policy = _policy_from_json(gate["policy"])
        checked_at = datetime.fromisoformat(str(gate["checkedAt"]))
        expected = int(gate["groundedUnique"])
    except (KeyError, TypeError, ValueError, InvalidInput) as exc:
        raise VerificationError(f"gate bundle has a malformed 'gate' member: {exc}") from None
    results = verify_bundle(Bundle.from_json(doc), verifier)
    if len(results) != expected:
        raise VerificationError(
            f"gate bundle says {expected} grounded samples but holds {len(results)}"
        )
    stated = {s["digest"]: s.get("policyStatus") for s in doc["samples"]}
    for result in results:
        status = policy_status(result, policy, checked_at)
        if not policy.counts(status):
            raise VerificationError(
                f"sample {result.digest.hex()} is {status.value} under the recorded policy, not human-grounded"
            )
        if stated.get(result.digest.hex()) != status.value:
            raise VerificationError(
                f"sample {result.digest.hex()}: bundle states policy status "
                f"{stated.get(result.digest.hex())!r} but the evidence gives {status.value!r}"
            )
    return {
        "valid": True,
        "samples": len(results),
        "result": gate.get("result"),
        "checkpoint_size": results[0].checkpoint.size if results else None,
        "policy": policy.to_json(),
    }
