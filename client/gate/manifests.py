"""Dataset manifests: where the samples of a dataset are, and their digests.

A manifest is read lazily, one sample at a time, so a million-row dataset never
sits in memory. Every sample is hashed under the ledger's rules
(``anchorlog.ledger.digests``), so a builder gets the digest the vendor signed:

* a text column (``text``, ``content``) -> ``utf8-nfc-v1``;
* a ``path`` column (relative to the manifest's folder) -> ``raw-bytes`` of the
  file, streamed;
* a ``sha256`` column -> the digest as given (64 lower-case hex, or 32 raw bytes
  in Parquet and Hugging Face datasets).

Formats: JSON Lines, CSV, Parquet (needs ``pyarrow``, extra ``parquet``), a
directory of files (each file is a sample, hashed as raw bytes; its slice is its
top-level sub-directory) and, in the library, a Hugging Face ``datasets``
Dataset (extra ``hf``) or any iterable of row mappings.
"""

from __future__ import annotations

import csv
import enum
import json
import os
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

from anchorlog.ledger.digests import (
    check_digest,
    digest_file,
    digest_text,
    parse_hex_digest,
)
from anchorlog.ledger.errors import InvalidInput

NO_SLICE = "(none)"
DIRECTORY_SLICE = "dir"
_BATCH_ROWS = 10_000


class ManifestSample(NamedTuple):
    """One sample of a dataset: its digest, its slice and where it came from."""

    digest: bytes
    slice: str | None
    locator: str


class FieldKind(enum.StrEnum):
    TEXT = "text"
    PATH = "path"
    SHA256 = "sha256"


DEFAULT_KINDS: Mapping[str, FieldKind] = {
    "text": FieldKind.TEXT,
    "content": FieldKind.TEXT,
    "path": FieldKind.PATH,
    "sha256": FieldKind.SHA256,
}
# Auto-detection prefers a digest (no hashing needed), then text, then files.
_DETECT_ORDER = ("sha256", "text", "content", "path")


@dataclass(frozen=True)
class FieldSpec:
    """Which column names a sample and how it is hashed."""

    column: str
    kind: FieldKind

    @classmethod
    def parse(cls, spec: str) -> FieldSpec:
        """``text``, ``content``, ``path``, ``sha256``, or ``COLUMN:KIND`` for any other column."""
        column, sep, kind = spec.partition(":")
        if not column:
            raise InvalidInput("field", "must name a column")
        if sep:
            try:
                return cls(column, FieldKind(kind))
            except ValueError:
                raise InvalidInput(
                    "field", f"kind {kind!r} is not one of {', '.join(k.value for k in FieldKind)}"
                ) from None
        if column not in DEFAULT_KINDS:
            raise InvalidInput(
                "field",
                f"{column!r} is not one of {', '.join(DEFAULT_KINDS)}; "
                "name another column as COLUMN:text, COLUMN:path or COLUMN:sha256",
            )
        return cls(column, DEFAULT_KINDS[column])


class ManifestFormat(enum.StrEnum):
    JSONL = "jsonl"
    CSV = "csv"
    PARQUET = "parquet"
    DIRECTORY = "dir"


_SUFFIXES = {
    ".jsonl": ManifestFormat.JSONL,
    ".ndjson": ManifestFormat.JSONL,
    ".csv": ManifestFormat.CSV,
    ".parquet": ManifestFormat.PARQUET,
    ".pq": ManifestFormat.PARQUET,
}


def detect_format(path: Path) -> ManifestFormat:
    if path.is_dir():
        return ManifestFormat.DIRECTORY
    fmt = _SUFFIXES.get(path.suffix.lower())
    if fmt is None:
        raise InvalidInput(
            "format",
            f"cannot tell the format of {path.name!r} from its suffix; "
            f"give one of {', '.join(f.value for f in ManifestFormat)}",
        )
    return fmt


def _resolve_field(field: FieldSpec | str | None, row: Mapping[str, Any], where: str) -> FieldSpec:
    if isinstance(field, FieldSpec):
        return field
    if field is not None:
        return FieldSpec.parse(field)
    for column in _DETECT_ORDER:
        if column in row:
            return FieldSpec(column, DEFAULT_KINDS[column])
    raise InvalidInput(
        where,
        f"has none of the columns {', '.join(_DETECT_ORDER)}; name the sample column with a field",
    )


