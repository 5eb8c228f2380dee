"""Gate policy: defaults, TOML files, flag overrides and refusals."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from anchorlog.client.gate.policy import Policy, format_duration, load_policy, parse_duration
from anchorlog.ledger.errors import InvalidInput
from anchorlog.ledger.status import Status
from hypothesis import given, settings
from hypothesis import strategies as st


def test_defaults_are_documented_values() -> None:
    policy = Policy()
    assert policy.min_fraction == 0.20
    assert policy.counted_statuses == {
        Status.HUMAN_CREATED,
        Status.HUMAN_VALIDATED,
        Status.HUMAN_EDITED,
    }
    assert policy.trusted_vendors is None
    assert policy.max_age is None
    assert policy.slice_threshold == 0.20
    assert policy.to_json() == {
        "min_fraction": 0.2,
        "min_slice_fraction": 0.2,
        "slice_column": None,
        "counted_statuses": ["human-created", "human-edited", "human-validated"],
        "trusted_vendors": None,
        "max_age": None,
    }


def test_toml_file_then_flags(tmp_path: Path) -> None:
    path = tmp_path / "policy.toml"
    path.write_text(
        'min_fraction = 0.3\nmin_slice_fraction = 0.1\nslice_column = "lang"\n'
        'counted_statuses = ["human-created"]\ntrusted_vendors = ["acme", "globex"]\nmax_age = "52w"\n'
    )
    policy = load_policy(path)
    assert policy.min_fraction == 0.3
    assert policy.slice_threshold == 0.1
    assert policy.slice_column == "lang"
    assert policy.counted_statuses == {Status.HUMAN_CREATED}
    assert policy.trusted_vendors == {"acme", "globex"}
    assert policy.max_age == timedelta(weeks=52)
    assert policy.counts(Status.HUMAN_CREATED) and not policy.counts(Status.HUMAN_VALIDATED)
    # Flags override the file; None leaves a setting alone.
    changed = policy.override(
        min_fraction=0.5, trusted_vendors=["acme"], max_age=None, slice_column=None
    )
    assert changed.min_fraction == 0.5
    assert changed.trusted_vendors == {"acme"}
    assert changed.max_age == timedelta(weeks=52)
    assert changed.slice_column == "lang"
    assert "acme" in changed.describe() and "50%" in changed.describe()


@pytest.mark.parametrize(
    ("toml", "message"),
    [
        ("min_fraction = 1.5\n", "min_fraction: must be between 0 and 1"),
        ('min_fraction = "high"\n', "min_fraction: must be a number"),
        ('counted_statuses = ["revoked"]\n', "'revoked' can never count as human-grounded"),
        ('counted_statuses = ["synthetic"]\n', "'synthetic' can never count"),
        ('counted_statuses = ["human"]\n', "'human' is not a status"),
        ("counted_statuses = []\n", "must name at least one status"),
        ("trusted_vendors = []\n", "an empty allow-list would trust nobody"),
        ('trusted_vendors = "acme"\n', "must be a list of vendor IDs"),
        ('max_age = "soon"\n', "'soon' is not a duration"),
        ("max_age = 0\n", "max_age: must be positive"),
        ("threshold = 0.2\n", "unknown key(s) threshold"),
        ("min_fraction = \n", "is not valid TOML"),
    ],
)
def test_bad_policy_files_are_refused_with_the_key(tmp_path: Path, toml: str, message: str) -> None:
    path = tmp_path / "policy.toml"
    path.write_text(toml)
    with pytest.raises(InvalidInput) as info:
        load_policy(path)
    assert message in str(info.value)


def test_direct_construction_is_validated() -> None:
    with pytest.raises(InvalidInput, match="min_fraction"):
        Policy(min_fraction=-0.1)
    with pytest.raises(InvalidInput, match="never count"):
        Policy(counted_statuses=frozenset({Status.UNKNOWN}))
    with pytest.raises(InvalidInput, match="max_age: must be positive"):
        Policy(max_age=timedelta(0))


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("30s", timedelta(seconds=30)),
        ("90m", timedelta(minutes=90)),
        ("48h", timedelta(hours=48)),
        ("365d", timedelta(days=365)),
        ("2w", timedelta(weeks=2)),
        (7, timedelta(days=7)),
    ],
)
def test_parse_duration(text: str | int, expected: timedelta) -> None:
    assert parse_duration(text) == expected


@settings(max_examples=60, deadline=None)
@given(st.integers(1, 10**6), st.sampled_from("smhdw"))
def test_duration_round_trips(amount: int, unit: str) -> None:
    value = parse_duration(f"{amount}{unit}")
    assert parse_duration(format_duration(value)) == value


@settings(max_examples=60, deadline=None)
@given(st.text(max_size=8))
def test_duration_parser_never_crashes(text: str) -> None:
    try:
        value = parse_duration(text)
    except InvalidInput:
        return
    assert value > timedelta(0)


def test_plain_values_are_normalised() -> None:
    policy = Policy(min_fraction=1, counted_statuses=["human-edited"], trusted_vendors=["acme"])  # type: ignore[arg-type]
    assert policy.min_fraction == 1.0 and isinstance(policy.min_fraction, float)
    assert policy.counted_statuses == frozenset({Status.HUMAN_EDITED})
    assert all(isinstance(s, Status) for s in policy.counted_statuses)
    assert policy.trusted_vendors == frozenset({"acme"})
