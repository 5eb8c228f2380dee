"""Filter or label a dataset by verified provenance status.

``label_rows``/``filter_rows`` stream plain row mappings (one ledger stream,
rows kept only while their answer is in flight). ``label_hf``/``filter_hf`` do
the same for a Hugging Face ``datasets`` Dataset: one streamed check over its
sample column, then ``Dataset.map``/``Dataset.filter`` in batched mode, so the
result is an ordinary local Dataset (nothing is fetched from a hub).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Iterator, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from anchorlog.client.gate.check import DEFAULT_CHUNK, ProvenanceSource, evaluate
from anchorlog.client.gate.manifests import FieldSpec, samples_from_hf, samples_from_rows
from anchorlog.client.gate.policy import Policy

STATUS_COLUMN = "provenance_status"


def label_rows(
    client: ProvenanceSource,
    rows: Iterable[Mapping[str, Any]],
    *,
    field: FieldSpec | str | None = None,
    policy: Policy | None = None,
    column: str = STATUS_COLUMN,
    base_dir: Path | None = None,
    chunk: int = DEFAULT_CHUNK,
) -> Iterator[dict[str, Any]]:
    """Each row as a new dict with ``column`` set to its status under ``policy``."""
    for row, status, _ in _statuses(client, rows, field, policy or Policy(), base_dir, chunk):
        yield {**row, column: status}


def filter_rows(
    client: ProvenanceSource,
    rows: Iterable[Mapping[str, Any]],
    *,
    field: FieldSpec | str | None = None,
    policy: Policy | None = None,
    base_dir: Path | None = None,
    chunk: int = DEFAULT_CHUNK,
) -> Iterator[Mapping[str, Any]]:
    """Only the rows that count as human-grounded under ``policy``, unchanged."""
    for row, _, counted in _statuses(client, rows, field, policy or Policy(), base_dir, chunk):
        if counted:
            yield row


def _statuses(
    client: ProvenanceSource,
    rows: Iterable[Mapping[str, Any]],
    field: FieldSpec | str | None,
    policy: Policy,
    base_dir: Path | None,
    chunk: int,
) -> Iterator[tuple[Mapping[str, Any], str, bool]]:
    pending: deque[Mapping[str, Any]] = deque()

    def remember() -> Iterator[Mapping[str, Any]]:
        for row in rows:
            pending.append(row)
            yield row

    samples = samples_from_rows(remember(), field=field, base_dir=base_dir)
    for verdict in evaluate(client, samples, policy, chunk=chunk):
        yield pending.popleft(), verdict.status.value, verdict.counted


def hf_statuses(
    client: ProvenanceSource,
    dataset: Any,
    *,
    field: FieldSpec | str | None = None,
    policy: Policy | None = None,
    base_dir: Path | None = None,
    chunk: int = DEFAULT_CHUNK,
) -> list[tuple[str, bool]]:
    """(status, counted) per row of a Hugging Face Dataset, in row order."""
    samples = samples_from_hf(dataset, field=field, base_dir=base_dir)
    now = datetime.now(UTC)
    return [
        (v.status.value, v.counted)
        for v in evaluate(client, samples, policy or Policy(), now=now, chunk=chunk)
    ]


def label_hf(
    client: ProvenanceSource,
    dataset: Any,
    *,
    field: FieldSpec | str | None = None,
    policy: Policy | None = None,
    column: str = STATUS_COLUMN,
    base_dir: Path | None = None,
    chunk: int = DEFAULT_CHUNK,
    batch_size: int = 1000,
) -> Any:
    """A new Dataset with a ``provenance_status`` column (``Dataset.map``, batched)."""
    if column in dataset.column_names:
        raise ValueError(f"the dataset already has a column {column!r}")
    found = hf_statuses(client, dataset, field=field, policy=policy, base_dir=base_dir, chunk=chunk)

    def add(batch: dict[str, list[Any]], indices: list[int]) -> dict[str, list[Any]]:
        return {column: [found[i][0] for i in indices]}

    return dataset.map(add, batched=True, batch_size=batch_size, with_indices=True)


def filter_hf(
    client: ProvenanceSource,
    dataset: Any,
    *,
    field: FieldSpec | str | None = None,
    policy: Policy | None = None,
    base_dir: Path | None = None,
    chunk: int = DEFAULT_CHUNK,
    batch_size: int = 1000,
) -> Any:
    """A new Dataset of only the human-grounded rows (``Dataset.filter``, batched)."""
    found = hf_statuses(client, dataset, field=field, policy=policy, base_dir=base_dir, chunk=chunk)

    def keep(batch: dict[str, list[Any]], indices: list[int]) -> list[bool]:
        return [found[i][1] for i in indices]

    return dataset.filter(keep, batched=True, batch_size=batch_size, with_indices=True)