def _digest_of(value: Any, spec: FieldSpec, base: Path | None, where: str) -> bytes:
    if value is None:
        raise InvalidInput(where, f"has no {spec.column!r} value")
    if spec.kind is FieldKind.TEXT:
        if not isinstance(value, str):
            raise InvalidInput(where, f"{spec.column!r} must be text, got {type(value).__name__}")
        try:
            return digest_text(value)
        except InvalidInput as exc:
            raise InvalidInput(where, exc.message) from None
    if spec.kind is FieldKind.SHA256:
        if isinstance(value, bytes):
            return check_digest(value, f"{where}.{spec.column}")
        return parse_hex_digest(value, f"{where}.{spec.column}")
    if not isinstance(value, str) or not value:
        raise InvalidInput(where, f"{spec.column!r} must be a file path")
    path = Path(value)
    if base is not None and not path.is_absolute():
        path = base / path
    try:
        return digest_file(path)
    except FileNotFoundError:
        raise InvalidInput(where, f"file {value!r} does not exist") from None
    except IsADirectoryError:
        raise InvalidInput(where, f"{value!r} is a directory, not a file") from None
    except PermissionError:
        raise InvalidInput(where, f"file {value!r} cannot be read") from None


def _slice_of(row: Mapping[str, Any], column: str | None) -> str | None:
    if column is None:
        return None
    value = row.get(column)
    if value is None or value == "":
        return NO_SLICE
    return str(value)


def samples_from_rows(
    rows: Iterable[Mapping[str, Any]],
    *,
    field: FieldSpec | str | None = None,
    slice_column: str | None = None,
    base_dir: Path | None = None,
    name: str = "row",
) -> Iterator[ManifestSample]:
    """Samples from row mappings (``name:N`` locators, N from 1); ``field=None`` detects the column."""
    spec: FieldSpec | None = None
    for number, row in enumerate(rows, 1):
        where = f"{name}:{number}"
        if not isinstance(row, Mapping):
            raise InvalidInput(where, f"must be an object/row, got {type(row).__name__}")
        if spec is None:
            spec = _resolve_field(field, row, where)
        yield ManifestSample(
            _digest_of(row.get(spec.column), spec, base_dir, where),
            _slice_of(row, slice_column),
            where,
        )


