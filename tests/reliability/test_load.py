"""Load in CI: 32 concurrent verifying clients, mixed reads and writes, for a bounded time.

ANCHORLOG_LOAD_SECONDS sets the duration (10 s by default; the long form is 60).
Figures (ops/s, server RSS at start and end) are printed, never asserted.
"""

from __future__ import annotations

import os
from pathlib import Path

from tests.reliability.load_harness import run


def test_32_clients_mixed_load_has_no_errors_and_keeps_every_write(tmp_path: Path) -> None:
    seconds = float(os.environ.get("ANCHORLOG_LOAD_SECONDS", "10"))
    report = run(tmp_path / "data", clients=32, seconds=seconds)
    print(report.summary())
    assert report.errors == []
    assert report.ops["submit"] > 0 and report.total_ops > report.ops["submit"]
    assert {"provenance", "checkpoint", "entry", "entries", "consistency"} <= set(report.ops)
    # check_receipts found every acknowledged write stored byte for byte.
    assert report.acknowledged == report.ops["submit"]
