"""The test harness itself: start_server gives up on a server that is alive but silent."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.conftest import start_server


def test_start_server_enforces_its_deadline_on_a_silent_live_process(tmp_path: Path) -> None:
    # A sitecustomize that stalls forever: the process runs but never prints its banner.
    hook = tmp_path / "stall"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text("import time\ntime.sleep(3600)\n")
    path = os.pathsep.join(p for p in (str(hook), os.environ.get("PYTHONPATH", "")) if p)
    (tmp_path / "data").mkdir()
    with pytest.raises(RuntimeError, match="server did not start"):
        start_server(tmp_path / "data", env={"PYTHONPATH": path}, startup_timeout=1.0)
