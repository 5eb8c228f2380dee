"""`pip install .` (a wheel) and `pip install -e .` both give a working `anchorlog` in a fresh venv.

Offline and fast: the wheel is built without build isolation, installs use
``--no-deps --no-index``, and the third-party dependencies come from a directory
of symlinks to this interpreter's site-packages with every anchorlog file
(dist-info, editable finder, .pth hooks) left out. The tests then check where
each ``anchorlog`` module was really imported from: the fresh wheel in the new
venv, or the source copy the editable install points at; never this checkout's
own editable install.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import tomllib
import venv
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
MODULES = (
    "anchorlog.ledger",
    "anchorlog.ledger.merkle",
    "anchorlog.server",
    "anchorlog.client",
    "anchorlog.v1",
    "anchorlog.v1.anchorlog_pb2",
    "anchorlog.v1.anchorlog_pb2_grpc",
)
PROBE = f"""
import importlib, importlib.metadata, json, sys
files = {{name: importlib.import_module(name).__file__ for name in {list(MODULES)!r}}}
import anchorlog
dist = importlib.metadata.distribution("anchorlog")
print(json.dumps({{
    "files": files,
    "namespace": [str(p) for p in anchorlog.__path__],
    "dist_location": str(dist.locate_file("")),
    "entry_points": sorted(f"{{e.group}} {{e.name}} {{e.value}}" for e in dist.entry_points),
    "prefix": sys.prefix,
}}))
"""


def _clean_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "PIP_", "VIRTUAL_ENV"))}
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    return env


def _run(*command: str | Path, cwd: Path) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [str(c) for c in command], cwd=cwd, env=_clean_env(), capture_output=True, text=True, check=False,
        timeout=240,
    )
    assert result.returncode == 0, f"{command} failed:\n{result.stdout}\n{result.stderr}"
    return result


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of what the build needs, so nothing is written into the checkout."""
    dest = tmp_path_factory.mktemp("src") / "anchorlog"
    dest.mkdir()
    config = tomllib.loads((REPO / "pyproject.toml").read_text())
    top_dirs = {Path(p).parts[0] for p in config["tool"]["setuptools"]["package-dir"].values()}
    assert top_dirs == {"ledger", "server", "client", "proto"}
    skip = shutil.ignore_patterns("__pycache__", "*.egg-info", "build")
    for name in top_dirs:
        shutil.copytree(REPO / name, dest / name, ignore=skip)
    for name in ("pyproject.toml", config["project"]["readme"]):
        shutil.copy2(REPO / name, dest / name)
    return dest


