"""The gate decision in the shape of a SLSA Verification Summary (VSA v1).

An in-toto Statement v1 whose subject is the dataset (named by its dataset
digest: SHA-256 over the samples' digests in manifest order) and whose predicate
``https://slsa.dev/verification_summary/v1`` records the verifier, the time, the
policy (with the SHA-256 of its RFC 8785 canonical JSON), PASSED/FAILED and the
log entries the decision rests on (``inputAttestations``: every attestation that
made a counted sample human-grounded, by log index and leaf hash). It is
unsigned here; sign it with any DSSE tool if it must travel.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version
from typing import Any

from anchorlog.client.gate.check import GateResult
from anchorlog.ledger.digests import digest_json

VSA_PREDICATE_TYPE = "https://slsa.dev/verification_summary/v1"
STATEMENT_TYPE = "https://in-toto.io/Statement/v1"
VERIFIER_ID = "https://anchorlog.dev/gate/v1"


def _version() -> str:
    try:
        return version("anchorlog")
    except PackageNotFoundError:
        return "unknown"


def verification_summary(
    result: GateResult, *, resource_uri: str, policy_uri: str | None = None
) -> dict[str, Any]:
    cp = result.checkpoint
    policy = result.policy.to_json()
    return {
        "_type": STATEMENT_TYPE,
        "subject": [{"name": result.manifest, "digest": {"sha256": result.dataset_digest.hex()}}],
        "predicateType": VSA_PREDICATE_TYPE,
        "predicate": {
            "verifier": {"id": VERIFIER_ID, "version": {"anchorlog": _version()}},
            "timeVerified": result.checked_at.isoformat().replace("+00:00", "Z"),
            "resourceUri": resource_uri,
            "policy": {
                "uri": policy_uri or "anchorlog:gate-policy/inline",
                "digest": {"sha256": digest_json(policy).hex()},
                "content": policy,
            },
            "inputAttestations": [
                {
                    "uri": f"anchorlog:{cp.checkpoint.origin}/entry/{a.index}",
                    "digest": {"sha256": a.leaf_hash.hex()},
                }
                for a in result.input_attestations
            ],
            "verificationResult": "PASSED" if result.passed else "FAILED",
            "verifiedLevels": [] if result.passed else ["FAILED"],
            "slsaVersion": "1.0",
            "anchorlog": {
                "checkpoint": cp.note.decode("utf-8"),
                "total": result.total,
                "grounded": result.grounded,
                "fraction": result.fraction,
                "failures": list(result.failures),
            },
        },
    }
