"""Crash safety in CI: 20 SIGKILLs of a busy server, everything re-verified after each restart."""

from __future__ import annotations

from pathlib import Path

from tests.reliability.crash_harness import run


def test_sigkill_under_concurrent_submitters_loses_nothing(tmp_path: Path) -> None:
    report = run(tmp_path / "data", kills=20, submitters=4, min_run=0.1, max_run=0.5, seed=7, pause=0.05)
    print(report.summary())
    assert report.failures == []
    assert report.kills == 20
    # The kills hit a busy server: calls were in flight, and work was acknowledged.
    assert sum(report.kill_errors.values()) > 0
    assert report.receipts > 100
    # The restarted servers proved consistency from old checkpoints to their new heads.
    assert report.online_proofs > 0
