"""The gate's policy: what share of a dataset must be human-grounded, and how that is counted.

The right threshold is not settled in the literature (the model-collapse studies
show that keeping real data in the mix matters, not one magic fraction), so the
default of 0.20 is only a starting point and every report states the policy it
applied. A policy file is TOML; every key is optional::

    min_fraction = 0.20                  # overall human-grounded share required
    min_slice_fraction = 0.10            # per slice (defaults to min_fraction)
    slice_column = "language"            # compute the share per value of this column
    counted_statuses = ["human-created", "human-validated", "human-edited"]
    trusted_vendors = ["acme", "globex"] # allow-list; absent: every vendor the log registered
    max_age = "365d"                     # ignore human acts older than this (s, m, h, d, w)

``revoked``, ``synthetic`` and ``unknown`` can never be counted: the status rule
makes a sample human-grounded only on a positive, unrevoked attestation.
"""

from __future__ import annotations

import dataclasses
import re
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

from anchorlog.ledger.errors import InvalidInput
from anchorlog.ledger.status import HUMAN_GROUNDED, Status

DEFAULT_MIN_FRACTION = 0.20
_DURATION_RE = re.compile(r"(\d+)\s*([smhdw])")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}
_KEYS = frozenset(
    {
        "min_fraction",
        "min_slice_fraction",
        "slice_column",
        "counted_statuses",
        "trusted_vendors",
        "max_age",
    }
)


def parse_duration(value: str | int, field: str = "max_age") -> timedelta:
    """``"365d"``, ``"12h"``, ``"2w"``, ``"90m"``, ``"30s"``; a bare integer is days."""
    if isinstance(value, bool):
        raise InvalidInput(field, "must be a duration such as '365d'")
    if isinstance(value, int):
        if value <= 0:
            raise InvalidInput(field, "must be positive")
        return timedelta(days=value)
    if not isinstance(value, str):
        raise InvalidInput(field, f"must be a duration such as '365d', got {type(value).__name__}")
    match = _DURATION_RE.fullmatch(value.strip())
    if match is None:
        raise InvalidInput(
            field, f"{value!r} is not a duration: a positive integer and one of s, m, h, d, w"
        )
    amount = int(match.group(1))
    if amount <= 0:
        raise InvalidInput(field, "must be positive")
    return timedelta(**{_UNITS[match.group(2)]: amount})


