"""The check: stream a dataset's digests through the verifying client and tally them.

Digests go to :meth:`LedgerClient.provenance_many` in chunks while the manifest
is still being read; every answer is verified by the client against one signed
checkpoint before it is counted. Each sample's status is then derived locally
under the policy (trusted vendors, maximum age) by ``ledger/status.py``'s rule.
Memory stays bounded by what is in flight, so millions of samples are practical.
"""

from __future__ import annotations

import hashlib
import time
from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, NamedTuple, Protocol

from anchorlog.client.gate.manifests import ManifestSample
from anchorlog.client.gate.policy import Policy
from anchorlog.client.receipts import Bundle
from anchorlog.client.verify import SampleProvenance, VerifiedCheckpoint
from anchorlog.ledger.errors import InvalidInput, VerificationError
from anchorlog.ledger.predicates import Claim
from anchorlog.ledger.status import Status, derive_status

STATUS_ORDER = tuple(Status)
DEFAULT_CHUNK = 2000


class ProvenanceSource(Protocol):
    """What the gate needs from a client: ``LedgerClient`` is one."""

    def provenance_many(
        self, digests: Iterable[bytes], *, chunk: int = ..., bundle: list[Bundle] | None = ...
    ) -> Iterator[SampleProvenance]: ...


class Verdict(NamedTuple):
    """One sample's outcome under the policy."""

    sample: ManifestSample
    status: Status
    counted: bool
    provenance: SampleProvenance


def policy_status(result: SampleProvenance, policy: Policy, now: datetime) -> Status:
    """The sample's status when only the policy's vendors are trusted and old acts expire."""
    if policy.trusted_vendors is None and policy.max_age is None:
        return result.status
    return derive_status(
        result.facts(), trusted_vendors=policy.trusted_vendors, max_age=policy.max_age, now=now
    )


def evaluate(
    client: ProvenanceSource,
    samples: Iterable[ManifestSample],
    policy: Policy,
    *,
    now: datetime | None = None,
    chunk: int = DEFAULT_CHUNK,
    bundle: list[Bundle] | None = None,
) -> Iterator[Verdict]:
    """Verdicts in manifest order, streamed: the manifest is read as the answers come back."""
    moment = now or datetime.now(UTC)
    # The request thread of the gRPC stream pulls digests while we read answers;
    # deque append/popleft are thread-safe and keep only in-flight samples.
    in_flight: deque[ManifestSample] = deque()
    # gRPC reads the request iterator in its own thread and reports its
    # exceptions as a bare UNKNOWN status; keep the manifest's own error instead.
    failure: list[Exception] = []

    def digests() -> Iterator[bytes]:
        try:
            for sample in samples:
                in_flight.append(sample)
                yield sample.digest
        except Exception as exc:  # noqa: BLE001  (re-raised below in the caller's thread)
            failure.append(exc)

    for result in client.provenance_many(digests(), chunk=chunk, bundle=bundle):
        if failure:
            raise failure[0]
        sample = in_flight.popleft()
        if result.digest != sample.digest:
            raise VerificationError(f"{sample.locator}: answer is for another digest")
        status = policy_status(result, policy, moment)
        yield Verdict(sample, status, policy.counts(status), result)
    if failure:
        raise failure[0]
    if in_flight:
        # A sample without an answer must never silently drop out of the tally.
        raise VerificationError(
            f"{in_flight[0].locator}: no provenance answer for {len(in_flight)} sample(s); "
            "the stream ended early"
        )


@dataclass
class _Tally:
    total: int = 0
    counted: int = 0
    statuses: dict[str, int] = field(default_factory=dict)

    def add(self, status: Status, counted: bool) -> None:
        self.total += 1
        self.counted += counted
        self.statuses[status.value] = self.statuses.get(status.value, 0) + 1

    def fraction(self) -> float:
        return self.counted / self.total if self.total else 0.0


@dataclass
class _VendorTally:
    trusted: bool
    samples: int = 0
    effective: int = 0
    revoked: int = 0
    claims: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class SliceResult:
    name: str
    total: int
    grounded: int
    fraction: float
    statuses: dict[str, int]
    threshold: float
    passed: bool

    def to_json(self) -> dict[str, Any]:
        return {
            "slice": self.name,
            "total": self.total,
            "grounded": self.grounded,
            "fraction": self.fraction,
            "threshold": self.threshold,
            "passed": self.passed,
            "statuses": self.statuses,
        }


