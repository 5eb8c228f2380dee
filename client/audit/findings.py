"""Typed audit findings: which log index, which check, what was seen.

A finding is a value (frozen, JSON-able). Findings of one kind are capped so a
single early break (say, a dropped entry in a million) yields a readable
report, while the count of suppressed findings is kept and reported.
"""

from __future__ import annotations

import enum
from collections import Counter
from dataclasses import dataclass, field
from typing import Any


class Check(enum.StrEnum):
    """The check that failed. Values are stable identifiers for tooling."""

    CHECKPOINT_SIGNATURE = "checkpoint-signature"
    CHECKPOINT_ROW = "checkpoint-row"
    CHECKPOINT_ROOT = "checkpoint-root"
    CHECKPOINT_CONSISTENCY = "checkpoint-consistency"
    CHECKPOINT_ROLLBACK = "checkpoint-rollback"
    ENTRY_MISSING = "entry-missing"
    ENTRY_EXTRA = "entry-extra"
    ENTRY_DECODE = "entry-decode"
    ENTRY_INDEX = "entry-index"
    LEAF_HASH = "leaf-hash"
    HASH_CHAIN = "hash-chain"
    KEY_EVENT = "key-event"
    SIGNATURE = "signature"
    STATEMENT = "statement"
    REVOCATION_TARGET = "revocation-target"
    BATCH_DIGESTS = "batch-digests"


@dataclass(frozen=True)
class Finding:
    """One failed check. ``index`` is the log index it concerns, None for the whole log."""

    check: Check
    index: int | None
    message: str
    details: tuple[tuple[str, str | int], ...] = ()

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"check": str(self.check), "index": self.index, "message": self.message}
        if self.details:
            out["details"] = dict(self.details)
        return out

    def __str__(self) -> str:
        where = "log" if self.index is None else f"entry {self.index}"
        return f"[{self.check}] {where}: {self.message}"


@dataclass
class FindingSink:
    """Collects findings, keeping at most ``per_check`` of each check.

    Mutable on purpose: one sink accumulates a whole pass over the log.
    """

    per_check: int = 100
    findings: list[Finding] = field(default_factory=list)
    counts: Counter[Check] = field(default_factory=Counter)

    def add(
        self, check: Check, index: int | None, message: str, **details: str | int
    ) -> None:
        self.counts[check] += 1
        if self.counts[check] <= self.per_check:
            self.findings.append(Finding(check, index, message, tuple(sorted(details.items()))))

    def absorb(self, findings: list[Finding], counts: dict[Check, int]) -> None:
        """Merge what another sink collected (e.g. in a worker process), keeping the caps."""
        kept = Counter(f.check for f in self.findings)
        for finding in findings:
            if kept[finding.check] < self.per_check:
                self.findings.append(finding)
                kept[finding.check] += 1
        self.counts.update(counts)

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    def suppressed(self) -> dict[str, int]:
        return {
            str(check): n - self.per_check for check, n in self.counts.items() if n > self.per_check
        }

    def to_json(self) -> dict[str, Any]:
        return {
            "clean": self.total == 0,
            "total": self.total,
            "by_check": {str(k): v for k, v in sorted(self.counts.items())},
            "suppressed": self.suppressed(),
            "findings": [f.to_json() for f in self.findings],
        }
