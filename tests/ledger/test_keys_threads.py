"""The key registry is read by handler threads while the sequencer applies events."""

from __future__ import annotations

import hashlib
import sys
import threading
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
from anchorlog.ledger.keys import NO_EXPIRY, KeyEvent, KeyEventType, KeyRegistry

START = datetime(2026, 1, 1, tzinfo=UTC)


@pytest.fixture
def busy_switching() -> Iterator[None]:
    """Switch threads very often so a reader is caught mid-iteration if it can be."""
    before = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    try:
        yield
    finally:
        sys.setswitchinterval(before)


def _registration(n: int) -> KeyEvent:
    return KeyEvent(type=KeyEventType.KEY_REGISTERED, vendor_id="acme",
                    public_key=hashlib.sha256(n.to_bytes(4, "big")).digest(),
                    not_before=START, not_after=NO_EXPIRY)


def test_readers_never_see_the_key_dict_change_under_them(busy_switching: None) -> None:
    registry = KeyRegistry()
    registry.apply(KeyEvent(type=KeyEventType.VENDOR_CREATED, vendor_id="acme"), 0)
    for n in range(500):
        registry.apply(_registration(n), n + 1)
    done = threading.Event()
    errors: list[BaseException] = []
    counts: list[int] = []

    def read() -> None:
        try:
            while not done.is_set():
                counts.append(len(registry.vendor_keys("acme")))
                registry.candidate_keys("acme", ["nope"])
        except BaseException as exc:  # noqa: BLE001 - reported by the test
            errors.append(exc)

    readers = [threading.Thread(target=read) for _ in range(3)]
    for reader in readers:
        reader.start()
    try:
        for n in range(500, 3000):
            registry.apply(_registration(n), n + 1)
    finally:
        done.set()
        for reader in readers:
            reader.join()
    assert errors == []
    assert counts and all(500 <= c <= 3000 for c in counts)
    assert len(registry.vendor_keys("acme")) == 3000
