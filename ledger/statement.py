"""in-toto Statement v1 (https://github.com/in-toto/attestation/blob/main/spec/v1/statement.md).

anchorlog statements are built as plain JSON in RFC 8785 canonical form (never
through a protobuf ``Struct``, which turns integers into floats) and parsed
strictly: the ``_type`` must be Statement v1, every subject names exactly one
digest, SHA-256 as 64 lower-case hex characters, no two subjects share a digest,
and the predicate is a JSON object.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import rfc8785
from anchorlog.ledger.digests import DIGEST_ALGORITHM, check_digest, parse_hex_digest
from anchorlog.ledger.dsse import strict_json
from anchorlog.ledger.errors import InvalidInput

STATEMENT_TYPE_V1 = "https://in-toto.io/Statement/v1"
DEFAULT_MAX_SUBJECTS = 100_000
MAX_SUBJECT_NAME = 1024
MAX_PREDICATE_TYPE = 256
_STATEMENT_FIELDS = frozenset({"_type", "subject", "predicateType", "predicate"})
_SUBJECT_FIELDS = frozenset({"name", "digest", "uri", "annotations"})
_HEX64 = re.compile(r"[0-9a-f]{64}")
# The RFC 8785 form ``build_statement`` writes (what clients send), with the
# subjects in the one shape a digest and a name take, and strings free of quotes,
# backslashes, control and non-ASCII characters. JSON composes: if the predicate
# bytes between head and tail parse strictly as a JSON object on their own, the
# whole payload is valid JSON meaning exactly head + that object + tail, so the
# strict parser (and its per-object hook) runs on the predicate only. Anything
# else, and any payload the checks below would refuse, takes the strict parser.
_ASCII_TEXT = rb"[\x20\x21\x23-\x5b\x5d-\x7e]*"
_COMPACT_HEAD = re.compile(rb'\{"_type":"(%s)","predicate":' % _ASCII_TEXT)
_COMPACT_TAIL_MARK = b',"predicateType":"'
_COMPACT_SUBJECT = rb'\{"digest":\{"sha256":"[0-9a-f]{64}"\},"name":"%s"\}' % _ASCII_TEXT
_COMPACT_TAIL = re.compile(
    rb',"predicateType":"(%s)","subject":\[(%s(?:,%s)*)\]\}' % (_ASCII_TEXT, _COMPACT_SUBJECT, _COMPACT_SUBJECT)
)
# Nesting bound for the fast path: the strict parser sees the predicate one level
# deeper than the fast path does, so a predicate near the recursion limit is left
# to it (brackets inside strings only make this more conservative).
_COMPACT_MAX_BRACKETS = 32


@dataclass(frozen=True)
class Subject:
    """One statement subject: a name and its SHA-256 digest (raw 32 bytes)."""

    name: str
    digest: bytes

    def __post_init__(self) -> None:
        check_digest(self.digest, "subject.digest")
        if not isinstance(self.name, str) or len(self.name) > MAX_SUBJECT_NAME:
            raise InvalidInput("subject.name", f"must be a string of <= {MAX_SUBJECT_NAME}")

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "digest": {DIGEST_ALGORITHM: self.digest.hex()}}


@dataclass(frozen=True)
class Statement:
    """A parsed statement; subject ``i`` is ``(subject_names[i], subject_digests[i])``."""

    subject_names: tuple[str, ...]
    subject_digests: tuple[bytes, ...]
    predicate_type: str
    predicate: Mapping[str, Any]

    @cached_property
    def subjects(self) -> tuple[Subject, ...]:
        # Built on demand: a bulk envelope's 1,000 subjects are only needed as digests.
        return tuple(map(Subject, self.subject_names, self.subject_digests))

    def digests(self) -> tuple[bytes, ...]:
        return self.subject_digests


def build_statement(
    subjects: Sequence[Subject], predicate_type: str, predicate: Mapping[str, Any]
) -> bytes:
    """Statement JSON bytes in RFC 8785 canonical form (deterministic)."""
    if not subjects:
        raise InvalidInput("subject", "at least one subject is required")
    seen: set[bytes] = set()
    for i, subject in enumerate(subjects):
        if subject.digest in seen:
            raise InvalidInput(f"subject[{i}]", f"duplicate digest {subject.digest.hex()}")
        seen.add(subject.digest)
    doc = {
        "_type": STATEMENT_TYPE_V1,
        "subject": [s.to_json() for s in subjects],
        "predicateType": predicate_type,
        "predicate": dict(predicate),
    }
    return rfc8785.dumps(doc)


def _parse_subject(raw: object, where: str) -> Subject:
    if not isinstance(raw, dict):
        raise InvalidInput(where, "must be a JSON object")
    unknown = set(raw) - _SUBJECT_FIELDS
    if unknown:
        raise InvalidInput(where, f"unknown fields {sorted(unknown)}")
    name = raw.get("name", "")
    if not isinstance(name, str) or len(name) > MAX_SUBJECT_NAME:
        raise InvalidInput(f"{where}.name", f"must be a string of <= {MAX_SUBJECT_NAME} characters")
    digest_set = raw.get("digest")
    if not isinstance(digest_set, dict) or not digest_set:
        raise InvalidInput(f"{where}.digest", "must be a non-empty object")
    if set(digest_set) != {DIGEST_ALGORITHM}:
        raise InvalidInput(
            f"{where}.digest",
            f"must hold exactly one sha256 digest, got algorithms {sorted(digest_set)}",
        )
    digest = parse_hex_digest(digest_set[DIGEST_ALGORITHM], f"{where}.digest.sha256")
    return Subject(name=name, digest=digest)


def parse_statement(payload: bytes, *, max_subjects: int = DEFAULT_MAX_SUBJECTS) -> Statement:
    """Parse a Statement v1 payload strictly; every failure names the field."""
    if type(payload) is bytes:
        compact = _parse_compact_statement(payload, max_subjects)
        if compact is not None:
            return compact
    return parse_statement_strict(payload, max_subjects=max_subjects)


def _parse_compact_statement(payload: bytes, max_subjects: int) -> Statement | None:
    """The statement if ``payload`` is in compact form and valid, else None (never raises).

    Accepts nothing ``parse_statement_strict`` refuses and gives an equal
    Statement (property-tested); None leaves every verdict and message to it.
    """
    head = _COMPACT_HEAD.match(payload)
    if head is None or head.group(1) != STATEMENT_TYPE_V1.encode():
        return None
    split = payload.rfind(_COMPACT_TAIL_MARK)
    tail = _COMPACT_TAIL.fullmatch(payload, split) if split > head.end() else None
    if tail is None:
        return None
    raw_predicate = payload[head.end() : split]
    if raw_predicate.count(b"{") + raw_predicate.count(b"[") > _COMPACT_MAX_BRACKETS:
        return None
    try:
        predicate = strict_json(raw_predicate, "statement")
    except InvalidInput:
        return None
    predicate_type = tail.group(1).decode("ascii")
    if type(predicate) is not dict or not predicate_type or len(predicate_type) > MAX_PREDICATE_TYPE:
        return None
    # Quote-free strings: splitting the subjects on '"' puts each digest and name at a fixed place.
    tokens = tail.group(2).decode("ascii").split('"')
    names, hexes = tuple(tokens[9::10]), tokens[5::10]
    if len(names) > max_subjects or max(map(len, names)) > MAX_SUBJECT_NAME:
        return None
    digests = tuple(map(bytes.fromhex, hexes))
    if len(set(digests)) != len(digests):
        return None
    return Statement(names, digests, predicate_type, predicate)


def parse_statement_strict(payload: bytes, *, max_subjects: int = DEFAULT_MAX_SUBJECTS) -> Statement:
    """``parse_statement`` by the general strict JSON parser only (any spelling)."""
    doc = strict_json(payload, "statement")
    if not isinstance(doc, dict):
        raise InvalidInput("statement", "must be a JSON object")
    unknown = set(doc) - _STATEMENT_FIELDS
    if unknown:
        raise InvalidInput("statement", f"unknown fields {sorted(unknown)}")
    if doc.get("_type") != STATEMENT_TYPE_V1:
        raise InvalidInput(
            "statement._type", f"must be {STATEMENT_TYPE_V1!r}, got {str(doc.get('_type'))[:80]!r}"
        )
    raw_subjects = doc.get("subject")
    if not isinstance(raw_subjects, list):
        raise InvalidInput("statement.subject", "must be a list")
    if not raw_subjects:
        raise InvalidInput("statement.subject", "is empty; at least one subject is required")
    if len(raw_subjects) > max_subjects:
        raise InvalidInput(
            "statement.subject", f"{len(raw_subjects)} subjects exceeds the limit of {max_subjects}"
        )
    subjects = []
    seen: dict[bytes, int] = {}
    hex64 = _HEX64.fullmatch
    for i, raw in enumerate(raw_subjects):
        # The common well-formed subject in a few checks; anything else takes
        # _parse_subject, which accepts exactly the same and names the fault.
        subject = None
        if type(raw) is dict and raw.keys() <= _SUBJECT_FIELDS:
            digest_set, name = raw.get("digest"), raw.get("name", "")
            if type(digest_set) is dict and len(digest_set) == 1 and type(name) is str:
                value = digest_set.get(DIGEST_ALGORITHM)
                if type(value) is str and len(value) == 64 and hex64(value) and len(name) <= MAX_SUBJECT_NAME:
                    subject = Subject(name, bytes.fromhex(value))
        if subject is None:
            subject = _parse_subject(raw, f"statement.subject[{i}]")
        if subject.digest in seen:
            raise InvalidInput(
                f"statement.subject[{i}]",
                f"duplicate digest (already subject[{seen[subject.digest]}])",
            )
        seen[subject.digest] = i
        subjects.append(subject)
    predicate_type = doc.get("predicateType")
    if not isinstance(predicate_type, str) or not predicate_type:
        raise InvalidInput("statement.predicateType", "must be a non-empty string")
    if len(predicate_type) > MAX_PREDICATE_TYPE:
        raise InvalidInput("statement.predicateType", f"longer than {MAX_PREDICATE_TYPE}")
    predicate = doc.get("predicate")
    if not isinstance(predicate, dict):
        raise InvalidInput("statement.predicate", "must be a JSON object")
    return Statement(
        subject_names=tuple(s.name for s in subjects),
        subject_digests=tuple(s.digest for s in subjects),
        predicate_type=predicate_type,
        predicate=predicate,
    )