def format_duration(value: timedelta) -> str:
    seconds = int(value.total_seconds())
    for unit, size in (("w", 604800), ("d", 86400), ("h", 3600), ("m", 60)):
        if seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def _fraction(value: Any, field: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidInput(field, f"must be a number between 0 and 1, got {value!r}")
    if not 0.0 <= float(value) <= 1.0:
        raise InvalidInput(field, f"must be between 0 and 1, got {value}")
    return float(value)


def _statuses(values: Iterable[Any]) -> frozenset[Status]:
    if isinstance(values, str):
        raise InvalidInput("counted_statuses", "must be a list of statuses")
    out = set()
    for value in values:
        try:
            status = Status(value)
        except ValueError:
            raise InvalidInput("counted_statuses", f"{value!r} is not a status") from None
        if status not in HUMAN_GROUNDED:
            raise InvalidInput(
                "counted_statuses",
                f"{status.value!r} can never count as human-grounded; choose among "
                f"{', '.join(sorted(HUMAN_GROUNDED))}",
            )
        out.add(status)
    if not out:
        raise InvalidInput("counted_statuses", "must name at least one status")
    return frozenset(out)


def _vendors(values: Iterable[Any]) -> frozenset[str]:
    if isinstance(values, str):
        raise InvalidInput("trusted_vendors", "must be a list of vendor IDs")
    out = set()
    for value in values:
        if not isinstance(value, str) or not value:
            raise InvalidInput("trusted_vendors", f"{value!r} is not a vendor ID")
        out.add(value)
    if not out:
        raise InvalidInput(
            "trusted_vendors",
            "an empty allow-list would trust nobody; omit it to trust every vendor",
        )
    return frozenset(out)


@dataclass(frozen=True)
class Policy:
    min_fraction: float = DEFAULT_MIN_FRACTION
    counted_statuses: frozenset[Status] = HUMAN_GROUNDED
    trusted_vendors: frozenset[str] | None = None
    max_age: timedelta | None = None
    slice_column: str | None = None
    min_slice_fraction: float | None = None

    def __post_init__(self) -> None:
        # Validate, and normalise plain strings and lists into the declared types.
        object.__setattr__(self, "min_fraction", _fraction(self.min_fraction, "min_fraction"))
        if self.min_slice_fraction is not None:
            object.__setattr__(
                self, "min_slice_fraction", _fraction(self.min_slice_fraction, "min_slice_fraction")
            )
        object.__setattr__(self, "counted_statuses", _statuses(self.counted_statuses))
        if self.trusted_vendors is not None:
            object.__setattr__(self, "trusted_vendors", _vendors(self.trusted_vendors))
        if self.max_age is not None and self.max_age <= timedelta(0):
            raise InvalidInput("max_age", "must be positive")
        if self.slice_column is not None and not self.slice_column:
            raise InvalidInput("slice_column", "must name a column")

    @property
    def slice_threshold(self) -> float:
        return self.min_fraction if self.min_slice_fraction is None else self.min_slice_fraction

    def counts(self, status: Status) -> bool:
        return status in self.counted_statuses

    @classmethod
    def from_mapping(cls, doc: Mapping[str, Any]) -> Policy:
        unknown = set(doc) - _KEYS
        if unknown:
            raise InvalidInput(
                "policy",
                f"unknown key(s) {', '.join(sorted(unknown))}; known: {', '.join(sorted(_KEYS))}",
            )
        return cls().override(**doc)

    def override(self, **changes: Any) -> Policy:
        """A copy with the given settings changed (``None`` leaves a setting as it is)."""
        values: dict[str, Any] = {}
        for key, value in changes.items():
            if value is None:
                continue
            if key not in _KEYS:
                raise InvalidInput("policy", f"unknown setting {key!r}")
            if key in ("min_fraction", "min_slice_fraction"):
                values[key] = _fraction(value, key)
            elif key == "counted_statuses":
                values[key] = _statuses(value)
            elif key == "trusted_vendors":
                values[key] = _vendors(value)
            elif key == "max_age":
                values[key] = value if isinstance(value, timedelta) else parse_duration(value)
            else:
                if not isinstance(value, str) or not value:
                    raise InvalidInput(key, "must be a column name")
                values[key] = value
        return dataclasses.replace(self, **values)

    def to_json(self) -> dict[str, Any]:
        return {
            "min_fraction": self.min_fraction,
            "min_slice_fraction": self.slice_threshold,
            "slice_column": self.slice_column,
            "counted_statuses": sorted(str(s) for s in self.counted_statuses),
            "trusted_vendors": sorted(self.trusted_vendors)
            if self.trusted_vendors is not None
            else None,
            "max_age": format_duration(self.max_age) if self.max_age is not None else None,
        }

    def describe(self) -> str:
        vendors = (
            ", ".join(sorted(self.trusted_vendors))
            if self.trusted_vendors
            else "every registered vendor"
        )
        parts = [
            f"at least {self.min_fraction:.0%} human-grounded",
            f"counting {', '.join(sorted(str(s) for s in self.counted_statuses))}",
            f"trusting {vendors}",
        ]
        if self.slice_column:
            parts.append(f"per slice of {self.slice_column!r} at least {self.slice_threshold:.0%}")
        if self.max_age is not None:
            parts.append(f"human acts at most {format_duration(self.max_age)} old")
        return "; ".join(parts)


def load_policy(path: Path) -> Policy:
    """Read a TOML policy file; unknown keys and bad values are refused with the key named."""
    try:
        doc = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise InvalidInput(str(path), f"is not valid TOML: {exc}") from None
    except UnicodeDecodeError:
        raise InvalidInput(str(path), "is not UTF-8") from None
    try:
        return Policy.from_mapping(doc)
    except InvalidInput as exc:
        raise InvalidInput(f"{path.name}: {exc.field}", exc.message) from None
