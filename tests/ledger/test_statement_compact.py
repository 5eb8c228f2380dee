"""The compact-statement shortcut accepts nothing the strict parser refuses, and parses alike.

``parse_statement`` skips the strict JSON parser for the subjects of a statement
in the compact form ``build_statement`` writes; any other payload, and any payload
the strict checks would refuse, must get exactly the strict parser's answer.
"""

from __future__ import annotations

import hashlib

import pytest
from anchorlog.ledger.errors import InvalidInput
from anchorlog.ledger.predicates import PROVENANCE_V1
from anchorlog.ledger.statement import (
    STATEMENT_TYPE_V1,
    Statement,
    Subject,
    _parse_compact_statement,
    build_statement,
    parse_statement,
    parse_statement_strict,
)
from hypothesis import given, settings
from hypothesis import strategies as st

HEX = [hashlib.sha256(bytes([i])).hexdigest() for i in range(32)]

_good_name = st.from_regex(r"[a-z/0-9 ]{0,8}", fullmatch=True)
_good_subject = st.builds(lambda h, n: f'{{"digest":{{"sha256":"{h}"}},"name":"{n}"}}', st.sampled_from(HEX), _good_name)
_hex = st.one_of(
    st.sampled_from(HEX),
    st.sampled_from([HEX[0].upper(), HEX[0][:63], HEX[0] + "0", "g" * 64, HEX[0][:-1] + "\\n"]),
)
_text = st.one_of(
    _good_name,
    st.text(alphabet=st.characters(codec="utf-8"), max_size=6),
    st.sampled_from(["", "sample/1", 'a\\"b', "a\\\\b", "\\u0041", "é", "n" * 1024, "n" * 1025, "x\x01y"]),
)
_subject = st.one_of(
    # Mostly well-formed parts, so that many payloads take the shortcut (a test below counts them).
    _good_subject, _good_subject, _good_subject, _good_subject,
    st.builds(lambda h, n: f'{{"digest":{{"sha256":"{h}"}},"name":"{n}"}}', _hex, _text),
    st.sampled_from([
        f'{{"digest":{{"sha256":"{HEX[1]}"}}}}',  # no name: the strict parser's default ""
        f'{{"name":"x","digest":{{"sha256":"{HEX[2]}"}}}}',
        f'{{"digest":{{"sha256":"{HEX[3]}","sha256":"{HEX[3]}"}},"name":"d"}}',
        f'{{"digest":{{"sha256":"{HEX[3]}"}},"name":"d","name":"e"}}',
        f'{{"digest":{{"sha512":"{HEX[3]}"}},"name":"d"}}',
        f'{{"digest":{{"sha256":"{HEX[2]}"}},"name":"d","uri":"u"}}',
        f'{{"digest": {{"sha256":"{HEX[2]}"}},"name":"d"}}',
    ]),
)
_good_predicate = st.dictionaries(_good_name, st.one_of(st.integers(), _good_name), max_size=3).map(
    lambda d: "{" + ",".join(f'"{k}":{v if isinstance(v, int) else chr(34) + v + chr(34)}' for k, v in d.items()) + "}"
)
_predicate = st.one_of(
    _good_predicate, _good_predicate,
    st.just('{"a":1,"b":[1,"x"],"c":{"d":"e"}}'),
    st.sampled_from([
        "{}", '{"a":1}', '{"a":1,"a":2}', '{"a":NaN}', '{"a":Infinity}', '{"a":-Infinity}', "[]", '"x"', "1",
        "null", '{"a":{"b":[1,2,{"c":"d"}]}}', ' {"a":1} ', '{"a":"},\\"predicateType\\":\\"x"}',
        '{"a":"\\",\\"predicateType\\":\\"z\\",\\"subject\\":[]}', '{"s":"\\ud800"}', '{"a":1e400}',
        '{"a":' + "[" * 40 + "]" * 40 + "}", '{"a":' + "[" * 31 + "]" * 31 + "}", '{"a":"\xff"}', "{", '{"a":1}}',
        '{"a":1},"x":{', '{"claim":"human-validated","performedAt":"2026-01-01T00:00:00Z"}', '{"é":"\\u00e9"}',
    ]),
    st.dictionaries(_text, st.one_of(st.integers(), _text), max_size=3).map(
        lambda d: "{" + ",".join(f'"{k}":{v if isinstance(v, int) else chr(34) + v + chr(34)}' for k, v in d.items()) + "}"
    ),
)
_type = st.sampled_from([STATEMENT_TYPE_V1] * 4 + [STATEMENT_TYPE_V1 + "x", "", "https://in-toto.io/Statement/v0.1"])
_ptype = st.one_of(
    st.just(PROVENANCE_V1), st.just(PROVENANCE_V1), _good_name,
    st.sampled_from(["", "p" * 256, "p" * 257, 'a\\"b', "é"]), _text,
)


