"""Manifest readers: every format yields the digests the ledger's hashing rules give."""

from __future__ import annotations

import csv
import json
import unicodedata
from pathlib import Path

import pytest
from anchorlog.client.gate.manifests import (
    NO_SLICE,
    FieldKind,
    FieldSpec,
    ManifestFormat,
    detect_format,
    read_manifest,
    samples_from_hf,
    samples_from_rows,
)
from anchorlog.ledger.digests import digest_bytes, digest_text
from anchorlog.ledger.errors import InvalidInput
from hypothesis import given, settings
from hypothesis import strategies as st

TEXTS = ["The Thames flows through London.", "Cafe\u0301 au lait", "Water boils at 100 C.", ""]
SLICES = ["en", "fr", "en", "yo"]


def _jsonl(path: Path, rows: list[dict[str, object]]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def test_jsonl_text_field_hashes_nfc_utf8(tmp_path: Path) -> None:
    path = _jsonl(
        tmp_path / "m.jsonl", [{"text": t, "lang": s} for t, s in zip(TEXTS, SLICES, strict=True)]
    )
    samples = list(read_manifest(path, field="text", slice_column="lang"))
    assert [s.digest for s in samples] == [digest_text(t) for t in TEXTS]
    assert [s.slice for s in samples] == SLICES
    assert [s.locator for s in samples] == ["m.jsonl:1", "m.jsonl:2", "m.jsonl:3", "m.jsonl:4"]
    # Decomposed and composed forms of the same text are one sample under utf8-nfc-v1.
    assert samples[1].digest == digest_text(unicodedata.normalize("NFC", TEXTS[1]))


def test_jsonl_content_path_and_sha256_fields(tmp_path: Path) -> None:
    (tmp_path / "files").mkdir()
    (tmp_path / "files" / "a.bin").write_bytes(b"\x00\x01binary")
    rows = [{"content": "hello", "path": "files/a.bin", "sha256": digest_text("x").hex()}]
    path = _jsonl(tmp_path / "m.jsonl", rows)
    assert next(read_manifest(path, field="content")).digest == digest_text("hello")
    assert next(read_manifest(path, field="path")).digest == digest_bytes(b"\x00\x01binary")
    assert next(read_manifest(path, field="sha256")).digest == digest_text("x")
    # Auto-detection prefers a given digest over hashing.
    assert next(read_manifest(path)).digest == digest_text("x")
    assert next(read_manifest(path, field="content:text")).digest == digest_text("hello")


def test_blank_lines_are_skipped_and_line_numbers_kept(tmp_path: Path) -> None:
    path = tmp_path / "m.jsonl"
    path.write_text('{"text": "a"}\n\n{"text": "b"}\n')
    assert [s.locator for s in read_manifest(path)] == ["m.jsonl:1", "m.jsonl:3"]


def test_missing_slice_value_is_its_own_slice(tmp_path: Path) -> None:
    path = _jsonl(
        tmp_path / "m.jsonl",
        [{"text": "a", "lang": "en"}, {"text": "b"}, {"text": "c", "lang": ""}],
    )
    assert [s.slice for s in read_manifest(path, slice_column="lang")] == ["en", NO_SLICE, NO_SLICE]


@pytest.mark.parametrize(
    ("content", "field", "message"),
    [
        ('{"text": "a"}\nnot json\n', "text", "m.jsonl:2: is not JSON"),
        ("[1, 2]\n", "text", "m.jsonl:1: must be a JSON object"),
        ('{"text": "a"}\n{"other": 1}\n', "text", "m.jsonl:2: has no 'text' value"),
        ('{"text": 5}\n', "text", "m.jsonl:1: 'text' must be text, got int"),
        ('{"sha256": "AB' + "0" * 62 + '"}\n', "sha256", "must be lower-case hex"),
        ('{"sha256": "abc"}\n', "sha256", "must be 64 hex characters"),
        ('{"path": "nope.bin"}\n', "path", "m.jsonl:1: file 'nope.bin' does not exist"),
        ('{"other": "a"}\n', None, "m.jsonl:1: has none of the columns"),
        ('{"text": "\\ud800"}\n', "text", "m.jsonl:1: has no UTF-8 encoding"),
    ],
)
def test_bad_jsonl_rows_are_refused_precisely(
    tmp_path: Path, content: str, field: str | None, message: str
) -> None:
    path = tmp_path / "m.jsonl"
    path.write_text(content)
    with pytest.raises(InvalidInput, match=message.replace("(", r"\(").replace(")", r"\)")):
        list(read_manifest(path, field=field))


def test_field_spec_parsing() -> None:
    assert FieldSpec.parse("text") == FieldSpec("text", FieldKind.TEXT)
    assert FieldSpec.parse("content") == FieldSpec("content", FieldKind.TEXT)
    assert FieldSpec.parse("prompt:text") == FieldSpec("prompt", FieldKind.TEXT)
    assert FieldSpec.parse("file:path") == FieldSpec("file", FieldKind.PATH)
    with pytest.raises(InvalidInput, match="'prompt' is not one of"):
        FieldSpec.parse("prompt")
    with pytest.raises(InvalidInput, match="kind 'json' is not one of"):
        FieldSpec.parse("prompt:json")


def test_format_detection(tmp_path: Path) -> None:
    assert detect_format(tmp_path) is ManifestFormat.DIRECTORY
    assert detect_format(tmp_path / "a.JSONL") is ManifestFormat.JSONL
    assert detect_format(tmp_path / "a.csv") is ManifestFormat.CSV
    assert detect_format(tmp_path / "a.parquet") is ManifestFormat.PARQUET
    with pytest.raises(InvalidInput, match="cannot tell the format of 'a.txt'"):
        detect_format(tmp_path / "a.txt")


def test_csv_manifest(tmp_path: Path) -> None:
    path = tmp_path / "m.csv"
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["id", "text", "lang"])
        for i, (text, lang) in enumerate(zip(TEXTS + ["two\nlines"], SLICES + ["en"], strict=True)):
            writer.writerow([i, text, lang])
    samples = list(read_manifest(path, slice_column="lang"))
    assert [s.digest for s in samples] == [digest_text(t) for t in TEXTS + ["two\nlines"]]
    assert [s.slice for s in samples] == SLICES + ["en"]