@dataclass(frozen=True)
class VendorResult:
    vendor: str
    trusted: bool
    samples: int
    effective: int
    revoked: int
    claims: dict[str, int]

    def to_json(self) -> dict[str, Any]:
        return {
            "vendor": self.vendor,
            "trusted": self.trusted,
            "samples": self.samples,
            "effective": self.effective,
            "revoked": self.revoked,
            "claims": self.claims,
        }


@dataclass(frozen=True)
class InputAttestation:
    """A log entry that made at least one counted sample human-grounded."""

    index: int
    leaf_hash: bytes
    vendor: str


@dataclass(frozen=True)
class GateResult:
    manifest: str
    policy: Policy
    checkpoint: VerifiedCheckpoint
    checked_at: datetime
    total: int
    grounded: int
    fraction: float
    statuses: dict[str, int]
    slices: tuple[SliceResult, ...]
    vendors: tuple[VendorResult, ...]
    failures: tuple[str, ...]
    dataset_digest: bytes
    input_attestations: tuple[InputAttestation, ...]
    elapsed_seconds: float

    @property
    def passed(self) -> bool:
        return not self.failures

    @property
    def failing_slices(self) -> tuple[SliceResult, ...]:
        return tuple(s for s in self.slices if not s.passed)

    def to_json(self) -> dict[str, Any]:
        cp = self.checkpoint
        return {
            "format": "anchorlog-gate-report/v1",
            "result": "PASSED" if self.passed else "FAILED",
            "passed": self.passed,
            "failures": list(self.failures),
            "manifest": self.manifest,
            "dataset_digest": {"sha256": self.dataset_digest.hex()},
            "checked_at": self.checked_at.isoformat().replace("+00:00", "Z"),
            "elapsed_seconds": round(self.elapsed_seconds, 3),
            "checkpoint": {
                "origin": cp.checkpoint.origin,
                "size": cp.size,
                "root_hash": cp.root_hash.hex(),
                "note": cp.note.decode("utf-8"),
            },
            "policy": self.policy.to_json(),
            "total": self.total,
            "grounded": self.grounded,
            "fraction": self.fraction,
            "statuses": {s.value: self.statuses.get(s.value, 0) for s in STATUS_ORDER},
            "slices": [s.to_json() for s in self.slices],
            "vendors": [v.to_json() for v in self.vendors],
            "input_attestations": [
                {"index": a.index, "leaf_hash": a.leaf_hash.hex(), "vendor": a.vendor}
                for a in self.input_attestations
            ],
        }