def _outcome(parse, raw: bytes, max_subjects: int) -> object:  # type: ignore[no-untyped-def]
    try:
        return parse(raw, max_subjects=max_subjects)
    except InvalidInput as exc:
        return ("refused", exc.field, str(exc))


@settings(max_examples=400, deadline=None)
@given(
    type_=_type, predicate=_predicate, ptype=_ptype, subjects=st.lists(_subject, max_size=4),
    max_subjects=st.integers(1, 4), trailer=st.sampled_from(["", "", "", "", " ", "\n", "]", "}", ",{}"]),
)
def test_compact_statement_shortcut_parses_like_the_strict_parser(
    type_: str, predicate: str, ptype: str, subjects: list[str], max_subjects: int, trailer: str
) -> None:
    doc = (
        f'{{"_type":"{type_}","predicate":{predicate},"predicateType":"{ptype}",'
        f'"subject":[{",".join(subjects)}]}}{trailer}'
    )
    raw = doc.encode("utf-8", "surrogatepass")
    strict = _outcome(parse_statement_strict, raw, max_subjects)
    fast = _parse_compact_statement(raw, max_subjects)
    if fast is not None:
        assert fast == strict
        assert fast.subjects == strict.subjects  # type: ignore[union-attr]
    assert _outcome(parse_statement, raw, max_subjects) == strict


def test_built_statements_take_the_shortcut() -> None:
    """What clients send (build_statement) is the compact form: the test above is not vacuous."""
    subjects = [Subject(f"sample/{i}", hashlib.sha256(b"%d" % i).digest()) for i in range(50)]
    predicate = {"claim": "human-validated", "performedAt": "2026-01-01T00:00:00Z", "n": 3, "l": ["a"]}
    raw = build_statement(subjects, PROVENANCE_V1, predicate)
    fast = _parse_compact_statement(raw, 100)
    assert isinstance(fast, Statement)
    assert fast == parse_statement_strict(raw, max_subjects=100)
    assert fast.subjects == tuple(subjects)
    assert fast.digests() == tuple(s.digest for s in subjects)
    # Every limit and check still applies on the shortcut's input.
    assert _parse_compact_statement(raw, 49) is None
    with pytest.raises(InvalidInput, match="exceeds the limit of 49"):
        parse_statement(raw, max_subjects=49)
    duplicated = build_statement(subjects[:2], PROVENANCE_V1, predicate).replace(
        subjects[1].digest.hex().encode(), subjects[0].digest.hex().encode()
    )
    with pytest.raises(InvalidInput, match="duplicate digest"):
        parse_statement(duplicated)
    with pytest.raises(InvalidInput, match="duplicate JSON key"):
        parse_statement(raw.replace(b'"n":3', b'"n":3,"n":4'))
    with pytest.raises(InvalidInput, match="NaN is not valid JSON"):
        parse_statement(raw.replace(b'"n":3', b'"n":NaN'))


@settings(max_examples=150, deadline=None)
@given(
    predicate=st.one_of(_good_predicate, st.sampled_from(['{"a":{"b":[1,2,{"c":"d"}]}}', '{"é":"\\u00e9"}'])),
    ptype=st.one_of(st.just(PROVENANCE_V1), _good_name), subjects=st.lists(_good_subject, min_size=1, max_size=4),
    max_subjects=st.integers(1, 4),
)
def test_compact_statements_take_the_shortcut(
    predicate: str, ptype: str, subjects: list[str], max_subjects: int
) -> None:
    """In the compact form, whatever the strict parser accepts the shortcut accepts alike."""
    raw = (
        f'{{"_type":"{STATEMENT_TYPE_V1}","predicate":{predicate},"predicateType":"{ptype}",'
        f'"subject":[{",".join(subjects)}]}}'
    ).encode()
    strict = _outcome(parse_statement_strict, raw, max_subjects)
    fast = _parse_compact_statement(raw, max_subjects)
    assert fast == (strict if isinstance(strict, Statement) else None)