def test_csv_with_extra_cells_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "m.csv"
    path.write_text("text,lang\na,en\nb,fr,extra\n")
    with pytest.raises(InvalidInput, match="m.csv:3: has more cells than the header"):
        list(read_manifest(path))


def test_parquet_manifest_with_hex_and_raw_digests(tmp_path: Path) -> None:
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    digests = [digest_text(t) for t in TEXTS]
    table = pa.table(
        {"sha256": [d.hex() for d in digests], "raw": digests, "text": TEXTS, "lang": SLICES}
    )
    path = tmp_path / "m.parquet"
    pq.write_table(table, path, row_group_size=2)
    assert [s.digest for s in read_manifest(path, slice_column="lang")] == digests
    assert [s.slice for s in read_manifest(path, slice_column="lang")] == SLICES
    assert [s.digest for s in read_manifest(path, field="raw:sha256")] == digests
    assert [s.digest for s in read_manifest(path, field="text")] == digests
    with pytest.raises(InvalidInput, match="has no column 'topic'"):
        list(read_manifest(path, slice_column="topic"))
    bad = tmp_path / "bad.parquet"
    bad.write_bytes(b"PAR1 not really")
    with pytest.raises(InvalidInput, match="bad.parquet: is not a readable Parquet file"):
        list(read_manifest(bad))


def test_directory_manifest_slices_by_subfolder(tmp_path: Path) -> None:
    root = tmp_path / "data"
    (root / "en").mkdir(parents=True)
    (root / "fr").mkdir()
    (root / "en" / "b.txt").write_bytes(b"bee")
    (root / "en" / "a.txt").write_bytes(b"ay")
    (root / "fr" / "c.txt").write_bytes(b"say")
    (root / "top.txt").write_bytes(b"top")
    samples = list(read_manifest(root, slice_column="dir"))
    assert [s.locator for s in samples] == ["top.txt", "en/a.txt", "en/b.txt", "fr/c.txt"]
    assert [s.digest for s in samples] == [digest_bytes(b) for b in (b"top", b"ay", b"bee", b"say")]
    assert [s.slice for s in samples] == [NO_SLICE, "en", "en", "fr"]
    with pytest.raises(InvalidInput, match="takes no field"):
        read_manifest(root, field="text")
    with pytest.raises(InvalidInput, match="slices by top-level sub-directory"):
        read_manifest(root, slice_column="lang")


def test_hf_dataset_in_batches(tmp_path: Path) -> None:
    datasets = pytest.importorskip("datasets")
    dataset = datasets.Dataset.from_dict({"text": TEXTS * 3, "lang": SLICES * 3})
    samples = list(samples_from_hf(dataset, slice_column="lang", batch_size=5))
    assert [s.digest for s in samples] == [digest_text(t) for t in TEXTS * 3]
    assert [s.slice for s in samples] == SLICES * 3
    assert samples[-1].locator == "dataset:12"
    with pytest.raises(InvalidInput, match="has no column 'topic'"):
        list(samples_from_hf(dataset, slice_column="topic"))


def test_rows_must_be_mappings() -> None:
    with pytest.raises(InvalidInput, match="row:2: must be an object"):
        list(samples_from_rows([{"text": "a"}, ["text", "b"]]))  # type: ignore[list-item]


@settings(max_examples=40, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.text(st.characters(blacklist_categories=("Cs",))), st.sampled_from(["a", "b"])
        ),
        min_size=1,
        max_size=8,
    )
)
def test_jsonl_and_csv_agree_with_digest_text(rows: list[tuple[str, str]]) -> None:
    import tempfile

    with tempfile.TemporaryDirectory() as folder:
        base = Path(folder)
        jsonl = _jsonl(base / "m.jsonl", [{"text": t, "s": s} for t, s in rows])
        with (base / "m.csv").open("w", newline="", encoding="utf-8") as handle:
            writer = csv.writer(handle)
            writer.writerow(["text", "s"])
            writer.writerows(rows)
        expected = [digest_text(t) for t, _ in rows]
        assert [s.digest for s in read_manifest(jsonl, slice_column="s")] == expected
        from_csv = list(read_manifest(base / "m.csv", slice_column="s"))
        assert [s.digest for s in from_csv] == expected
        assert [s.slice for s in from_csv] == [s for _, s in rows]