def _jsonl_rows(path: Path) -> Iterator[Mapping[str, Any]]:
    with path.open("rb") as handle:
        for number, line in enumerate(handle, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except (json.JSONDecodeError, UnicodeDecodeError) as exc:
                raise InvalidInput(f"{path.name}:{number}", f"is not JSON: {exc}") from None
            if not isinstance(row, dict):
                raise InvalidInput(f"{path.name}:{number}", "must be a JSON object")
            yield _Numbered(row, number)


class _Numbered(dict):  # type: ignore[type-arg]
    """A row that remembers its line number (blank lines are skipped in JSONL)."""

    def __init__(self, row: Mapping[str, Any], number: int) -> None:
        super().__init__(row)
        self.number = number


def _numbered_samples(
    rows: Iterable[_Numbered],
    field: FieldSpec | str | None,
    slice_column: str | None,
    base: Path,
    name: str,
) -> Iterator[ManifestSample]:
    spec: FieldSpec | None = None
    for row in rows:
        where = f"{name}:{row.number}"
        if spec is None:
            spec = _resolve_field(field, row, where)
        yield ManifestSample(
            _digest_of(row.get(spec.column), spec, base, where), _slice_of(row, slice_column), where
        )


def _csv_rows(path: Path) -> Iterator[_Numbered]:
    with path.open(newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        if reader.fieldnames is None:
            return
        try:
            for row in reader:
                if None in row:
                    raise InvalidInput(
                        f"{path.name}:{reader.line_num}", "has more cells than the header"
                    )
                yield _Numbered(row, reader.line_num)
        except csv.Error as exc:
            raise InvalidInput(
                f"{path.name}:{reader.line_num}", f"is not valid CSV: {exc}"
            ) from None
        except UnicodeDecodeError as exc:
            raise InvalidInput(path.name, f"is not UTF-8: {exc}") from None


def _parquet_rows(
    path: Path, field: FieldSpec | str | None, slice_column: str | None
) -> Iterator[_Numbered]:
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:
        raise InvalidInput(
            "format", "Parquet manifests need pyarrow: pip install 'anchorlog[parquet]'"
        ) from None
    try:
        parquet = pq.ParquetFile(path)
    except (pa.ArrowException, OSError, ValueError) as exc:
        raise InvalidInput(path.name, f"is not a readable Parquet file: {exc}") from None
    names = parquet.schema_arrow.names
    if field is None:
        spec = _resolve_field(None, dict.fromkeys(names), path.name)
    else:
        spec = field if isinstance(field, FieldSpec) else FieldSpec.parse(field)
    columns = [spec.column] + (
        [slice_column] if slice_column and slice_column != spec.column else []
    )
    for column in columns:
        if column not in names:
            raise InvalidInput(path.name, f"has no column {column!r} (columns: {', '.join(names)})")
    number = 0
    for batch in parquet.iter_batches(batch_size=_BATCH_ROWS, columns=columns):
        values = {c: batch.column(c).to_pylist() for c in columns}
        for i in range(batch.num_rows):
            number += 1
            yield _Numbered({c: values[c][i] for c in columns}, number)


def samples_from_directory(
    root: Path, *, slice_by_directory: bool = False
) -> Iterator[ManifestSample]:
    """Every regular file under ``root`` (sorted, symlinks not followed) as a raw-bytes sample."""
    for folder, dirs, files in os.walk(root):
        dirs.sort()
        here = Path(folder)
        for file in sorted(files):
            path = here / file
            if not path.is_file() or path.is_symlink():
                continue
            relative = path.relative_to(root)
            slice_name = None
            if slice_by_directory:
                slice_name = relative.parts[0] if len(relative.parts) > 1 else NO_SLICE
            try:
                digest = digest_file(path)
            except PermissionError:
                raise InvalidInput(str(relative), "cannot be read") from None
            yield ManifestSample(digest, slice_name, relative.as_posix())


def read_manifest(
    path: Path,
    *,
    fmt: ManifestFormat | str | None = None,
    field: FieldSpec | str | None = None,
    slice_column: str | None = None,
) -> Iterator[ManifestSample]:
    """The samples of a manifest file or directory, lazily, in order."""
    if not path.exists():
        raise InvalidInput("manifest", f"{path} does not exist")
    kind = ManifestFormat(fmt) if fmt is not None else detect_format(path)
    if kind is ManifestFormat.DIRECTORY:
        if not path.is_dir():
            raise InvalidInput("manifest", f"{path} is not a directory")
        if field is not None:
            raise InvalidInput("field", "a directory manifest hashes each file; it takes no field")
        if slice_column not in (None, DIRECTORY_SLICE):
            raise InvalidInput(
                "slice_column",
                f"a directory manifest slices by top-level sub-directory: use {DIRECTORY_SLICE!r}",
            )
        return samples_from_directory(path, slice_by_directory=slice_column is not None)
    if path.is_dir():
        raise InvalidInput("manifest", f"{path} is a directory, not a {kind.value} file")
    base = path.parent
    if kind is ManifestFormat.JSONL:
        rows: Iterable[_Numbered] = _jsonl_rows(path)  # type: ignore[assignment]
    elif kind is ManifestFormat.CSV:
        rows = _csv_rows(path)
    else:
        rows = _parquet_rows(path, field, slice_column)
    return _numbered_samples(rows, field, slice_column, base, path.name)


def samples_from_hf(
    dataset: Any,
    *,
    field: FieldSpec | str | None = None,
    slice_column: str | None = None,
    base_dir: Path | None = None,
    batch_size: int = _BATCH_ROWS,
) -> Iterator[ManifestSample]:
    """Samples of a Hugging Face ``datasets`` Dataset, read in batches (local, no network)."""
    names = list(dataset.column_names)
    if field is None:
        spec = _resolve_field(None, dict.fromkeys(names), "dataset")
    else:
        spec = field if isinstance(field, FieldSpec) else FieldSpec.parse(field)
    for column in [spec.column] + ([slice_column] if slice_column else []):
        if column not in names:
            raise InvalidInput("dataset", f"has no column {column!r} (columns: {', '.join(names)})")
    number = 0
    for batch in dataset.iter(batch_size=batch_size):
        values = batch[spec.column]
        slices = batch[slice_column] if slice_column else None
        for i, value in enumerate(values):
            number += 1
            where = f"dataset:{number}"
            slice_name = None
            if slices is not None:
                slice_name = NO_SLICE if slices[i] in (None, "") else str(slices[i])
            yield ManifestSample(_digest_of(value, spec, base_dir, where), slice_name, where)