@pytest.fixture(scope="module")
def deps(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Third-party packages of this interpreter, without any trace of anchorlog."""
    site = Path(sysconfig.get_paths()["purelib"])
    out = tmp_path_factory.mktemp("deps")
    for item in site.iterdir():
        lowered = item.name.lower()
        if lowered.startswith(("anchorlog", "__editable__", "__pycache__")) or lowered.endswith(".pth"):
            continue
        (out / item.name).symlink_to(item)
    return out


def _fresh_venv(where: Path, deps: Path) -> Path:
    venv.EnvBuilder(with_pip=False, symlinks=True).create(where)
    python = where / "bin" / "python"
    purelib = _run(python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])", cwd=where)
    Path(purelib.stdout.strip(), "zz_anchorlog_test_deps.pth").write_text(f"{deps}\n")
    return python


def _pip(python: Path, *args: str | Path, cwd: Path) -> None:
    _run(sys.executable, "-m", "pip", "--python", python, *args, "--no-deps", "--no-index", cwd=cwd)


def _probe(python: Path, cwd: Path) -> dict[str, object]:
    # -I: no PYTHONPATH, no user site, no current directory on sys.path.
    return json.loads(_run(python, "-I", "-c", PROBE, cwd=cwd).stdout)


def _check_cli(venv_dir: Path, cwd: Path) -> None:
    script = venv_dir / "bin" / "anchorlog"
    assert script.exists(), "the console script was not installed"
    assert script.read_text().splitlines()[0] == f"#!{venv_dir / 'bin' / 'python'}"
    out = _run(script, "--help", cwd=cwd).stdout
    assert "Usage: anchorlog" in out
    commands = {line.split()[0] for line in out.split("Commands:", 1)[1].splitlines() if line.strip()}
    assert {"serve", "log-key"} <= commands, out
    serve = _run(script, "serve", "--help", cwd=cwd).stdout
    assert "--data" in serve


def _check_entry_points(found: dict[str, object]) -> None:
    entry_points = found["entry_points"]
    assert "console_scripts anchorlog anchorlog.client.cli:main" in entry_points  # type: ignore[operator]
    assert "anchorlog.commands serve anchorlog.server.cli:serve" in entry_points  # type: ignore[operator]


def test_wheel_installs_and_imports_in_a_fresh_venv(
    tmp_path: Path, source: Path, deps: Path
) -> None:
    dist = tmp_path / "dist"
    _run(
        sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index",
        "-w", dist, source, cwd=tmp_path,
    )
    (wheel,) = dist.glob("anchorlog-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    top_level = {n.split("/")[0] for n in names if not n.split("/")[0].endswith(".dist-info")}
    assert top_level == {"anchorlog"}, "the wheel must add no top-level name but anchorlog"
    for packaged in ("anchorlog/v1/anchorlog.proto", "anchorlog/v1/anchorlog_pb2.pyi",
                     "anchorlog/ledger/py.typed", "anchorlog/ledger/merkle/__init__.py"):
        assert packaged in names

    venv_dir = tmp_path / "venv"
    python = _fresh_venv(venv_dir, deps)
    _pip(python, "install", wheel, cwd=tmp_path)
    found = _probe(python, tmp_path)

    site = Path(found["dist_location"]).resolve()  # type: ignore[arg-type]
    assert site.is_relative_to(venv_dir.resolve())
    for name, file in found["files"].items():  # type: ignore[attr-defined]
        path = Path(file).resolve()
        assert path.is_relative_to(site / "anchorlog"), f"{name} came from {path}"
    assert [Path(p).resolve() for p in found["namespace"]] == [site / "anchorlog"]  # type: ignore[attr-defined]
    _check_entry_points(found)
    _check_cli(venv_dir, tmp_path)


def test_editable_install_imports_in_a_fresh_venv(
    tmp_path: Path, source: Path, deps: Path
) -> None:
    venv_dir = tmp_path / "venv"
    python = _fresh_venv(venv_dir, deps)
    _pip(python, "install", "--no-build-isolation", "-e", source, cwd=tmp_path)
    found = _probe(python, tmp_path)

    assert Path(found["dist_location"]).resolve().is_relative_to(venv_dir.resolve())  # type: ignore[arg-type]
    expected = {
        "anchorlog.ledger": source / "ledger" / "__init__.py",
        "anchorlog.ledger.merkle": source / "ledger" / "merkle" / "__init__.py",
        "anchorlog.server": source / "server" / "__init__.py",
        "anchorlog.client": source / "client" / "__init__.py",
        "anchorlog.v1": source / "proto" / "anchorlog" / "v1" / "__init__.py",
        "anchorlog.v1.anchorlog_pb2": source / "proto" / "anchorlog" / "v1" / "anchorlog_pb2.py",
        "anchorlog.v1.anchorlog_pb2_grpc": source / "proto" / "anchorlog" / "v1" / "anchorlog_pb2_grpc.py",
    }
    got = {name: Path(file).resolve() for name, file in found["files"].items()}  # type: ignore[attr-defined]
    assert got == {name: path.resolve() for name, path in expected.items()}
    for entry in found["namespace"]:  # type: ignore[attr-defined]
        assert str(REPO) not in entry, f"anchorlog namespace leaks the checkout: {entry}"
    _check_entry_points(found)
    _check_cli(venv_dir, tmp_path)