class GateTally:
    """Accumulates verdicts into a :class:`GateResult`; usable on its own for custom loops."""

    def __init__(self, policy: Policy, now: datetime | None = None) -> None:
        self.policy = policy
        self.now = now or datetime.now(UTC)
        self.overall = _Tally()
        self.slices: dict[str, _Tally] = {}
        self.vendors: dict[str, _VendorTally] = {}
        self.inputs: dict[int, InputAttestation] = {}
        self.checkpoint: VerifiedCheckpoint | None = None
        self._dataset = hashlib.sha256()

    def add(self, verdict: Verdict) -> None:
        sample, status, counted, result = verdict
        if self.checkpoint is None:
            self.checkpoint = result.checkpoint
        elif result.checkpoint.size != self.checkpoint.size:
            raise VerificationError("answers were verified against more than one checkpoint")
        self._dataset.update(sample.digest)
        self.overall.add(status, counted)
        if self.policy.slice_column is not None:
            name = sample.slice if sample.slice is not None else "(none)"
            self.slices.setdefault(name, _Tally()).add(status, counted)
        if result.attestations:
            self._vendors(result, counted)

    def _vendors(self, result: SampleProvenance, counted: bool) -> None:
        trusted = self.policy.trusted_vendors
        seen: dict[str, tuple[bool, bool]] = {}
        for attestation in result.attestations:
            vendor = attestation.vendor_id
            dead = attestation.entry.index in result.revoked_entries or attestation.key_compromised
            was_live, was_dead = seen.get(vendor, (False, False))
            seen[vendor] = (was_live or not dead, was_dead or dead)
            tally = self.vendors.setdefault(
                vendor, _VendorTally(trusted is None or vendor in trusted)
            )
            claim = str(attestation.predicate.claim)
            tally.claims[claim] = tally.claims.get(claim, 0) + 1
            if (
                counted
                and not dead
                and tally.trusted
                and attestation.predicate.claim is not Claim.SYNTHETIC
                and self._fresh(attestation.predicate.performed_at)
                and attestation.entry.index not in self.inputs
            ):
                self.inputs[attestation.entry.index] = InputAttestation(
                    attestation.entry.index, attestation.entry.leaf_hash, vendor
                )
        for vendor, (live, dead) in seen.items():
            tally = self.vendors[vendor]
            tally.samples += 1
            tally.effective += live
            tally.revoked += dead and not live

    def _fresh(self, performed_at: datetime) -> bool:
        return self.policy.max_age is None or self.now - performed_at <= self.policy.max_age

    def result(self, manifest: str, checked_at: datetime, elapsed: float) -> GateResult:
        if self.overall.total == 0 or self.checkpoint is None:
            raise InvalidInput("manifest", f"{manifest} has no samples")
        policy = self.policy
        slices = tuple(
            SliceResult(
                name,
                t.total,
                t.counted,
                t.fraction(),
                dict(sorted(t.statuses.items())),
                policy.slice_threshold,
                t.fraction() >= policy.slice_threshold,
            )
            for name, t in sorted(self.slices.items())
        )
        failures = []
        if self.overall.fraction() < policy.min_fraction:
            failures.append(
                f"overall: {self.overall.counted}/{self.overall.total} human-grounded "
                f"({self.overall.fraction():.2%}) is below {policy.min_fraction:.2%}"
            )
        failures += [
            f"slice {s.name!r}: {s.grounded}/{s.total} human-grounded ({s.fraction:.2%}) is below "
            f"{s.threshold:.2%}"
            for s in slices
            if not s.passed
        ]
        return GateResult(
            manifest=manifest,
            policy=policy,
            checkpoint=self.checkpoint,
            checked_at=checked_at,
            total=self.overall.total,
            grounded=self.overall.counted,
            fraction=self.overall.fraction(),
            statuses=dict(self.overall.statuses),
            slices=slices,
            vendors=tuple(
                VendorResult(
                    v, t.trusted, t.samples, t.effective, t.revoked, dict(sorted(t.claims.items()))
                )
                for v, t in sorted(self.vendors.items())
            ),
            failures=tuple(failures),
            dataset_digest=self._dataset.digest(),
            input_attestations=tuple(self.inputs[i] for i in sorted(self.inputs)),
            elapsed_seconds=elapsed,
        )


def check_dataset(
    client: ProvenanceSource,
    samples: Iterable[ManifestSample],
    policy: Policy,
    *,
    manifest: str = "dataset",
    chunk: int = DEFAULT_CHUNK,
    progress: bool = False,
    total: int | None = None,
    bundle: list[Bundle] | None = None,
    grounded: dict[bytes, Status] | None = None,
    now: datetime | None = None,
) -> GateResult:
    """Check a dataset against the ledger under ``policy``.

    With ``bundle`` (a list), the raw bundle of everything the stream verified is
    appended to it; :func:`anchorlog.client.gate.bundle.grounded_bundle` keeps the
    human-grounded part, whose digests and policy statuses are collected into
    ``grounded`` (a dict) when given. ``progress`` shows a tqdm bar on stderr.
    """
    from tqdm import tqdm

    checked_at = (now or datetime.now(UTC)).replace(microsecond=0)
    started = time.perf_counter()
    tally = GateTally(policy, checked_at)
    verdicts = evaluate(client, samples, policy, now=checked_at, chunk=chunk, bundle=bundle)
    with tqdm(
        total=total,
        desc="checking",
        unit="sample",
        unit_scale=True,
        disable=not progress,
        mininterval=0.5,
    ) as bar:
        pending = 0
        for verdict in verdicts:
            tally.add(verdict)
            if grounded is not None and verdict.counted:
                grounded[verdict.sample.digest] = verdict.status
            pending += 1
            if pending >= 1000:
                bar.update(pending)
                pending = 0
        bar.update(pending)
    return tally.result(manifest, checked_at, time.perf_counter() - started)
